/**
 * A pull: a diffusers ONNX repo (or one subfolder of it) from the Hugging Face Hub into
 * `MODELS_DIR/<engine id>`, as huggingface_hub does it and with what it leaves out:
 *
 * 1. the revision is resolved to its commit (`GET /api/models/{repo}/revision/{rev}`), and everything
 *    after reads that commit, so a branch moving mid-pull cannot mix two versions;
 * 2. the files come from `GET /api/models/{repo}/tree/{commit}/{subfolder}?recursive=true` (paged by its
 *    Link header), and only what a pipeline reads is kept: graphs and their external data, configs,
 *    tokenizers; never other frameworks' checkpoints (.bin, .ckpt, .pt, .safetensors), nor pictures;
 * 3. each file is fetched from `/{repo}/resolve/{commit}/{path}` (redirects followed; the token is not
 *    sent on to another host) into `.pull-<id>/` beside the engines, resumed with `Range` from what is
 *    already there (in this pull, or a pull of the same engine id that was stopped), and checked before it
 *    counts: an LFS file against its sha256, any other against its git blob id;
 * 4. `sdq-pull.json` records repo, revision, commit and each file's size and sha256, and the folder is
 *    renamed into place whole: an engine folder never holds half a pull.
 *
 * Two pulls of one engine id at once: the second is refused while the first runs (a lock file naming
 * its process); a lock whose process is gone is taken over.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { checkRepo, checkRevision, checkSubfolder, engineIdFor } from './names';

export type PullErrorCode = 'unauthorized' | 'not_found' | 'not_a_pipeline' | 'verify_failed' | 'disk_full' | 'exists' | 'busy' | 'http';

export class PullError extends Error {
  constructor(
    readonly code: PullErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PullError';
  }
}

export interface PullRequest {
  repo: string;
  /** Branch, tag or commit; default main. */
  revision?: string;
  /** A folder of the repo holding the pipeline; default its root. */
  subfolder?: string;
  /** The engine id; default the repo's last path part. */
  name?: string;
}

export interface PullOptions {
  modelsDir: string;
  /** The Hub's base URL (HF_ENDPOINT); default https://huggingface.co. */
  endpoint?: string;
  /** Sent as a Bearer token (HF_TOKEN): gated and private repos. */
  token?: string;
  onProgress?: (p: PullProgress) => void;
  signal?: AbortSignal;
}

export interface PullProgress {
  state: 'resolving' | 'downloading' | 'verifying' | 'done';
  engine: string;
  commit?: string;
  /** The file being fetched. */
  file?: string;
  bytesDone: number;
  bytesTotal: number;
}

export interface PulledFile {
  path: string;
  size: number;
  sha256: string;
}

export interface PullRecord {
  repo: string;
  revision: string;
  commit: string;
  subfolder: string;
  pulled_at: string;
  files: PulledFile[];
}

export const PULL_RECORD = 'sdq-pull.json';

/** What a pipeline reads: graphs and external data, configs, tokenizers. */
const NEEDED = /\.(onnx|onnx_data|onnx\.data|data|pb|json|txt|model)$/i;
/** Never fetched, even under a name that looks needed: other frameworks' weights, pictures, docs. */
const NEVER = /\.(bin|ckpt|pt|pth|safetensors|msgpack|h5|ot|png|jpe?g|gif|webp|md)$|(^|\/)\.git/i;

interface TreeEntry {
  type: 'file' | 'directory';
  path: string;
  size: number;
  oid: string;
  lfs?: { oid: string; size: number };
}

export async function pullModel(req: PullRequest, opts: PullOptions): Promise<{ engine: string; dir: string; record: PullRecord }> {
  const repo = checkRepo(req.repo);
  const revision = checkRevision(req.revision ?? 'main');
  const subfolder = checkSubfolder(req.subfolder);
  const engine = engineIdFor(repo, req.name);
  const endpoint = (opts.endpoint ?? 'https://huggingface.co').replace(/\/+$/, '');
  const target = join(opts.modelsDir, engine);
  if (existsSync(target)) throw new PullError('exists', `${target} exists already: remove the engine first (npx sdq models rm ${engine}) or pull under another --name`);
  await mkdir(opts.modelsDir, { recursive: true });
  const release = await lock(join(opts.modelsDir, `.pull-${engine}.lock`), engine);
  try {
    const progress = (p: Omit<PullProgress, 'engine'>) => opts.onProgress?.({ engine, ...p });
    progress({ state: 'resolving', bytesDone: 0, bytesTotal: 0 });
    const http = new HubHttp(endpoint, opts.token, repo, opts.signal);
    const commit = await http.commitOf(revision);
    const files = (await http.tree(commit, subfolder)).filter((e) => e.type === 'file' && NEEDED.test(e.path) && !NEVER.test(e.path));
    const inRepo = (path: string) => (subfolder ? path.slice(subfolder.length + 1) : path);
    if (!files.some((f) => inRepo(f.path) === 'model_index.json')) {
      throw new PullError('not_a_pipeline', `${repo}@${revision}${subfolder ? ` ${subfolder}/` : ''} is not a diffusers ONNX pipeline: it has no model_index.json${subfolder ? '' : ' at its root (is it in a subfolder? --subfolder)'}`);
    }
    // model_index.json last: a folder that has one is whole
    files.sort((a, b) => Number(inRepo(a.path) === 'model_index.json') - Number(inRepo(b.path) === 'model_index.json'));
    const staging = join(opts.modelsDir, `.pull-${engine}`);
    const bytesTotal = files.reduce((sum, f) => sum + (f.lfs?.size ?? f.size), 0);
    let bytesDone = 0;
    const pulled: PulledFile[] = [];
    for (const file of files) {
      const dest = join(staging, inRepo(file.path));
      await mkdir(dirname(dest), { recursive: true });
      const size = file.lfs?.size ?? file.size;
      const before = bytesDone;
      const sha256 = await withRetries(`${repo}: ${file.path}`, opts.signal, () =>
        http.download(commit, file, dest, size, (n) => progress({ state: 'downloading', commit, file: inRepo(file.path), bytesDone: (bytesDone = before + n), bytesTotal })),
      );
      bytesDone = before + size;
      pulled.push({ path: inRepo(file.path), size, sha256 });
    }
    const record: PullRecord = { repo, revision, commit, subfolder, pulled_at: new Date().toISOString(), files: pulled };
    await writeFile(join(staging, PULL_RECORD), `${JSON.stringify(record, null, 2)}\n`);
    await rename(staging, target).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOTEMPTY' || err.code === 'EEXIST') throw new PullError('exists', `${target} appeared during the pull: remove it or pull under another --name`);
      throw err;
    });
    progress({ state: 'done', commit, bytesDone: bytesTotal, bytesTotal });
    return { engine, dir: target, record };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new PullError('disk_full', `the disk under ${opts.modelsDir} is full: free space and pull again (it resumes where it stopped)`);
    throw err;
  } finally {
    await release();
  }
}

export interface FilePullRequest {
  repo: string;
  revision?: string;
  /** The file's path in the repo: a .safetensors file. */
  path: string;
  /** The file stem it gets (a LoRA's name, an embedding's trigger word); default the file's own stem. */
  name?: string;
}

/**
 * One `.safetensors` file of a repo (a LoRA, an embedding) into a folder, as a model is pulled: the
 * revision resolved to its commit, the file fetched (resumed) into a hidden name beside its place and
 * checked against its sha256; `check` (the caller's parse of the file) must pass before it is renamed
 * into place as `<name>.safetensors`. Pickle formats are refused by name, never fetched.
 */
export async function pullFile(req: FilePullRequest, opts: Omit<PullOptions, 'modelsDir'> & { dir: string; check(path: string, name: string): void }): Promise<{ name: string; path: string; commit: string; size: number; sha256: string }> {
  const repo = checkRepo(req.repo);
  const revision = checkRevision(req.revision ?? 'main');
  const file = req.path.replace(/^\/+/, '');
  if (!/\.safetensors$/i.test(file) || file.split('/').some((part) => part === '..' || part === '')) {
    throw new PullError('not_a_pipeline', `${file}: only .safetensors files are pulled as LoRAs or embeddings (.pt, .ckpt and .bin are pickle, which runs code when loaded)`);
  }
  const stem = file.split('/').pop()!.replace(/\.safetensors$/i, '');
  const name = req.name ?? stem;
  if (!/^[\w][\w .+-]{0,127}$/.test(name) || name.includes('..') || ['__proto__', 'constructor', 'prototype'].includes(name)) throw new PullError('not_a_pipeline', `${name}: not a file name a request can use (letters, digits, spaces, . _ + -)`);
  const target = join(opts.dir, `${name}.safetensors`);
  if (existsSync(target)) throw new PullError('exists', `${target} exists already: remove it first or pull under another --name`);
  await mkdir(opts.dir, { recursive: true });
  const endpoint = (opts.endpoint ?? 'https://huggingface.co').replace(/\/+$/, '');
  const http = new HubHttp(endpoint, opts.token, repo, opts.signal);
  const commit = await http.commitOf(revision);
  const folder = file.includes('/') ? file.slice(0, file.lastIndexOf('/')) : '';
  const entry = (await http.tree(commit, folder)).find((e) => e.type === 'file' && e.path === file);
  if (!entry) throw new PullError('not_found', `${repo}@${revision} has no file ${file}`);
  const size = entry.lfs?.size ?? entry.size;
  // hidden while it downloads: a folder listing never takes half a file
  const staging = join(opts.dir, `.pull-${name}.safetensors`);
  try {
    const sha256 = await withRetries(`${repo}: ${file}`, opts.signal, () => http.download(commit, entry, staging, size, (n) => opts.onProgress?.({ state: 'downloading', engine: name, commit, file, bytesDone: n, bytesTotal: size })));
    try {
      opts.check(staging, name);
    } catch (err) {
      await unlink(staging).catch(() => {});
      throw new PullError('verify_failed', `${repo}: ${file} is not usable: ${(err as Error).message}`);
    }
    await rename(staging, target);
    opts.onProgress?.({ state: 'done', engine: name, commit, bytesDone: size, bytesTotal: size });
    return { name, path: target, commit, size, sha256 };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new PullError('disk_full', `the disk under ${opts.dir} is full: free space and pull again (it resumes where it stopped)`);
    throw err;
  }
}

/** The Hub's HTTP API for one repo; every error a PullError naming what to do. */
class HubHttp {
  constructor(
    private readonly endpoint: string,
    private readonly token: string | undefined,
    private readonly repo: string,
    private readonly signal: AbortSignal | undefined,
  ) {}

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), 'user-agent': 'sdq', ...extra };
  }

  private async get(url: string, extra?: Record<string, string>): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(url, { headers: this.headers(extra), redirect: 'follow', signal: this.signal });
    } catch (err) {
      if (this.signal?.aborted) throw err;
      const cause = ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message;
      // a resolve of a file that breaks is tried again (withRetries); the API calls are not
      if (!url.includes('/resolve/')) throw new PullError('http', `cannot reach ${this.endpoint} (${cause}): check HF_ENDPOINT and the network`);
      throw err;
    }
    if (res.ok) return res;
    await res.body?.cancel();
    const code = res.headers.get('x-error-code');
    if (res.status === 401 || res.status === 403) {
      throw new PullError('unauthorized', `${this.repo} is gated or private on ${this.endpoint} (HTTP ${res.status}): set HF_TOKEN to a token that may read it${res.status === 403 ? ', and accept its terms on the Hub' : ''}`);
    }
    if (res.status === 404) {
      if (code === 'RevisionNotFound') throw new PullError('not_found', `${this.repo} has no revision ${new URL(url).pathname.split('/').pop()} on ${this.endpoint}: check the revision (a branch, tag or commit)`);
      if (code === 'EntryNotFound') throw new PullError('not_found', `${this.repo}: ${new URL(url).pathname} is not in the repo at this commit`);
      throw new PullError('not_found', `no repo ${this.repo} on ${this.endpoint} (HTTP 404): check its name, or set HF_TOKEN if it is private`);
    }
    throw new PullError('http', `${this.endpoint} answered HTTP ${res.status} for ${new URL(url).pathname}: retry later`);
  }

  async commitOf(revision: string): Promise<string> {
    const res = await this.get(`${this.endpoint}/api/models/${this.repo}/revision/${encodeURIComponent(revision)}`);
    const body = (await res.json()) as { sha?: unknown };
    if (typeof body.sha !== 'string' || !/^[0-9a-f]{40}$/.test(body.sha)) throw new PullError('http', `${this.endpoint} gave no commit for ${this.repo}@${revision}`);
    return body.sha;
  }

  async tree(commit: string, subfolder: string): Promise<TreeEntry[]> {
    const entries: TreeEntry[] = [];
    const path = subfolder ? `/${subfolder.split('/').map(encodeURIComponent).join('/')}` : '';
    let url: string | undefined = `${this.endpoint}/api/models/${this.repo}/tree/${commit}${path}?recursive=true`;
    for (let pages = 0; url && pages < 1000; pages++) {
      const res = await this.get(url);
      entries.push(...((await res.json()) as TreeEntry[]));
      // the next page, as the Hub pages long listings
      url = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get('link') ?? '')?.[1];
    }
    return entries;
  }

  /**
   * Fetches one file into `dest`, resuming what is there; returns its sha256. Checked against the tree's
   * ids before it counts: an LFS file's sha256, another file's git blob id (sha1 of "blob <size>\0" + bytes).
   */
  async download(commit: string, file: TreeEntry, dest: string, size: number, onBytes: (n: number) => void): Promise<string> {
    let have = existsSync(dest) ? (await stat(dest)).size : 0;
    if (have > size) {
      await unlink(dest);
      have = 0;
    }
    let res: Response | undefined;
    if (have < size) {
      const encoded = file.path.split('/').map(encodeURIComponent).join('/');
      res = await this.get(`${this.endpoint}/${this.repo}/resolve/${commit}/${encoded}`, have > 0 ? { range: `bytes=${have}-` } : {});
      // a server that ignores Range sends the whole file: start over
      if (have > 0 && res.status !== 206) have = 0;
    }
    const sha256 = createHash('sha256');
    const blob = createHash('sha1').update(`blob ${size}\0`);
    if (have > 0) {
      for await (const chunk of createReadStream(dest, { end: have - 1 })) {
        sha256.update(chunk as Buffer);
        blob.update(chunk as Buffer);
      }
    }
    const done = res ? await this.write(res, dest, have > 0, have, [sha256, blob], onBytes) : have;
    onBytes(done);
    return this.verify(file, dest, size, done, sha256.digest('hex'), blob.digest('hex'));
  }

  private async write(res: Response, dest: string, append: boolean, from: number, hashes: ReturnType<typeof createHash>[], onBytes: (n: number) => void): Promise<number> {
    const out = createWriteStream(dest, { flags: append ? 'a' : 'w' });
    // a write that fails (ENOSPC) is an 'error' event, never a throw: kept and thrown here
    let failed: Error | undefined;
    out.on('error', (err) => (failed = err));
    let done = from;
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        if (failed) throw failed;
        for (const h of hashes) h.update(chunk);
        if (!out.write(chunk)) {
          await new Promise<void>((r) => {
            const go = () => {
              out.off('drain', go);
              out.off('error', go);
              r();
            };
            out.on('drain', go);
            out.on('error', go);
          });
        }
        done += chunk.length;
        onBytes(done);
      }
    } finally {
      await new Promise<void>((resolve) => out.end(() => resolve()));
    }
    if (failed) throw failed;
    return done;
  }

  private async verify(file: TreeEntry, dest: string, size: number, done: number, sha256: string, blob: string): Promise<string> {
    const expected = file.lfs ? file.lfs.oid : file.oid;
    const got = file.lfs ? sha256 : blob;
    if (done !== size || got !== expected) {
      // refused, and not kept: the next try fetches it whole
      await rm(dest, { force: true });
      throw new PullError('verify_failed', `${this.repo}: ${file.path} does not match the repo (${done} of ${size} bytes, ${file.lfs ? 'sha256' : 'git blob id'} ${got.slice(0, 12)}..., expected ${expected.slice(0, 12)}...): it was removed; pull again`);
    }
    return sha256;
  }
}

/** Attempts of one file whose connection breaks; each resumes from what the last one wrote. */
const ATTEMPTS = 5;

async function withRetries<T>(what: string, signal: AbortSignal | undefined, attempt: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      // the server's answers (and the caller's abort) are final; a broken connection is tried again
      if (err instanceof PullError || signal?.aborted || (err as NodeJS.ErrnoException).code === 'ENOSPC') throw err;
      if (i >= ATTEMPTS) throw new PullError('http', `${what}: the connection broke ${ATTEMPTS} times (${(err as Error).message}); pull again: it resumes where it stopped`);
      await new Promise((r) => setTimeout(r, 200 * i));
    }
  }
}

/** Takes `<path>` for this process; a lock of a process that is gone is taken over. */
async function lock(path: string, engine: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, 'wx');
      await handle.writeFile(JSON.stringify({ pid: process.pid, at: new Date().toISOString() }));
      await handle.close();
      return () => unlink(path).catch(() => {});
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = await readFile(path, 'utf8').then((t) => JSON.parse(t) as { pid?: number }, () => ({}) as { pid?: number });
      if (holder.pid && holder.pid !== process.pid && alive(holder.pid)) throw new PullError('busy', `a pull of ${engine} is already running (process ${holder.pid}); wait for it`);
      if (holder.pid === process.pid) throw new PullError('busy', `a pull of ${engine} is already running in this process; wait for it`);
      await unlink(path).catch(() => {});
    }
  }
  throw new PullError('busy', `could not take the pull lock ${path}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
