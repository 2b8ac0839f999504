/**
 * The LoRA and embedding folders as the API sees them: what each holds (read again when a folder's
 * files change, looked at most once a second, or at once on a refresh), which engines each file fits
 * (from the engines' graphs, read once per graph file), and a request's adapters resolved: the
 * `<lora:name:weight>` tags taken out of its prompts, its `loras` field added, each name checked against
 * the folder and the engine, and the embeddings its prompts use named. Everything a client can get wrong
 * about an adapter is refused here, before any hold.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { GenerationEngineInfo } from '@sdq/pipeline/engines';
import { type EmbeddingFile, type EngineLayout, embeddingProblem, engineLayout, type LoraFile, listEmbeddings, listLoras, loraFit } from '@sdq/pipeline/adapters';
import { addLora, extractLoraTags, type GenerationParams, LoraTagError, type LoraUse, ServiceError } from '@sdq/contracts';

/** Looks at a folder's files at most this often. */
const LOOK_MS = 1000;

interface Folder<T> {
  dir: string;
  signature: string;
  lookedAt: number;
  files: Map<string, T>;
  skipped: { file: string; reason: string }[];
}

export interface AdapterUse {
  loras: NonNullable<GenerationParams['loras']>;
  embeddings: string[];
}

export class AdapterCatalog {
  private readonly loraFolder: Folder<LoraFile>;
  private readonly embeddingFolder: Folder<EmbeddingFile>;
  private readonly layouts = new Map<string, { stamp: string; layout: EngineLayout }>();
  /** The embeddings' words as one pattern, for the folder read it was built from. */
  private words: { signature: string; pattern: RegExp } | undefined;

  constructor(
    loraDir: string,
    embeddingsDir: string,
    private readonly logger?: Pick<Logger, 'warn' | 'info'>,
  ) {
    this.loraFolder = { dir: loraDir, signature: '', lookedAt: 0, files: new Map(), skipped: [] };
    this.embeddingFolder = { dir: embeddingsDir, signature: '', lookedAt: 0, files: new Map(), skipped: [] };
  }

  get loraDir(): string {
    return this.loraFolder.dir;
  }

  loras(): ReadonlyMap<string, LoraFile> {
    return this.look(this.loraFolder, listLoras, 'LoRA').files;
  }

  embeddings(): ReadonlyMap<string, EmbeddingFile> {
    return this.look(this.embeddingFolder, listEmbeddings, 'embedding').files;
  }

  /** Files of either folder not taken, with why (pickle formats, names, files that do not parse). */
  skipped(kind: 'lora' | 'embedding'): { file: string; reason: string }[] {
    if (kind === 'lora') return this.look(this.loraFolder, listLoras, 'LoRA').skipped;
    return this.look(this.embeddingFolder, listEmbeddings, 'embedding').skipped;
  }

  /** Reads both folders again now (A1111's refresh-loras). */
  refresh(): void {
    for (const folder of [this.loraFolder, this.embeddingFolder]) folder.lookedAt = 0;
    this.loraFolder.signature = this.embeddingFolder.signature = '';
    this.loras();
    this.embeddings();
  }

  private look<T>(folder: Folder<T>, list: (dir: string) => { files: Map<string, T>; skipped: { file: string; reason: string }[] }, what: string): Folder<T> {
    const now = Date.now();
    if (now - folder.lookedAt < LOOK_MS) return folder;
    folder.lookedAt = now;
    const signature = folderSignature(folder.dir);
    if (signature === folder.signature) return folder;
    const listed = list(folder.dir);
    const before = new Set(folder.skipped.map((s) => s.file));
    for (const s of listed.skipped) if (!before.has(s.file)) this.logger?.warn({ dir: folder.dir, file: s.file, reason: s.reason }, `${what} file not taken`);
    folder.files = listed.files;
    folder.skipped = listed.skipped;
    folder.signature = signature;
    return folder;
  }

  /** The engine's graphs' layout, read again when a graph file changes. */
  layout(engine: GenerationEngineInfo): EngineLayout {
    const stamp = folderSignature(join(engine.dir, 'unet')) + folderSignature(join(engine.dir, 'text_encoder')) + folderSignature(join(engine.dir, 'text_encoder_2'));
    const known = this.layouts.get(engine.dir);
    if (known?.stamp === stamp) return known.layout;
    const layout = engineLayout(engine.dir);
    this.layouts.set(engine.dir, { stamp, layout });
    return layout;
  }

  /** Whether a LoRA fits an engine (some of its modules name the engine's layers). */
  loraFits(engine: GenerationEngineInfo, lora: LoraFile): boolean {
    return engine.family !== 'stable-diffusion-3' && loraFit(this.layout(engine), lora).matched > 0;
  }

  embeddingFits(engine: GenerationEngineInfo, file: EmbeddingFile): boolean {
    return engine.family !== 'stable-diffusion-3' && embeddingProblem(this.layout(engine), file) === undefined;
  }

  /**
   * A request's adapters: its prompts with their LoRA tags taken out (changed in place), the LoRAs of the
   * tags and of the `loras` field together (one name's weights add), each checked against LORA_DIR and the
   * engine; and the embeddings (fitting the engine) whose trigger words its prompts use.
   */
  resolve(engine: GenerationEngineInfo, params: GenerationParams, requested: LoraUse[] | undefined, field = 'loras'): AdapterUse {
    const uses: LoraUse[] = [];
    try {
      for (const use of requested ?? []) addLora(uses, use, `${field}: ${use.name}`);
      for (const prompt of params.prompts) {
        const { text, loras } = extractLoraTags(prompt.text);
        prompt.text = text;
        for (const use of loras) addLora(uses, use, `<lora:${use.name}>`);
      }
      for (const key of ['prompt2', 'prompt3'] as const) {
        if (params[key] === undefined) continue;
        const { text, loras } = extractLoraTags(params[key]);
        params[key] = text;
        for (const use of loras) addLora(uses, use, `<lora:${use.name}>`);
      }
    } catch (err) {
      if (err instanceof LoraTagError) throw new ServiceError('invalid_lora', err.message, { field });
      throw err;
    }
    const loras: AdapterUse['loras'] = [];
    if (uses.length) {
      const files = this.loras();
      const layout = engine.family === 'stable-diffusion-3' ? undefined : this.layout(engine);
      for (const use of uses) {
        const file = files.get(use.name);
        if (!file) throw new ServiceError('invalid_lora', `${field}: ${use.name} is not a LoRA here (${this.available(files, use.name)})`, { field });
        if (engine.family === 'stable-diffusion-3') throw new ServiceError('invalid_lora', `${field}: ${use.name}: LoRAs apply to SD 1.x, 2.x and SDXL engines, not to ${engine.id}'s SD3 transformer yet`, { field });
        const fit = loraFit(layout!, file);
        if (fit.matched === 0) {
          throw new ServiceError('invalid_lora', `${field}: ${use.name} matches none of ${engine.id}'s layers (0 of its ${fit.modules} modules): a LoRA for another model family`, { field });
        }
        loras.push({ name: use.name, weight: use.weight, modules: fit.modules, matched: fit.matched });
      }
    }
    const embeddings = this.usedEmbeddings(engine, params);
    return { loras, embeddings };
  }

  /** What the LoRA folder holds, for an error naming a file not there (and a pickle file of that name, if one is). */
  private available(files: ReadonlyMap<string, LoraFile>, name: string): string {
    const pickle = this.loraFolder.skipped.find((s) => s.file.slice(0, s.file.lastIndexOf('.')) === name);
    if (pickle) return pickle.reason;
    const names = [...files.keys()];
    return names.length ? `LoRAs: ${names.slice(0, 50).join(', ')}${names.length > 50 ? `, and ${names.length - 50} more (GET /v1/loras)` : ''}` : `LORA_DIR holds none`;
  }

  /** The embeddings fitting the engine whose words appear, whole, in any of the request's prompts. */
  private usedEmbeddings(engine: GenerationEngineInfo, params: GenerationParams): string[] {
    const files = this.embeddings();
    if (!files.size) return [];
    // one pattern for every word, built once per folder read (as the worker's tokenizer matches them)
    if (this.words?.signature !== this.embeddingFolder.signature) {
      const alternatives = [...files.keys()].sort((a, b) => b.length - a.length).map((w) => w.toLowerCase().replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
      this.words = { signature: this.embeddingFolder.signature, pattern: new RegExp(`(?<![\\p{L}\\p{N}_])(?:${alternatives.join('|')})(?![\\p{L}\\p{N}_])`, 'gu') };
    }
    const texts = [...params.prompts.map((p) => p.text), params.prompt2 ?? ''].join('\n').toLowerCase();
    const named = new Set([...texts.matchAll(this.words.pattern)].map((m) => m[0]));
    const used = [...files].filter(([name, file]) => named.has(name.toLowerCase()) && this.embeddingFits(engine, file)).map(([name]) => name);
    return used.sort();
  }

}

/** Names, sizes and times of a folder's entries: it changes when a file is added, removed or rewritten. */
function folderSignature(dir: string): string {
  try {
    return readdirSync(dir)
      .sort()
      .map((name) => {
        try {
          const s = statSync(join(dir, name));
          return `${name}:${s.size}:${s.mtimeMs}`;
        } catch {
          return name;
        }
      })
      .join('|');
  } catch {
    return '';
  }
}
