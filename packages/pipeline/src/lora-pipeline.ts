/**
 * A pipeline with adapters: LoRAs merged into its text encoders' and denoiser's graphs in memory
 * (lora-blend.ts), and embeddings' vectors added to its text encoders' token tables with tokenizers
 * that know their trigger words (embedding-graph.ts). The changed graphs are loaded as sessions of their
 * own; the VAE, the scheduler and every graph nothing changed are shared with the base pipeline, which
 * is never changed. Releasing it releases only its own sessions.
 */
import { OnnxModel } from './backends/onnx';
import { type GraphBytes, type NamedEmbedding, withEmbeddingRows } from './embedding-graph';
import { type BlendedGraph, blendLoras, type LoraApplication } from './lora-blend';
import type { LoraComponent } from './lora';
import type { DiffusionModel, TextTokenizer } from './model';
import type { ClipTokenizer } from './tokenizer/clip-tokenizer';
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
  return withAdapters(base, { loras }, options);
}

/** A tokenizer that also knows an embedding set's trigger words. */
class WordsTokenizer implements TextTokenizer {
  constructor(
    private readonly base: ClipTokenizer,
    private readonly words: Map<string, number[]>,
  ) {}

  get maxLength(): number {
    return this.base.maxLength;
  }

  encode(text: string) {
    return this.base.encode(text, this.words);
  }
}

/** The base pipeline with LoRAs merged and embeddings added (either may be empty). */
export async function withAdapters<P extends DiffusionPipeline>(base: P, adapters: { loras: LoraApplication[]; embeddings?: NamedEmbedding[] }, options: RuntimeOptions = {}): Promise<LoraPipeline<P>> {
  const { loras } = adapters;
  const embeddings = adapters.embeddings ?? [];
  const model = base.model;
  if (base.family.id === 'stable-diffusion-3' && (loras.length || embeddings.length)) {
    throw new PipelineError(loras.length ? 'invalid_lora' : 'invalid_embedding', `${base.engineId}: LoRAs and embeddings are applied to UNet families (SD 1.x, 2.x, SDXL), not to SD3's transformer yet`);
  }
  const applied = new Map<string, { matched: number; unmatched: string[] }>(loras.map((l) => [l.name, { matched: 0, unmatched: [] }]));
  const add = (graph: BlendedGraph) => {
    for (const [name, r] of graph.applied) {
      const total = applied.get(name)!;
      total.matched += r.matched;
      total.unmatched.push(...r.unmatched);
    }
  };
  const components: [LoraComponent, OnnxModel][] = [...model.encoders.filter((e) => e.suffix === '' || e.suffix === '_2').map((e) => [e.suffix === '' ? 'text_encoder' : 'text_encoder_2', e.encoder] as [LoraComponent, OnnxModel]), ['unet', model.unet]];
  const blended: (GraphBytes & { changed: boolean })[] = components.map(([component, graph]) => {
    const result = blendLoras(graph.path, component, loras);
    add(result);
    return { ...result, changed: [...result.applied.values()].some((r) => r.matched > 0) };
  });
  // each CLIP encoder's token table gets the embeddings' rows, and its tokenizer their words
  const words = new Map<OnnxModel, Map<string, number[]>>();
  if (embeddings.length) {
    components.forEach(([component, graph], i) => {
      if (component === 'unet') return;
      const result = withEmbeddingRows(graph.path, blended[i].changed ? blended[i] : undefined, embeddings, component === 'text_encoder_2');
      blended[i] = { ...result.graph, changed: true };
      words.set(graph, result.words);
    });
  }
  const unmatched = [...applied].filter(([, r]) => r.matched === 0);
  if (unmatched.length) {
    const [name, r] = unmatched[0];
    throw new PipelineError('invalid_lora', `LoRA ${name} matches none of ${base.engineId}'s layers (0 of ${r.unmatched.length} modules: a LoRA for another model family?)`);
  }
  const loaded: OnnxModel[] = [];
  try {
    const load = async (graph: OnnxModel, i: number) => {
      // a graph nothing changed is shared, not loaded twice
      if (!blended[i].changed) return graph;
      const session = await OnnxModel.load(graph.path, { ...options, providers: [graph.provider] }, model.clock, blended[i]);
      loaded.push(session);
      return session;
    };
    const encoders = await Promise.all(model.encoders.map(async (e) => {
      const at = components.findIndex(([, g]) => g === e.encoder);
      if (at < 0) return e;
      const known = words.get(e.encoder);
      return { ...e, encoder: await load(e.encoder, at), ...(known ? { tokenizer: new WordsTokenizer(e.tokenizer as ClipTokenizer, known) } : {}) };
    }));
    const unet = await load(model.unet, components.length - 1);
    const variant: DiffusionModel = { ...model, encoders, unet };
    const pipeline = base.withModel(variant);
    // SD's pipeline also names its one text encoder directly
    if ('textEncoder' in model) (variant as DiffusionModel & { textEncoder?: OnnxModel }).textEncoder = encoders[0].encoder;
    if ('tokenizer' in model) (variant as DiffusionModel & { tokenizer?: TextTokenizer }).tokenizer = encoders[0].tokenizer;
    return { pipeline, applied, dispose: async () => void (await Promise.all(loaded.map((s) => s.dispose()))) };
  } catch (err) {
    await Promise.all(loaded.map((s) => s.dispose()));
    throw err;
  }
}
