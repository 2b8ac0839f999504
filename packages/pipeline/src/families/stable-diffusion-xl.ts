/**
 * Stable Diffusion XL, as diffusers' StableDiffusionXLPipeline: two CLIP text encoders whose penultimate
 * hidden states are concatenated along features (encoder order), text_encoder_2's pooled `text_embeds`,
 * and the micro-conditioning `time_ids` (original size, crop top-left, target size) as extra UNet inputs.
 */
import { basename } from 'node:path';
import { PipelineError } from '../errors';
import { type DiffusionModel, loadDiffusionModel } from '../model';
import { blendRows, type CheckedRequest, type Conditioning, DiffusionPipeline, penultimateHiddenState, promptTexts, runTextEncoder } from '../pipeline';
import type { GenerateRequest, RuntimeOptions } from '../types';
import { FAMILIES } from './catalog';

const FAMILY = FAMILIES.find((f) => f.id === 'stable-diffusion-xl')!;

/** [seq, a] and [seq, b] rows -> [seq, a + b], token by token. */
function concatFeatures(a: Float32Array, widthA: number, b: Float32Array, widthB: number, seq: number): Float32Array {
  const out = new Float32Array(seq * (widthA + widthB));
  for (let k = 0; k < seq; k++) {
    out.set(a.subarray(k * widthA, (k + 1) * widthA), k * (widthA + widthB));
    out.set(b.subarray(k * widthB, (k + 1) * widthB), k * (widthA + widthB) + widthA);
  }
  return out;
}

export class StableDiffusionXLPipeline extends DiffusionPipeline {
  private readonly hiddenOutputs: [string, string];

  private constructor(model: DiffusionModel, engineId: string) {
    super(model, engineId, FAMILY);
    const [one, two] = model.encoders;
    this.hiddenOutputs = [penultimateHiddenState(one.encoder, `${model.dir}/text_encoder`), penultimateHiddenState(two.encoder, `${model.dir}/text_encoder_2`)];
    if (!two.encoder.output('text_embeds')) throw new PipelineError('invalid_model', `${model.dir}/text_encoder_2 has no text_embeds output (the pooled embedding SDXL's UNet takes)`);
    for (const name of ['text_embeds', 'time_ids']) {
      if (!model.unet.input(name)) throw new PipelineError('invalid_model', `${model.dir}/unet has no ${name} input, which an SDXL UNet takes`);
    }
  }

  static async load(dir: string, options: RuntimeOptions = {}): Promise<StableDiffusionXLPipeline> {
    return new StableDiffusionXLPipeline(await loadDiffusionModel(dir, options, FAMILY.encoderSuffixes), basename(dir));
  }

  /** force_zeros_for_empty_prompt (model_index.json; diffusers' default true): no negative prompt = zero negative conditioning. */
  get forceZerosForEmptyPrompt(): boolean {
    return this.model.index.force_zeros_for_empty_prompt !== false;
  }

  protected async encodePrompts(r: CheckedRequest, req: GenerateRequest, guidance: boolean): Promise<Conditioning> {
    const { texts, negatives } = promptTexts(r, guidance);
    const [one, two] = this.model.encoders;
    // prompt_2 goes to the second encoder only; by default both encoders read the prompts.
    const texts2 = req.prompt2 !== undefined ? [...new Set([...texts, req.prompt2])] : texts;
    const first = await runTextEncoder(one, texts, [this.hiddenOutputs[0]]);
    const second = await runTextEncoder(two, texts2, [this.hiddenOutputs[1], 'text_embeds']);
    const [h1] = first.rows;
    const [h2, pooled] = second.rows;
    const seq = h1.dims[1];
    if (h2.dims[1] !== seq) throw new PipelineError('invalid_model', `the two text encoders give ${seq} and ${h2.dims[1]} tokens; SDXL concatenates them token by token`);
    const width1 = h1.dims[2];
    const width2 = h2.dims[2];
    const row = (rows: typeof h1, list: string[], index: number) => rows.data.slice(index * rows.rowSize, (index + 1) * rows.rowSize);

    const condHidden2 = req.prompt2 !== undefined ? row(h2, texts2, texts2.indexOf(req.prompt2)) : blendRows(h2.data, h2.rowSize, texts2, r.positive);
    const condPooled = req.prompt2 !== undefined ? row(pooled, texts2, texts2.indexOf(req.prompt2)) : blendRows(pooled.data, pooled.rowSize, texts2, r.positive);
    const cond = concatFeatures(blendRows(h1.data, h1.rowSize, texts, r.positive), width1, condHidden2, width2, seq);
    let uncond: Float32Array | undefined;
    let uncondPooled: Float32Array | undefined;
    if (guidance) {
      if (this.forceZerosForEmptyPrompt && r.negative.length === 0) {
        uncond = new Float32Array(cond.length);
        uncondPooled = new Float32Array(condPooled.length);
      } else {
        uncond = concatFeatures(blendRows(h1.data, h1.rowSize, texts, negatives), width1, blendRows(h2.data, h2.rowSize, texts2, negatives), width2, seq);
        uncondPooled = blendRows(pooled.data, pooled.rowSize, texts2, negatives);
      }
    }
    // time_ids = original size + crop top-left + target size, (height, width) order; the same for both halves.
    const original = req.originalSize ?? { width: r.width, height: r.height };
    const crop = req.cropTopLeft ?? { top: 0, left: 0 };
    const timeIds = Float32Array.from([original.height, original.width, crop.top, crop.left, r.height, r.width]);
    const prompts = [...r.positive, ...(guidance ? r.negative : [])];
    return {
      inputs: [
        { name: this.model.unet.input('encoder_hidden_states') ? 'encoder_hidden_states' : this.model.unet.inputs[2].name, rowDims: [seq, width1 + width2], cond, uncond },
        { name: 'text_embeds', rowDims: pooled.dims.slice(1), cond: condPooled, uncond: uncondPooled },
        { name: 'time_ids', rowDims: [6], cond: timeIds, uncond: guidance ? timeIds : undefined },
      ],
      truncatedTokens: prompts.reduce((s, p) => s + Math.max(first.truncated[texts.indexOf(p.text)], second.truncated[texts2.indexOf(p.text)]), 0),
    };
  }
}
