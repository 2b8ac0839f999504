/**
 * An engine's pipelines with adapters, one per set of (LoRA file, weight) and embeddings a job asks for,
 * kept for the next job with the same set: WORKER_LORA_SETS per engine at most, the least recently used
 * one with no job running released first. A set is keyed by its names, weights and the files' sizes and
 * times, so a file replaced under the same name is blended again. The base engine is never changed.
 * A set holds copies of the graphs it changes; their bytes count under WORKER_MODEL_MEMORY_MB with the
 * engines' (the residency makes room before a set is blended, or the job waits for it).
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { weightOf } from './folder-weight';
import { type DiffusionPipeline, type LoraPipeline, readEmbedding, readLora, readSafetensorsFile, withAdapters } from '@sdq/pipeline';
import type { RuntimeOptions } from '@sdq/pipeline/types';
import { isAdapterName, type LoraUse } from '@sdq/contracts';

export class LoraFileError extends Error {}

/** No room under the model memory bound for a set now (busy) or ever (never); the message says which. */
export class SetRoomError extends Error {
  constructor(
    readonly never: boolean,
    message: string,
  ) {
    super(message);
  }
}

export type SetRoom = 'ok' | 'busy' | 'never';
export type RoomForSet = (bytes: number, sets: LoraSets) => Promise<SetRoom>;

export interface LoraSetsOptions {
  loraDir: string;
  embeddingsDir: string;
  /** WORKER_LORA_SETS. */
  max: number;
  runtime: RuntimeOptions;
  /** The residency's room under WORKER_MODEL_MEMORY_MB; none: no bound. */
  roomForSet?: RoomForSet;
}

/** An embedding file larger than this is not one (real ones are kilobytes). */
const EMBEDDING_BYTES = 16 * 2 ** 20;

interface Entry {
  set: Promise<LoraPipeline<DiffusionPipeline>>;
  users: number;
  usedAt: number;
  /** The graphs it holds copies of, by their size on disk. */
  bytes: number;
}

export class LoraSets {
  private readonly sets = new Map<string, Entry>();

  private readonly dir: string;
  private readonly embeddingsDir: string;
  private readonly max: number;
  private readonly runtime: RuntimeOptions;

  constructor(
    private readonly base: DiffusionPipeline,
    private readonly options: LoraSetsOptions,
  ) {
    this.dir = options.loraDir;
    this.embeddingsDir = options.embeddingsDir;
    this.max = options.max;
    this.runtime = options.runtime;
  }

  /** Bytes of the graphs the sets hold (blending or ready). */
  get bytes(): number {
    return [...this.sets.values()].reduce((sum, e) => sum + e.bytes, 0);
  }

  /** Releases idle sets, least recently used first, until `enough` says so or none is idle. */
  async releaseIdle(enough: () => boolean): Promise<void> {
    const idle = [...this.sets].filter(([, e]) => e.users === 0).sort((a, b) => a[1].usedAt - b[1].usedAt);
    while (!enough() && idle.length) {
      const [key, entry] = idle.shift()!;
      this.sets.delete(key);
      await entry.set.then((s) => s.dispose(), () => {});
    }
  }

  /** The pipeline for a set, blended now or cached; release() when the job is done with it. */
  async use(loras: LoraUse[], embeddings: string[] = []): Promise<{ pipeline: DiffusionPipeline; applied: LoraPipeline<DiffusionPipeline>['applied']; cached: boolean; release(): void }> {
    const file = (dir: string, what: string, variable: string, name: string) => {
      if (!isAdapterName(name)) throw new LoraFileError(`${what} ${JSON.stringify(name)} is not a file name`);
      const path = join(dir, `${name}.safetensors`);
      try {
        const stats = statSync(path);
        return { path, stamp: `${stats.size}:${stats.mtimeMs}` };
      } catch {
        throw new LoraFileError(`${what} ${name}: no ${name}.safetensors in ${variable} (${dir})`);
      }
    };
    const files = loras.map((l) => ({ ...l, ...file(this.dir, 'LoRA', 'LORA_DIR', l.name) }));
    const words = [...new Set(embeddings)].sort().map((name) => ({ name, ...file(this.embeddingsDir, 'embedding', 'EMBEDDINGS_DIR', name) }));
    const key = JSON.stringify([[...files].sort((a, b) => a.name.localeCompare(b.name)).map((f) => [f.name, f.weight, f.stamp]), words.map((w) => [w.name, w.stamp])]);
    let entry = this.sets.get(key);
    const cached = entry !== undefined;
    if (!entry) {
      const adapters = {
        loras: files.map((f) => ({ name: f.name, weight: f.weight, modules: readLora(readSafetensorsFile(f.path), f.name) })),
        embeddings: words.map((w) => ({ name: w.name, embedding: readEmbedding(readSafetensorsFile(w.path, EMBEDDING_BYTES), w.name) })),
      };
      // the graphs the set will hold copies of: those its LoRAs' modules name, and the text encoders for embeddings
      const components = new Set<string>(adapters.loras.flatMap((l) => l.modules.map((m) => m.component)));
      if (adapters.embeddings.length) for (const c of ['text_encoder', 'text_encoder_2']) components.add(c);
      const bytes = [...components].reduce((sum, c) => sum + weightOf(join(this.base.model.dir, c)), 0);
      const room = this.options.roomForSet ? await this.options.roomForSet(bytes, this) : 'ok';
      if (room !== 'ok') {
        const what = `this adapter set holds ${Math.round(bytes / 2 ** 20)} MB of graphs`;
        throw new SetRoomError(room === 'never', room === 'never' ? `${what}: with its engine that is over WORKER_MODEL_MEMORY_MB` : `${what}: no room under WORKER_MODEL_MEMORY_MB while every other loaded engine has a job running`);
      }
      // another job may have made the same set while this one waited for room
      entry = this.sets.get(key);
      if (!entry) {
        const set = withAdapters(this.base, adapters, this.runtime);
        entry = { set, users: 0, usedAt: Date.now(), bytes };
        this.sets.set(key, entry);
        // a set that failed to blend is not kept: the next job tries again (its file may be fixed)
        set.catch(() => this.sets.delete(key));
      }
    }
    entry.users++;
    entry.usedAt = Date.now();
    const held = entry;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      held.users--;
      held.usedAt = Date.now();
      void this.trim();
    };
    try {
      const { pipeline, applied } = await entry.set;
      return { pipeline, applied, cached, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  /** Releases the least recently used idle sets past the bound. */
  private async trim(): Promise<void> {
    const idle = [...this.sets].filter(([, e]) => e.users === 0).sort((a, b) => a[1].usedAt - b[1].usedAt);
    while (this.sets.size > this.max && idle.length) {
      const [key, entry] = idle.shift()!;
      this.sets.delete(key);
      await entry.set.then((s) => s.dispose(), () => {});
    }
  }

  /** Releases every set (the engine is being unloaded: its sets share its sessions). */
  async dispose(): Promise<void> {
    const all = [...this.sets.values()];
    this.sets.clear();
    await Promise.all(all.map((e) => e.set.then((s) => s.dispose(), () => {})));
  }
}
