/**
 * The adapter folders users fill (LORA_DIR, EMBEDDINGS_DIR): which files are LoRAs or embeddings, by
 * name (the file stem: A1111's convention, the trigger word for an embedding), and which are skipped and
 * why (pickle formats, names that cannot be asked for, files that do not parse). Each file is read
 * whole and checked when it is listed, so what a listing names can be applied, and a request naming a
 * broken file is refused where it is made, before any hold.
 */
import { readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { isAdapterName } from '@sdq/contracts/lora-tags';
import { type Embedding, readEmbedding } from './embedding';
import { type LoraComponent, type LoraModuleLayout, loraLayout } from './lora';
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
