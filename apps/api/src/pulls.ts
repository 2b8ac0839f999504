/**
 * Pulls started through the admin API (`POST /v1/admin/models`): each runs in the API process that took
 * it (@sdq/hub's pullModel), and its state is kept in Redis, so any API process answers
 * `GET /v1/admin/models/pulls/{id}`. Progress is written at most twice a second.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { type PullModelRequest, type PullObject, ServiceError } from '@sdq/contracts';
import { checkRepo, checkRevision, checkSubfolder, engineIdFor, PullError, PullInputError, pullModel, removeModel } from '@sdq/hub';

/** How long a pull's state is kept after its last change. */
const TTL_SECONDS = 7 * 86_400;
const WRITE_EVERY_MS = 500;

export class Pulls {
  private readonly running = new Map<string, Promise<void>>();

  constructor(
    /** The store's connection, read when used (an app built without Redis, as the route test does, never pulls). */
    private readonly store: { readonly redis: Redis },
    private readonly keyPrefix: string,
    private readonly opts: { modelsDir: string; endpoint: string; token?: string; logger: Logger; /** An engine folder was pulled into place or removed (the API then reads MODELS_DIR at once). */ onChanged?: () => void },
  ) {}

  private key(id: string): string {
    return `${this.keyPrefix}:pull:${id}`;
  }

  private async save(pull: PullObject): Promise<void> {
    await this.store.redis.set(this.key(pull.id), JSON.stringify(pull), 'EX', TTL_SECONDS);
  }

  async get(id: string): Promise<PullObject | undefined> {
    if (!/^pull_[0-9a-f-]{36}$/.test(id)) return undefined;
    const text = await this.store.redis.get(this.key(id));
    return text ? (JSON.parse(text) as PullObject) : undefined;
  }

  /** Checks the request (400 naming the field, 409 for an engine id in use) and starts the pull. */
  async start(req: PullModelRequest): Promise<PullObject> {
    let engine: string;
    let revision: string;
    let subfolder: string;
    try {
      checkRepo(req.repo);
      revision = checkRevision(req.revision ?? 'main');
      subfolder = checkSubfolder(req.subfolder);
      engine = engineIdFor(req.repo, req.name);
    } catch (err) {
      if (err instanceof PullInputError) throw new ServiceError('bad_request', err.message, { field: err.field });
      throw err;
    }
    if (existsSync(join(this.opts.modelsDir, engine))) {
      throw new ServiceError('conflict', `name: engine ${engine} exists already under MODELS_DIR: remove it first, or pull under another name`, { field: 'name' });
    }
    const now = new Date().toISOString();
    const pull: PullObject = {
      id: `pull_${randomUUID()}`,
      state: 'running',
      repo: req.repo,
      revision,
      subfolder: subfolder || null,
      engine,
      commit: null,
      file: null,
      bytes_done: 0,
      bytes_total: null,
      error: null,
      created_at: now,
      finished_at: null,
    };
    await this.save(pull);
    this.running.set(pull.id, this.run(pull, req));
    return pull;
  }

  private async run(pull: PullObject, req: PullModelRequest): Promise<void> {
    const { logger } = this.opts;
    let lastWrite = 0;
    let writing = Promise.resolve();
    try {
      const { record } = await pullModel(
        { repo: req.repo, revision: req.revision, name: req.name, subfolder: req.subfolder },
        {
          modelsDir: this.opts.modelsDir,
          endpoint: this.opts.endpoint,
          token: this.opts.token,
          onProgress: (p) => {
            pull.commit = p.commit ?? pull.commit;
            pull.file = p.file ?? pull.file;
            pull.bytes_done = p.bytesDone;
            pull.bytes_total = p.bytesTotal || pull.bytes_total;
            if (Date.now() - lastWrite < WRITE_EVERY_MS) return;
            lastWrite = Date.now();
            writing = writing.then(() => this.save(pull)).catch(() => {});
          },
        },
      );
      Object.assign(pull, { state: 'succeeded', commit: record.commit, file: null, bytes_done: pull.bytes_total ?? pull.bytes_done });
      logger.info({ pull_id: pull.id, repo: pull.repo, commit: record.commit, engine: pull.engine }, 'model pulled');
      this.opts.onChanged?.();
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'internal';
      Object.assign(pull, { state: 'failed', error: { code, message: (err as Error).message } });
      logger.warn({ pull_id: pull.id, repo: pull.repo, code, err: (err as Error).message }, 'model pull failed');
    } finally {
      pull.finished_at = new Date().toISOString();
      await writing;
      await this.save(pull).catch((err) => logger.warn({ pull_id: pull.id, err: (err as Error).message }, 'could not record the end of a pull'));
      this.running.delete(pull.id);
    }
  }

  /** Removes an engine's folder from MODELS_DIR (DELETE /v1/admin/models/{id}); the API drops it at once. */
  async remove(id: string): Promise<void> {
    try {
      await removeModel(this.opts.modelsDir, id);
    } catch (err) {
      if (err instanceof PullInputError) throw new ServiceError('bad_request', err.message, { field: 'id' });
      if (err instanceof PullError && err.code === 'not_found') throw new ServiceError('not_found', `engine ${id.slice(0, 100)} not found under MODELS_DIR`);
      throw err;
    }
    this.opts.logger.info({ engine: id }, 'engine removed from MODELS_DIR');
    this.opts.onChanged?.();
  }

  /** Resolves once every pull this process runs has ended (shutdown, tests). */
  async idle(): Promise<void> {
    await Promise.all(this.running.values());
  }
}
