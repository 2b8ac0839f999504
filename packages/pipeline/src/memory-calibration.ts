/**
 * An engine's memory model, measured when it loads: the real pipeline generates one image with guidance
 * (one step) at square sizes from a quarter of its native side upward, doubling, while the next size's
 * predicted peak stays within half the bound and the engine allows it; the per-image peak above the
 * resting process is fitted (memory.ts). Results are kept in a cache file keyed by the engine's graphs
 * (paths, sizes, times), the runtime and the provider, so a worker restarted on the same files does not
 * measure again.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DiffusionPipeline } from './pipeline';
import { fitMemoryModel, type MemoryModel, ResidentMemory } from './memory';

export interface CalibrationOptions {
  /** Bytes runs may take: no probe is predicted to take more than half of it. */
  budget: number;
  /** The largest width x height the engine accepts (its size limits). */
  maxPixels: number;
  /** A folder for the cache file; unset = none. */
  cacheDir?: string;
  /** Part of the cache key: what else changes the numbers (the runtime's version, the provider). */
  salt?: string;
  resident?: ResidentMemory;
  /**
   * Resident bytes of the process at rest, before any engine's measurement. Default: now. Measured
   * against it, memory a run before freed but the allocator kept counts as taken: never too little.
   */
  base?: number;
}

/** The engine's model; `measured` false when it came from the cache. */
export async function calibrateMemory(pipeline: DiffusionPipeline, opts: CalibrationOptions): Promise<{ model: MemoryModel; measured: boolean; ms: number }> {
  const started = performance.now();
  const cacheFile = opts.cacheDir ? join(opts.cacheDir, `${cacheKey(pipeline.model.dir, opts.salt ?? '')}.json`) : undefined;
  const cached = cacheFile ? readCache(cacheFile) : undefined;
  if (cached) return { model: cached, measured: false, ms: performance.now() - started };

  const resident = opts.resident ?? new ResidentMemory();
  const { vaeScaleFactor, unetMultiple } = pipeline.model;
  const step = vaeScaleFactor * unetMultiple;
  const nativeSide = Math.min(pipeline.nativeWidth, pipeline.nativeHeight);
  const maxSide = Math.floor(Math.sqrt(opts.maxPixels) / step) * step;
  // from a quarter of the native side: three small points fit the constant that small sizes are made of
  let side = Math.max(step, Math.round(nativeSide / 4 / step) * step);
  const points: { cells: number; bytes: number }[] = [];
  const base = opts.base ?? resident.now();
  while (side <= maxSide && points.length < 6) {
    const cells = pipeline.latentCells(side, side);
    // predicted before it runs, by the growth of the last doubling (at least linear in cells, at most
    // quadratic): the fit of a few small sizes overstates the quadratic term and would stop too soon
    if (points.length) {
      const last = points[points.length - 1];
      const prev = points[points.length - 2];
      const linear = cells / last.cells;
      const growth = prev && prev.bytes > 0 ? Math.min(linear * linear, Math.max(linear, last.bytes / prev.bytes)) : linear * linear;
      if (last.bytes * growth > opts.budget / 2) break;
    }
    const { peak } = await resident.peakDuring(() =>
      pipeline.generate({ prompts: [{ text: '' }], width: side, height: side, steps: 1, cfgScale: 7, samples: 1, seed: 1, outputFormat: 'png' }),
    );
    points.push({ cells, bytes: Math.max(0, peak - base) });
    side *= 2;
  }
  const model = fitMemoryModel(points);
  if (cacheFile) writeCache(cacheFile, model);
  return { model, measured: true, ms: performance.now() - started };
}

function cacheKey(dir: string, salt: string): string {
  const hash = createHash('sha256').update(salt);
  const walk = (folder: string) => {
    for (const entry of readdirSync(folder, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (/\.(onnx|onnx_data|data|pb|json)$/.test(entry.name)) {
        const s = statSync(path);
        hash.update(`${path}\0${s.size}\0${s.mtimeMs}\n`);
      }
    }
  };
  walk(dir);
  return hash.digest('hex').slice(0, 32);
}

function readCache(file: string): MemoryModel | undefined {
  try {
    const m = JSON.parse(readFileSync(file, 'utf8')) as MemoryModel;
    const ok = [m.fixed, m.perCell, m.perCellSquared].every((v) => typeof v === 'number' && Number.isFinite(v) && v >= 0) && Array.isArray(m.points);
    return ok ? m : undefined;
  } catch {
    return undefined;
  }
}

function writeCache(file: string, model: MemoryModel): void {
  try {
    mkdirSync(join(file, '..'), { recursive: true });
    // written whole, then renamed: a worker starting beside this one reads all of it or nothing
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(model));
    renameSync(tmp, file);
  } catch {
    // a cache that cannot be written only costs the next start a measurement
  }
}
