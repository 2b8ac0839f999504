/**
 * `npx sdq models pull|list`: engines on disk. A pull needs no Redis (it writes MODELS_DIR); the list asks
 * Redis, when it answers, each engine's state (ready, loading, available, failed, unserved) and live workers.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EnginePresence } from './presence';
import { PULL_RECORD, type PullProgress, type PullRecord, pullFile, pullModel, removeModel } from '@sdq/hub';
import { checkAdapterFile } from '@sdq/pipeline/adapters';
import { discoverEngines } from '@sdq/pipeline/engines';
import type { Config } from './config';
import { UsageError } from './cli-usage';
import { Store } from './store';

const MB = 1024 * 1024;
const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;

/** `<repo>[@<revision>]`. */
function repoAndRevision(spec: string): { repo: string; revision?: string } {
  const at = spec.lastIndexOf('@');
  return at > 0 ? { repo: spec.slice(0, at), revision: spec.slice(at + 1) } : { repo: spec };
}

/**
 * Progress for a person: a bar redrawn in place on a terminal (bytes, rate, ETA, the file), a plain
 * line per file elsewhere (a log, CI).
 */
function progressPrinter(tty: boolean): { update(p: PullProgress): void; finish(): void } {
  const started = performance.now();
  let lastFile: string | undefined;
  let lastDraw = 0;
  return {
    update(p) {
      if (p.state !== 'downloading' || !p.bytesTotal) return;
      const seconds = (performance.now() - started) / 1000;
      const rate = p.bytesDone / Math.max(seconds, 0.001);
      const eta = rate > 0 ? (p.bytesTotal - p.bytesDone) / rate : 0;
      if (!tty) {
        if (p.file !== lastFile) process.stderr.write(`sdq: pulling ${p.engine}: ${p.file} (${mb(p.bytesDone)} of ${mb(p.bytesTotal)})\n`);
        lastFile = p.file;
        return;
      }
      const now = performance.now();
      if (now - lastDraw < 100 && p.bytesDone < p.bytesTotal) return;
      lastDraw = now;
      const width = 30;
      const filled = Math.round((p.bytesDone / p.bytesTotal) * width);
      process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${((100 * p.bytesDone) / p.bytesTotal).toFixed(0).padStart(3)}% ${mb(p.bytesDone)} of ${mb(p.bytesTotal)}, ${mb(rate)}/s, ETA ${eta.toFixed(0)} s  ${(p.file ?? '').slice(0, 40).padEnd(40)}`);
    },
    finish() {
      if (tty) process.stderr.write('\n');
    },
  };
}

export async function modelsCommand(action: string, args: string[], values: { name?: string; subfolder?: string; json?: boolean; lora?: boolean; embedding?: boolean }, config: Config): Promise<number> {
  const out = (human: string, data: unknown) => console.log(values.json ? JSON.stringify(data) : human);
  if (action === 'pull' && (values.lora || values.embedding)) {
    if (values.lora && values.embedding) throw new UsageError('models pull: --lora or --embedding, not both');
    if (!args[0] || !args[1]) throw new UsageError(`models pull --${values.lora ? 'lora' : 'embedding'} needs a repo and a file: owner/name[@revision] path/file.safetensors`);
    const dir = values.lora ? config.loraDir : config.embeddingsDir;
    const printer = progressPrinter(process.stderr.isTTY === true && !values.json);
    try {
      // what the API would list: a LoRA's modules from its header, an embedding's vectors; anything else is refused before it is placed
      const check = (path: string, name: string) => checkAdapterFile(values.lora ? 'lora' : 'embedding', path, name);
      const pulled = await pullFile({ ...repoAndRevision(args[0]), path: args[1], name: values.name }, { dir, endpoint: config.hub.endpoint, token: config.hub.token, onProgress: (p) => printer.update(p), check });
      printer.finish();
      out(`pulled ${args[0]}: ${args[1]} (${pulled.commit.slice(0, 12)}) into ${pulled.path}, ${mb(pulled.size)}, checked; requests use it as ${values.lora ? `<lora:${pulled.name}:1>` : `the word ${pulled.name}`} within a second`, pulled);
      return 0;
    } catch (err) {
      printer.finish();
      throw err;
    }
  }
  if (action === 'pull') {
    if (!args[0]) throw new UsageError('models pull needs a repo: owner/name[@revision]');
    const printer = progressPrinter(process.stderr.isTTY === true && !values.json);
    try {
      const { engine, dir, record } = await pullModel(
        { ...repoAndRevision(args[0]), name: values.name, subfolder: values.subfolder },
        { modelsDir: config.modelsDir, endpoint: config.hub.endpoint, token: config.hub.token, onProgress: (p) => printer.update(p) },
      );
      printer.finish();
      const bytes = record.files.reduce((s, f) => s + f.size, 0);
      out(
        `pulled ${record.repo}@${record.commit.slice(0, 12)} (${record.revision}) into ${dir} as engine ${engine}: ${record.files.length} files, ${mb(bytes)}, each checked\n` +
          'the API and the workers serving every engine take it within ENGINE_REFRESH_MS (10 s), no restart; a worker with ENGINES serves it once ENGINES names it',
        { engine, dir, ...record },
      );
      return 0;
    } catch (err) {
      printer.finish();
      throw err;
    }
  }
  if (action === 'rm') {
    if (!args[0]) throw new UsageError('models rm needs an engine id');
    const { dir } = await removeModel(config.modelsDir, args[0]);
    out(`removed ${dir}: the API drops engine ${args[0]} within ENGINE_REFRESH_MS (10 s) and fails its queued jobs (refunded); running ones finish`, { id: args[0], dir, removed: true });
    return 0;
  }
  // list
  const failed: { id: string; reason: string }[] = [];
  const engines = discoverEngines(config.modelsDir, (id, err) => failed.push({ id, reason: err.message }));
  const workers = await liveWorkers(config, engines.map((e) => e.id));
  const rows = engines.map((e) => {
    let record: PullRecord | undefined;
    try {
      record = JSON.parse(readFileSync(join(e.dir, PULL_RECORD), 'utf8')) as PullRecord;
    } catch {
      record = undefined;
    }
    return {
      id: e.id,
      kind: e.kind,
      family: e.kind === 'generation' ? (e.family ?? e.pipelineClass) : 'upscaler',
      state: workers?.get(e.id)?.state ?? null,
      workers: workers?.get(e.id)?.workers ?? null,
      loaded_workers: workers?.get(e.id)?.loaded ?? null,
      bytes: sizeOf(e.dir),
      pulled_from: record ? `${record.repo}@${record.commit.slice(0, 12)}` : null,
    };
  });
  const human = [
    ...rows.map((r) => [r.id, r.family, r.state === null ? 'state unknown (Redis unreachable)' : `${r.state} (${r.workers} worker${r.workers === 1 ? '' : 's'}, ${r.loaded_workers} loaded)`, mb(r.bytes), r.pulled_from ?? 'local'].join('\t')),
    ...failed.map((f) => `${f.id}\tnot an engine: ${f.reason}`),
  ].join('\n');
  out(human || `(no engine under ${config.modelsDir})`, { engines: rows, failed });
  return 0;
}

/** Bytes of a folder's files (symbolic links followed, as discovery follows them). */
function sizeOf(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const stats = statSync(join(dir, name));
    total += stats.isDirectory() ? sizeOf(join(dir, name)) : stats.size;
  }
  return total;
}

/** Each engine's state and live workers (as the engine list says them), or undefined when Redis does not answer within its timeout. */
async function liveWorkers(config: Config, ids: string[]): Promise<Map<string, Awaited<ReturnType<EnginePresence['stateOf']>>> | undefined> {
  const store = new Store(config.redisUrl, config.keyPrefix, config.redisTimeoutMs);
  store.redis.on('error', () => {});
  try {
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), Math.max(config.redisTimeoutMs, 1000));
      store.redis.once('ready', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    if (!ready) return undefined;
    const presence = new EnginePresence(store.redis, config.keyPrefix);
    const states = await Promise.all(ids.map((id) => presence.stateOf(id)));
    return new Map(ids.map((id, i) => [id, states[i]]));
  } catch {
    return undefined;
  } finally {
    await store.close().catch(() => {});
  }
}
