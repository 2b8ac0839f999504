import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, readdir, rm, stat, writeFile, rename } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { type Storage, StorageNotFoundError } from '@sdq/contracts';

export interface LocalStorageOptions {
  /** Folder holding the objects. Default .data/artifacts. */
  dir: string;
  /**
   * Base URL of the API that serves `/v1/artifacts/...`, e.g. http://localhost:3000. A function is read
   * at signing time, for an API that learns its own port only once it listens (PORT=0).
   */
  publicUrl: string | (() => string);
  /** HMAC key for signed URLs; the API serving them must use the same one. */
  secret: string;
}

/** Route under which the API serves local objects. */
export const LOCAL_ARTIFACTS_PATH = '/v1/artifacts/';

export function signLocalUrl(secret: string, key: string, expires: number): string {
  return createHmac('sha256', secret).update(`${key}\n${expires}`).digest('hex');
}

/** Why a local artifact URL is refused, or undefined when it is valid now. */
export function checkLocalSignature(
  secret: string,
  key: string,
  expires: string | undefined,
  signature: string | undefined,
  now = Date.now(),
): 'missing' | 'invalid' | 'expired' | undefined {
  if (!expires || !signature) return 'missing';
  // Exactly the form signedUrl writes: seconds in plain decimal, 64 lower-case hex digits. Anything else
  // (`0x...`, `+N.0`, upper case, a trailing character Buffer.from would drop) is refused, not read leniently.
  if (typeof expires !== 'string' || !/^[1-9][0-9]{0,15}$/.test(expires)) return 'invalid';
  if (typeof signature !== 'string' || !/^[0-9a-f]{64}$/.test(signature)) return 'invalid';
  const exp = Number(expires);
  const expected = Buffer.from(signLocalUrl(secret, key, exp), 'hex');
  const given = Buffer.from(signature, 'hex');
  // Compare in constant time, and only buffers of equal length (timingSafeEqual throws otherwise).
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'invalid';
  if (exp * 1000 < now) return 'expired';
  return undefined;
}

/** Objects as files under one folder; URLs are HMAC-signed and expire, served by the API. */
export class LocalStorage implements Storage {
  readonly kind = 'local' as const;
  private readonly root: string;

  constructor(private readonly opts: LocalStorageOptions) {
    this.root = resolve(opts.dir);
  }

  /** The file of a key; refuses keys that would leave the folder. */
  pathOf(key: string): string {
    const path = resolve(this.root, key);
    if (!key || key.includes('\0') || (path !== this.root && !path.startsWith(this.root + sep)) || path === this.root) {
      throw new StorageNotFoundError(key);
    }
    return path;
  }

  async put(key: string, data: Buffer, _contentType?: string): Promise<void> {
    const path = this.pathOf(key);
    await mkdir(dirname(path), { recursive: true });
    // Write then rename, so a reader never sees half a file.
    const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
    await writeFile(tmp, data);
    await rename(tmp, path);
  }

  async get(key: string): Promise<Buffer> {
    try {
      return await readFile(this.pathOf(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'EISDIR') throw new StorageNotFoundError(key);
      throw err;
    }
  }

  async signedUrl(key: string, expiresInSeconds: number): Promise<string> {
    const expires = Math.floor(Date.now() / 1000) + expiresInSeconds;
    const signature = signLocalUrl(this.opts.secret, key, expires);
    const path = key.split('/').map(encodeURIComponent).join('/');
    const base = typeof this.opts.publicUrl === 'function' ? this.opts.publicUrl() : this.opts.publicUrl;
    return `${base.replace(/\/$/, '')}${LOCAL_ARTIFACTS_PATH}${path}?expires=${expires}&signature=${signature}`;
  }

  async deletePrefix(prefix: string): Promise<number> {
    // Prefixes are folder-shaped (`generations/<id>/`): remove the folder and count what was in it.
    const dir = this.pathOf(prefix.replace(/\/$/, ''));
    const count = await countFiles(dir);
    await rm(dir, { recursive: true, force: true });
    return count;
  }

  async check(): Promise<void> {
    await mkdir(this.root, { recursive: true });
  }

  /** For tests and debugging: keys under a prefix. */
  async list(prefix = ''): Promise<string[]> {
    const files: string[] = [];
    await walk(this.root, files);
    return files.map((f) => relative(this.root, f).split(sep).join('/')).filter((k) => k.startsWith(prefix));
  }
}

async function walk(dir: string, out: string[]): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await walk(path, out);
    else out.push(path);
  }
}

async function countFiles(dir: string): Promise<number> {
  try {
    if (!(await stat(dir)).isDirectory()) return 1;
  } catch {
    return 0;
  }
  const files: string[] = [];
  await walk(dir, files);
  return files.length;
}
