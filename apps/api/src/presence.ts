/**
 * Which engines a live worker serves, from the claims workers keep in Redis (apps/worker/src/presence.ts).
 * A served engine is remembered for a second, so a burst of submissions costs Redis one look per engine;
 * an unserved one is looked up every time, so a worker that has just started is seen at once.
 */
import type { Redis } from 'ioredis';
import { loadedEngineKey, servedEngineKey, workerInfoKey, type WorkerObject, workersKey } from '@sdq/contracts';
import { imageBytes, maxCells, type MemoryModel, memoryRefusal } from '@sdq/pipeline/memory';

const CACHE_MS = 1000;

export type EngineState = 'ready' | 'loading' | 'available' | 'failed' | 'unserved';

type EngineMemory = MemoryModel & { pixelsPerCell: number };
type WorkerMemory = { budget: number; limit: number; engines: Record<string, EngineMemory> };

export class EnginePresence {
  private readonly cache = new Map<string, { workers: number; at: number }>();
  /** Per engine, its live workers' bounds; an empty list when one of them reports none (it then refuses by itself). */
  private readonly memory = new Map<string, { bounds: { budget: number; model: EngineMemory }[]; at: number }>();
  /** The live workers' engine_states reports, one read for every engine of a listing. */
  private states: { reports: Record<string, { state: string; reason?: string }>[]; at: number } | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  /** Live workers serving the engine now. */
  async workers(engineId: string): Promise<number> {
    const cached = this.cache.get(engineId);
    if (cached && Date.now() - cached.at < CACHE_MS) return cached.workers;
    const [seconds, micros] = await this.redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const workers = await this.redis.zcount(servedEngineKey(this.prefix, engineId), `(${now}`, '+inf');
    if (workers > 0) this.cache.set(engineId, { workers, at: Date.now() });
    else this.cache.delete(engineId);
    return workers;
  }

  /**
   * An engine's state across the live workers: `ready` when one has it loaded, else `loading` when one is
   * loading it, else `available` when one serves it (it loads it when a request comes), else `failed`
   * when one could not load it, else `unserved` (no live worker may serve it). The count of live workers
   * serving it, and of those that have it loaded, beside.
   */
  async stateOf(engineId: string): Promise<{ state: EngineState; workers: number; loaded: number }> {
    const workers = await this.workers(engineId);
    const loaded = workers > 0 ? await this.loadedWorkers(engineId) : 0;
    if (loaded > 0) return { state: 'ready', workers, loaded };
    let loading = false;
    let failed = false;
    for (const states of await this.engineStates()) {
      const state = Object.hasOwn(states, engineId) ? states[engineId]?.state : undefined;
      if (state === 'loading') loading = true;
      if (state === 'failed') failed = true;
    }
    return { state: loading ? 'loading' : workers > 0 ? 'available' : failed ? 'failed' : 'unserved', workers, loaded };
  }

  /** Live workers that have the engine loaded now. */
  private async loadedWorkers(engineId: string): Promise<number> {
    const [seconds, micros] = await this.redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    return this.redis.zcount(loadedEngineKey(this.prefix, engineId), `(${now}`, '+inf');
  }

  /**
   * Each live worker's engine_states report (engines it is loading or could not load). Reports that say
   * something are remembered for a second (a listing asks once per engine); none is looked up every time,
   * so a worker that has just begun loading is seen at once, as for served engines.
   */
  private async engineStates(): Promise<Record<string, { state: string; reason?: string }>[]> {
    if (this.states && Date.now() - this.states.at < CACHE_MS) return this.states.reports;
    const reports = await this.readEngineStates();
    this.states = reports.some((r) => Object.keys(r).length > 0) ? { reports, at: Date.now() } : undefined;
    return reports;
  }

  private async readEngineStates(): Promise<Record<string, { state: string; reason?: string }>[]> {
    const [seconds, micros] = await this.redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const ids = await this.redis.zrangebyscore(workersKey(this.prefix), `(${now}`, '+inf');
    const texts = await Promise.all(ids.map((id) => this.redis.hget(workerInfoKey(this.prefix, id), 'engine_states')));
    return texts.map((text) => {
      try {
        const parsed = JSON.parse(text ?? '{}') as unknown;
        return parsed && typeof parsed === 'object' ? (parsed as Record<string, { state: string; reason?: string }>) : {};
      } catch {
        return {};
      }
    });
  }

  /**
   * Why no live worker serves the engine, as the live workers' reports tell: none is running, or it
   * failed to load on those that tried (the reason is for admins: GET /v1/admin/workers), or those that
   * run serve other engines (it is not in their ENGINES).
   */
  async whyUnserved(engineId: string): Promise<string> {
    const [seconds, micros] = await this.redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const ids = await this.redis.zrangebyscore(workersKey(this.prefix), `(${now}`, '+inf');
    if (ids.length === 0) return 'no worker is running for this deployment (start one: `npm start`, or `npm run start:worker` beside the API)';
    const reports = await Promise.all(ids.map(async (id) => [await this.redis.hget(workerInfoKey(this.prefix, id), 'engines'), await this.redis.hget(workerInfoKey(this.prefix, id), 'engine_states')] as const));
    const served = new Set<string>();
    let failed = 0;
    for (const [engines, states] of reports) {
      try {
        for (const id of JSON.parse(engines ?? '[]') as unknown[]) if (typeof id === 'string') served.add(id);
        const parsed = JSON.parse(states ?? '{}') as Record<string, { state?: string }>;
        if (Object.hasOwn(parsed, engineId) && parsed[engineId]?.state === 'failed') failed++;
      } catch {
        // a report being rewritten: counted as serving nothing
      }
    }
    const all = `${ids.length} live worker${ids.length > 1 ? 's' : ''}`;
    if (failed > 0) return `its folder failed to load on ${failed === ids.length ? `every live worker (${all})` : `${failed} of ${all}, and the others do not serve it`}; an admin finds why on GET /v1/admin/workers (engine_states) or in the worker logs`;
    const names = [...served].sort().slice(0, 10).join(', ') || 'nothing yet';
    return `${all} serve${ids.length > 1 ? '' : 's'} ${names}, not ${engineId} (it is not in their ENGINES, or it was added a moment ago: they take it up within ENGINE_REFRESH_MS)`;
  }

  /**
   * Why one width x height image of the engine fits no live worker's memory bound, or undefined when one
   * can run it (or no worker reported a bound: then the worker itself refuses what cannot fit).
   */
  async memoryProblem(engineId: string, width: number, height: number): Promise<string | undefined> {
    let cached = this.memory.get(engineId);
    if (!cached || Date.now() - cached.at >= CACHE_MS) {
      const [seconds, micros] = await this.redis.time();
      const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      const ids = await this.redis.zrangebyscore(servedEngineKey(this.prefix, engineId), `(${now}`, '+inf');
      const reports = ids.length ? await Promise.all(ids.map((id) => this.redis.hget(workerInfoKey(this.prefix, id), 'memory'))) : [];
      let bounds: { budget: number; model: EngineMemory }[] = [];
      for (const text of reports) {
        let report: WorkerMemory | undefined;
        try {
          report = text ? (JSON.parse(text) as WorkerMemory) : undefined;
        } catch {
          report = undefined;
        }
        const model = report && Object.hasOwn(report.engines ?? {}, engineId) ? report.engines[engineId] : undefined;
        // a worker without a bound for it may take any size: remembered as such, not looked up again at once
        if (!report || !model) {
          bounds = [];
          break;
        }
        bounds.push({ budget: report.budget, model });
      }
      cached = { bounds, at: Date.now() };
      this.memory.set(engineId, cached);
    }
    if (!cached.bounds.length) return undefined;
    const need = (b: (typeof cached.bounds)[number]) => imageBytes(b.model, (width * height) / b.model.pixelsPerCell);
    if (cached.bounds.some((b) => need(b) <= b.budget)) return undefined;
    // the roomiest worker says what would fit
    const best = cached.bounds.reduce((a, b) => (maxCells(b.model, b.budget) > maxCells(a.model, a.budget) ? b : a));
    const { needMb, budgetMb, largestSquare } = memoryRefusal(best.model, best.budget, (width * height) / best.model.pixelsPerCell, best.model.pixelsPerCell);
    return `width x height: ${width}x${height} needs about ${needMb} MB per image on ${engineId}'s workers, over their memory bound of ${budgetMb} MB for runs (WORKER_MEMORY_LIMIT_MB); ${largestSquare}`;
  }

  /**
   * Why an animation in this format would fail on the engine's live workers (none of them writes it:
   * mp4 needs ffmpeg), or undefined when one writes it or none is live to ask (then a worker without
   * the tool fails the job, naming it).
   */
  async animationFormatProblem(engineId: string, format: string): Promise<string | undefined> {
    const [seconds, micros] = await this.redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const ids = await this.redis.zrangebyscore(servedEngineKey(this.prefix, engineId), `(${now}`, '+inf');
    if (!ids.length) return undefined;
    const reports = await Promise.all(ids.map((id) => this.redis.hget(workerInfoKey(this.prefix, id), 'animation_formats')));
    for (const text of reports) {
      try {
        // a worker from before animations reported nothing: it writes none
        if (text && (JSON.parse(text) as unknown[]).includes(format)) return undefined;
      } catch {
        // a report being rewritten: not this one
      }
    }
    const missing = format === 'mp4' ? 'an ffmpeg binary with libx264 (install ffmpeg on the workers, or set their FFMPEG_PATH)' : `a worker that writes ${format}`;
    return `format: ${format} needs ${missing}; none of the ${ids.length} live worker${ids.length > 1 ? 's' : ''} serving ${engineId} has it (webp and gif need nothing more)`;
  }

  /** The live workers (heartbeat within PRESENCE_TTL_MS), with what each last reported, by id. */
  async list(): Promise<WorkerObject[]> {
    const [seconds, micros] = await this.redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const ids = await this.redis.zrangebyscore(workersKey(this.prefix), `(${now}`, '+inf');
    const multi = this.redis.multi();
    ids.sort();
    for (const id of ids) multi.hgetall(workerInfoKey(this.prefix, id));
    const rows = ((await multi.exec()) ?? []).map(([, row]) => row as Record<string, string>);
    const iso = (ms: string) => new Date(Number(ms)).toISOString();
    const json = <T>(text: string | undefined, fallback: T): T => {
      try {
        return text ? (JSON.parse(text) as T) : fallback;
      } catch {
        return fallback;
      }
    };
    return ids
      .map((id, i) => [id, rows[i]] as const)
      // a worker whose report expired between the two reads is not listed
      .filter(([, row]) => row && row.last_heartbeat)
      .map(([id, row]) => ({
        id,
        host: row.host,
        pid: Number(row.pid),
        engines: json<string[]>(row.engines, []),
        loaded: json<string[]>(row.loaded, []),
        providers: json<Record<string, string>>(row.providers, {}),
        current_jobs: json<string[]>(row.current_jobs, []),
        jobs_done: Number(row.jobs_done),
        engine_states: json<WorkerObject['engine_states']>(row.engine_states, {}),
        started_at: iso(row.started_at),
        last_heartbeat: iso(row.last_heartbeat),
      }));
  }
}
