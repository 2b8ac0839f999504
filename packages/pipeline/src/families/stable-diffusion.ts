/** Stable Diffusion 1.x / 2.x / Turbo: one CLIP text encoder, its last hidden state as the UNet's context. */
import { basename } from 'node:path';
import { loadStableDiffusionModel, type StableDiffusionModel } from '../model';
import { blendRows, type CheckedRequest, type Conditioning, DiffusionPipeline, promptTexts, runTextEncoder } from '../pipeline';
import type { GenerateRequest, RuntimeOptions } from '../types';
import { FAMILIES } from './catalog';

const FAMILY = FAMILIES.find((f) => f.id === 'stable-diffusion')!;

export class StableDiffusionPipeline extends DiffusionPipeline {
  declare readonly model: StableDiffusionModel;

  static async load(dir: string, options: RuntimeOptions = {}): Promise<StableDiffusionPipeline> {
    return new StableDiffusionPipeline(await loadStableDiffusionModel(dir, options), basename(dir), FAMILY);
  }

  /** Each text once, then a weight-normalised blend (positives -> conditioning, |negatives| -> the unconditional row, default ""). */
  protected async encodePrompts(r: CheckedRequest, _req: GenerateRequest, guidance: boolean): Promise<Conditioning> {
    const { texts, negatives } = promptTexts(r, guidance);
    const pair = this.model.encoders[0];
    const output = pair.encoder.output('last_hidden_state') ? 'last_hidden_state' : pair.encoder.outputs[0].name;
    const { rows, truncated } = await runTextEncoder(pair, texts, [output]);
    const [hidden] = rows;
    const unet = this.model.unet;
    return {
      inputs: [
        {
          name: unet.input('encoder_hidden_states') ? 'encoder_hidden_states' : unet.inputs[2].name,
          rowDims: hidden.dims.slice(1),
          cond: blendRows(hidden.data, hidden.rowSize, texts, r.positive),
          uncond: guidance ? blendRows(hidden.data, hidden.rowSize, texts, negatives) : undefined,
        },
      ],
      truncatedTokens: [...r.positive, ...(guidance ? r.negative : [])].reduce((s, p) => s + truncated[texts.indexOf(p.text)], 0),
    };
  }
}
