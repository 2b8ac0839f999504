/**
 * The registry of families: loadPipeline reads `_class_name` from model_index.json and returns that
 * family's pipeline behind the one DiffusionPipeline interface.
 */
import { join } from 'node:path';
import { PipelineError } from '../errors';
import { readJsonFile } from '../folder';
import type { DiffusionPipeline } from '../pipeline';
import type { RuntimeOptions } from '../types';
import { type FamilyId, familyOf, KNOWN_CLASS_NAMES } from './catalog';
import { StableDiffusionPipeline } from './stable-diffusion';
import { StableDiffusion3Pipeline } from './stable-diffusion-3';
import { StableDiffusionXLPipeline } from './stable-diffusion-xl';

const LOADERS: Record<FamilyId, (dir: string, options: RuntimeOptions) => Promise<DiffusionPipeline>> = {
  'stable-diffusion': (dir, options) => StableDiffusionPipeline.load(dir, options),
  'stable-diffusion-xl': (dir, options) => StableDiffusionXLPipeline.load(dir, options),
  'stable-diffusion-3': (dir, options) => StableDiffusion3Pipeline.load(dir, options),
};

/** The pipeline of the family a folder's model_index.json names; an unknown class is one invalid_model error. */
export async function loadPipeline(dir: string, options: RuntimeOptions = {}): Promise<DiffusionPipeline> {
  const path = join(dir, 'model_index.json');
  const className = readJsonFile(path, true)._class_name;
  const family = familyOf(className);
  if (!family) {
    throw new PipelineError('invalid_model', `${path}: _class_name ${JSON.stringify(className)} is not a family sdq knows (known: ${KNOWN_CLASS_NAMES.join(', ')})`);
  }
  return LOADERS[family.id](dir, options);
}

export { StableDiffusion3Pipeline, StableDiffusionPipeline, StableDiffusionXLPipeline };
export * from './catalog';
