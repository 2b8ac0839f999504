/**
 * The API's view of its storage backend: a failed write is a 503 that names storage (never "Redis"),
 * and readiness fails from the first failed write until a write succeeds again, so a load balancer
 * stops sending uploads to an API whose backend takes none.
 */
import { type Storage, StorageNotFoundError, StorageUnavailableError } from '@sdq/contracts';

/** The object readiness writes while writes are failing, to learn when they work again (where uploads go). */
export const PROBE_KEY = 'inputs/.write-probe';

export class CheckedStorage implements Storage {
  readonly kind: Storage['kind'];
  private writeFailure: string | undefined;

  constructor(private readonly inner: Storage) {
    this.kind = inner.kind;
  }

  /** Why writes are failing, or undefined while they work. */
  get failing(): string | undefined {
    return this.writeFailure;
  }

  async put(key: string, data: Buffer, contentType: string): Promise<void> {
    try {
      await this.inner.put(key, data, contentType);
      this.writeFailure = undefined;
    } catch (err) {
      this.writeFailure = `${(err as Error).name}: ${(err as Error).message}`.slice(0, 200);
      throw new StorageUnavailableError(`storage (${this.kind}) could not store the upload`, { cause: err });
    }
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await this.inner.get(key);
    } catch (err) {
      if (err instanceof StorageNotFoundError) throw err;
      throw new StorageUnavailableError(`storage (${this.kind}) could not be read`, { cause: err });
    }
  }

  signedUrl(key: string, expiresInSeconds: number): Promise<string> {
    return this.inner.signedUrl(key, expiresInSeconds);
  }

  deletePrefix(prefix: string): Promise<number> {
    return this.inner.deletePrefix(prefix);
  }

  /** Reachable, and, after a failed write, writable again (one small probe object). */
  async check(): Promise<void> {
    await this.inner.check();
    if (this.writeFailure) await this.put(PROBE_KEY, Buffer.from(new Date().toISOString()), 'text/plain');
  }

  close(): Promise<void> {
    return this.inner.close?.() ?? Promise.resolve();
  }
}
