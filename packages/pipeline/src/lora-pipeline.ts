/**
 * A pipeline with LoRAs merged: its text encoders' and denoiser's graphs blended in memory
 * (lora-blend.ts) and loaded as sessions of their own, the VAE, tokenizers and scheduler shared with the
 * base pipeline, which is never changed. Releasing it releases only its own sessions.
 */
import { OnnxModel } from './backends/onnx';
import { type BlendedGraph, blendLoras, type LoraApplication } from './lora-blend';
import type { LoraComponent } from './lora';
import type { DiffusionModel } from './model';
import type { DiffusionPipeline } from './pipeline';
import { PipelineError } from './errors';
import type { RuntimeOptions } from './types';

export interface LoraPipeline<P extends DiffusionPipeline> {
  pipeline: P;
  /** Per LoRA: the modules applied, and those no node took (with why), over every graph. */
  applied: Map<string, { matched: number; unmatched: string[] }>;
  dispose(): Promise<void>;
}

/** The base pipeline with the LoRAs merged; a LoRA none of whose modules match any graph is an error naming the engine. */
export async function withLoras<P extends DiffusionPipeline>(base: P, loras: LoraApplication[], options: RuntimeOptions = {}): Promise<LoraPipeline<P>> {
  const model = base.model;
  if (model.denoiserConfig && base.family.id === 'stable-diffusion-3') throw new PipelineError('invalid_lora', `${base.engineId}: LoRAs are applied to UNet families (SD 1.x, 2.x, SDXL), not to SD3's transformer yet`);
  const applied = new Map<string, { matched: number; unmatched: string[] }>(loras.map((l) => [l.name, { matched: 0, unmatched: [] }]));
  const add = (graph: BlendedGraph) => {
    for (const [name, r] of graph.applied) {
      const total = applied.get(name)!;
      total.matched += r.matched;
      total.unmatched.push(...r.unmatched);
    }
  };
  const components: [LoraComponent, OnnxModel][] = [...model.encoders.filter((e) => e.suffix === '' || e.suffix === '_2').map((e) => [e.suffix === '' ? 'text_encoder' : 'text_encoder_2', e.encoder] as [LoraComponent, OnnxModel]), ['unet', model.unet]];
  const blended = components.map(([component, graph]) => {
    const result = blendLoras(graph.path, component, loras);
    add(result);
    return result;
  });
  const unmatched = [...applied].filter(([, r]) => r.matched === 0);
  if (unmatched.length) {
    const [name, r] = unmatched[0];
    throw new PipelineError('invalid_lora', `LoRA ${name} matches none of ${base.engineId}'s layers (0 of ${r.unmatched.length} modules: a LoRA for another model family?)`);
  }
  const loaded: OnnxModel[] = [];
  try {
    const load = async (graph: OnnxModel, i: number) => {
      // a graph no LoRA touched is shared, not loaded twice
      if ([...blended[i].applied.values()].every((r) => r.matched === 0)) return graph;
      const session = await OnnxModel.load(graph.path, { ...options, providers: [graph.provider] }, model.clock, blended[i]);
      loaded.push(session);
      return session;
    };
    const encoders = await Promise.all(model.encoders.map(async (e) => {
      const at = components.findIndex(([, g]) => g === e.encoder);
      return at < 0 ? e : { ...e, encoder: await load(e.encoder, at) };
    }));
    const unet = await load(model.unet, components.length - 1);
    const variant: DiffusionModel = { ...model, encoders, unet };
    const pipeline = base.withModel(variant);
    // SD's pipeline also names its one text encoder directly
    if ('textEncoder' in model) (variant as DiffusionModel & { textEncoder?: OnnxModel }).textEncoder = encoders[0].encoder;
    return { pipeline, applied, dispose: async () => void (await Promise.all(loaded.map((s) => s.dispose()))) };
  } catch (err) {
    await Promise.all(loaded.map((s) => s.dispose()));
    throw err;
  }
}
