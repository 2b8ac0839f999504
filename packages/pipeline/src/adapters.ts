/**
 * The adapter folders users fill (LORA_DIR, EMBEDDINGS_DIR): which files are LoRAs or embeddings, by
 * name (the file stem: A1111's convention, the trigger word for an embedding), and which are skipped and
 * why (pickle formats, names that cannot be asked for, files that do not parse). Each file is read
 * whole and checked when it is listed, so what a listing names can be applied, and a request naming a
 * broken file is refused where it is made, before any hold.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { isAdapterName } from '@sdq/contracts/lora-tags';
import { type Embedding, readEmbedding } from './embedding';
import { type LoraComponent, type LoraModuleLayout, loraLayout } from './lora';
import { modulePathOf } from './lora-blend';
import { readGraphLayout } from './onnx-graph';
import { adapterFileProblem, readSafetensorsFile, readSafetensorsHeader } from './safetensors';

export interface AdapterFile {
  name: string;
  path: string;
  bytes: number;
  mtimeMs: number;
  /** `__metadata__` of its header (ss_* training notes for kohya files). */
  metadata: Record<string, string>;
}

export interface LoraFile extends AdapterFile {
  /** Its modules as its header lays them out (the factors are read when it is applied). */
  modules: LoraModuleLayout[];
  /** Modules per component: which graphs it changes. */
  components: Partial<Record<LoraComponent, number>>;
}

export interface EmbeddingFile extends AdapterFile {
  embedding: Embedding;
}

export interface AdapterListing<T> {
  files: Map<string, T>;
  /** File names not taken, with why (logged once by the caller). */
  skipped: { file: string; reason: string }[];
}

/** Reads and checks the header of every file of a folder of LoRAs (none when the folder is absent). */
export function listLoras(dir: string): AdapterListing<LoraFile> {
  return listAdapters(dir, (path, name) => {
    const file = readSafetensorsHeader(path);
    const modules = loraLayout(file.tensors, name);
    const components: Partial<Record<LoraComponent, number>> = {};
    for (const m of modules) components[m.component] = (components[m.component] ?? 0) + 1;
    return { metadata: file.metadata, modules, components };
  });
}

/** An embedding file larger than this is not one (real ones are kilobytes). */
const MAX_EMBEDDING_BYTES = 16 * 2 ** 20;

/** Reads every file of a folder of embeddings (none when the folder is absent). */
export function listEmbeddings(dir: string): AdapterListing<EmbeddingFile> {
  return listAdapters(dir, (path, name) => {
    const file = readSafetensorsFile(path, MAX_EMBEDDING_BYTES);
    return { metadata: file.metadata, embedding: readEmbedding(file, name) };
  });
}

function listAdapters<T extends AdapterFile>(dir: string, read: (path: string, name: string) => Omit<T, keyof Omit<AdapterFile, 'metadata'>>): AdapterListing<T> {
  const files = new Map<string, T>();
  const skipped: { file: string; reason: string }[] = [];
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return { files, skipped };
  }
  for (const entry of names) {
    if (entry.startsWith('.')) continue;
    const path = join(dir, entry);
    let stats;
    try {
      stats = statSync(path);
    } catch {
      continue;
    }
    if (!stats.isFile()) continue;
    const problem = adapterFileProblem(entry);
    if (problem) {
      skipped.push({ file: entry, reason: problem });
      continue;
    }
    const name = entry.slice(0, -extname(entry).length);
    if (!isAdapterName(name)) {
      skipped.push({ file: entry, reason: `${entry}: its name cannot be asked for (letters, digits, spaces, . _ + - only)` });
      continue;
    }
    try {
      files.set(name, { name, path, bytes: stats.size, mtimeMs: stats.mtimeMs, ...read(path, name) } as T);
    } catch (err) {
      skipped.push({ file: entry, reason: (err as Error).message });
    }
  }
  return { files, skipped };
}

/** What an engine's graphs say about which adapters fit it: module paths per component, token widths. */
export interface EngineLayout {
  modules: Partial<Record<LoraComponent, Set<string>>>;
  /** The token embedding width of each CLIP text encoder. */
  tokenWidth: Partial<Record<'text_encoder' | 'text_encoder_2', number>>;
}

const LAYOUT_GRAPHS: [LoraComponent, string][] = [
  ['text_encoder', 'text_encoder'],
  ['text_encoder_2', 'text_encoder_2'],
  ['unet', 'unet'],
];

/** Reads an engine folder's text encoders' and UNet's layouts (names and dims only, never the weights). */
export function engineLayout(dir: string): EngineLayout {
  const layout: EngineLayout = { modules: {}, tokenWidth: {} };
  for (const [component, folder] of LAYOUT_GRAPHS) {
    const path = join(dir, folder, 'model.onnx');
    if (!existsSync(path)) continue;
    const graph = readGraphLayout(path);
    layout.modules[component] = new Set(graph.weightedNodes.map(modulePathOf).filter((p): p is string => p !== undefined));
    if (component !== 'unet' && graph.tokenTable) layout.tokenWidth[component] = graph.tokenTable.dim;
  }
  return layout;
}

/** How many of a LoRA's modules name a layer of the engine. */
export function loraFit(layout: EngineLayout, lora: LoraFile): { matched: number; modules: number } {
  const matched = lora.modules.filter((m) => layout.modules[m.component]?.has(m.path)).length;
  return { matched, modules: lora.modules.length };
}

/** Why an embedding does not fit an engine's text encoders; undefined when it does. */
export function embeddingProblem(layout: EngineLayout, file: EmbeddingFile): string | undefined {
  const first = layout.tokenWidth.text_encoder;
  if (first === undefined) return 'the engine has no CLIP text encoder with a token table';
  if (file.embedding.vectors.dim !== first) return `its vectors are ${file.embedding.vectors.dim} wide, the engine's tokens ${first}`;
  const second = layout.tokenWidth.text_encoder_2;
  if (second !== undefined) {
    if (!file.embedding.vectors2) return 'the engine has two text encoders (SDXL); the file has no clip_g vectors';
    if (file.embedding.vectors2.dim !== second) return `its second vectors are ${file.embedding.vectors2.dim} wide, the engine's second encoder's tokens ${second}`;
  }
  return undefined;
}

/** Checks a file as its folder's listing would take it (a pull's check before the file is placed); throws why not. */
export function checkAdapterFile(kind: 'lora' | 'embedding', path: string, name: string): void {
  if (kind === 'lora') loraLayout(readSafetensorsHeader(path).tensors, name);
  else readEmbedding(readSafetensorsFile(path, MAX_EMBEDDING_BYTES), name);
}
