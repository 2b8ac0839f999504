/**
 * Stable Diffusion 3, as diffusers' StableDiffusion3Pipeline: an MMDiT transformer conditioned on three
 * text encoders. The penultimate hidden states of both CLIP encoders are concatenated along features,
 * zero-padded to the T5 width, and followed along the sequence by T5's states (zeros when the folder
 * has no T5, as diffusers does); the pooled projection is both CLIP text_embeds, concatenated. Sampling
 * is rectified flow (FlowMatchEulerDiscreteScheduler); guidance runs the empty prompt through all three.
 */
import { basename, join } from 'node:path';
import { PipelineError } from '../errors';
import { readJsonFile } from '../folder';
import { type DiffusionModel, loadDiffusionModel, type TextEncoderPair } from '../model';
import { blendRows, type CheckedRequest, type Conditioning, DiffusionPipeline, penultimateHiddenState, promptTexts, runTextEncoder } from '../pipeline';
import type { GenerateRequest, RuntimeOptions, WeightedPrompt } from '../types';
import { FAMILIES } from './catalog';

const FAMILY = FAMILIES.find((f) => f.id === 'stable-diffusion-3')!;

/** diffusers' default max_sequence_length, for a folder with no tokenizer_3 to say. */
const DEFAULT_T5_LENGTH = 256;

/** One encoder's conditional and unconditional rows: the prompts' blend, or its own prompt's row. */
interface EncoderRows {
  cond: Float32Array;
  uncond?: Float32Array;
  /** Dimensions of one row. */
  dims: number[];
  truncated: number;
}

export class StableDiffusion3Pipeline extends DiffusionPipeline {
  private readonly clip: [TextEncoderPair, TextEncoderPair];
  private readonly t5?: TextEncoderPair;
  private readonly clipHidden: [string, string];
  /** T5's width (the transformer's joint_attention_dim) and window. */
  private readonly width: number;
  private readonly t5Length: number;

  private constructor(model: DiffusionModel, engineId: string) {
    super(model, engineId, FAMILY);
    const [one, two, three] = model.encoders;
    this.clip = [one, two];
    this.t5 = three?.suffix === '_3' ? three : undefined;
    this.clipHidden = [penultimateHiddenState(one.encoder, `${model.dir}/text_encoder`), penultimateHiddenState(two.encoder, `${model.dir}/text_encoder_2`)];
    for (const [pair, name] of [[one, 'text_encoder'], [two, 'text_encoder_2']] as const) {
      if (!pair.encoder.output('text_embeds')) throw new PipelineError('invalid_model', `${model.dir}/${name} has no text_embeds output (SD3's pooled projection)`);
    }
    if (!model.unet.input('pooled_projections')) throw new PipelineError('invalid_model', `${model.dir}/transformer has no pooled_projections input, which an SD3 transformer takes`);
    const joint = model.denoiserConfig?.joint_attention_dim;
    if (typeof joint !== 'number') throw new PipelineError('invalid_model', `${model.dir}/transformer/config.json: no joint_attention_dim (the T5 width)`);
    this.width = joint;
    // Without text_encoder_3, its tokenizer's config (when shipped) still says how many T5 tokens to zero.
    const t5Config = this.t5 ? undefined : readJsonFile(join(model.dir, 'tokenizer_3', 'tokenizer_config.json'), false);
    const configured = typeof t5Config?.model_max_length === 'number' ? t5Config.model_max_length : undefined;
    this.t5Length = this.t5?.tokenizer.maxLength ?? configured ?? DEFAULT_T5_LENGTH;
  }

  static async load(dir: string, options: RuntimeOptions = {}): Promise<StableDiffusion3Pipeline> {
    const model = await loadDiffusionModel(dir, options, {
      encoders: FAMILY.encoderSuffixes,
      optionalEncoders: FAMILY.optionalEncoders,
      t5Encoders: FAMILY.t5Encoders,
      denoiser: 'transformer',
    });
    return new StableDiffusion3Pipeline(model, basename(dir));
  }

  /** Whether the folder has T5 (text_encoder_3); without it zeros stand in for its states. */
  get hasT5(): boolean {
    return this.t5 !== undefined;
  }

  /** diffusers' SD3 get_timesteps: init_timestep = min(steps * strength, steps), unrounded, then int(). */
  protected startStep(steps: number, strength: number): number {
    return Math.floor(Math.max(steps - Math.min(steps * strength, steps), 0));
  }

  protected async encodePrompts(r: CheckedRequest, req: GenerateRequest, guidance: boolean): Promise<Conditioning> {
    const { texts, negatives } = promptTexts(r, guidance);
    const rowsOf = async (pair: TextEncoderPair, output: string, own: string | undefined): Promise<EncoderRows & { pooled?: EncoderRows }> => {
      const all = own !== undefined ? [...new Set([...texts, own])] : texts;
      const outputs = pair.suffix === '_3' ? [output] : [output, 'text_embeds'];
      const { rows, truncated } = await runTextEncoder(pair, all, outputs);
      const pick = (data: Float32Array, rowSize: number, prompts: WeightedPrompt[], useOwn: boolean) =>
        useOwn ? data.slice(all.indexOf(own!) * rowSize, (all.indexOf(own!) + 1) * rowSize) : blendRows(data, rowSize, all, prompts);
      const build = (m: (typeof rows)[number]): EncoderRows => ({
        cond: pick(m.data, m.rowSize, r.positive, own !== undefined),
        uncond: guidance ? pick(m.data, m.rowSize, negatives, false) : undefined,
        dims: m.dims.slice(1),
        truncated: [...r.positive, ...(guidance ? r.negative : [])].reduce((s, p) => Math.max(s, truncated[all.indexOf(p.text)]), 0),
      });
      return { ...build(rows[0]), pooled: rows[1] ? build(rows[1]) : undefined };
    };
    const [l, g] = await Promise.all([rowsOf(this.clip[0], this.clipHidden[0], undefined), rowsOf(this.clip[1], this.clipHidden[1], req.prompt2)]);
    const t5 = this.t5 ? await rowsOf(this.t5, this.t5.encoder.output('last_hidden_state') ? 'last_hidden_state' : this.t5.encoder.outputs[0].name, req.prompt3) : undefined;
    const clipTokens = l.dims[0];
    if (g.dims[0] !== clipTokens) throw new PipelineError('invalid_model', `the CLIP encoders give ${clipTokens} and ${g.dims[0]} tokens; SD3 concatenates them token by token`);
    const [widthL, widthG] = [l.dims[1], g.dims[1]];
    if (widthL + widthG > this.width) throw new PipelineError('invalid_model', `CLIP widths ${widthL} + ${widthG} exceed the transformer's joint_attention_dim ${this.width}`);
    if (t5 && t5.dims[1] !== this.width) throw new PipelineError('invalid_model', `text_encoder_3 is ${t5.dims[1]} wide, the transformer's joint_attention_dim ${this.width}`);

    // [CLIP-L | CLIP-G | zeros] per CLIP token, then the T5 tokens (or zeros), all at the T5 width.
    const compose = (a: Float32Array, b: Float32Array, c: Float32Array | undefined): Float32Array => {
      const out = new Float32Array((clipTokens + this.t5Length) * this.width);
      for (let k = 0; k < clipTokens; k++) {
        out.set(a.subarray(k * widthL, (k + 1) * widthL), k * this.width);
        out.set(b.subarray(k * widthG, (k + 1) * widthG), k * this.width + widthL);
      }
      if (c) out.set(c, clipTokens * this.width);
      return out;
    };
    const concat = (a: Float32Array, b: Float32Array) => {
      const out = new Float32Array(a.length + b.length);
      out.set(a);
      out.set(b, a.length);
      return out;
    };
    return {
      inputs: [
        {
          name: this.model.unet.input('encoder_hidden_states') ? 'encoder_hidden_states' : this.model.unet.inputs[2].name,
          rowDims: [clipTokens + this.t5Length, this.width],
          cond: compose(l.cond, g.cond, t5?.cond),
          uncond: guidance ? compose(l.uncond!, g.uncond!, t5?.uncond) : undefined,
        },
        {
          name: 'pooled_projections',
          rowDims: [l.pooled!.dims[0] + g.pooled!.dims[0]],
          cond: concat(l.pooled!.cond, g.pooled!.cond),
          uncond: guidance ? concat(l.pooled!.uncond!, g.pooled!.uncond!) : undefined,
        },
      ],
      truncatedTokens: Math.max(l.truncated, g.truncated, t5?.truncated ?? 0),
    };
  }
}
