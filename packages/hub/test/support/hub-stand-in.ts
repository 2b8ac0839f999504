/**
 * A Hugging Face Hub of our own for tests and benches: serves a folder as the repo `owner/name` at one
 * commit, with the Hub's model API (`/api/models/{repo}/revision/{rev}`, `/tree/{rev}/{path}?recursive`,
 * paged by a Link header) and `/{repo}/resolve/{rev}/{path}`: small files answered directly with their
 * git blob id as ETag, large ("LFS") ones redirected to a CDN path with X-Linked-Etag (sha256) and
 * X-Linked-Size, which honours Range. Faults on demand: a connection cut after N bytes (N times), a
 * corrupted file, a token required (401 without), Range ignored.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';

export interface StandInOptions {
  repo: string;
  dir: string;
  /** Files served beside the folder's (paths in the repo), e.g. checkpoints a pull must not fetch. */
  extra?: Record<string, Buffer>;
  /** Files at or above this size are LFS; default 4096. */
  lfsFrom?: number;
  /** Page size of tree listings; default 20. */
  pageSize?: number;
}

export interface Faults {
  /** Cut the connection after this many bytes of this file, `times` times. */
  cut?: { path: string; after: number; times: number };
  /** Serve this file with bytes changed. */
  corrupt?: string;
  /** Refuse (401) any request without `Authorization: Bearer <token>`. */
  token?: string;
  /** Answer a Range request with the whole file (200). */
  ignoreRange?: boolean;
}

interface File {
  path: string;
  data: Buffer;
  lfs: boolean;
  sha256: string;
  blobId: string;
}

export interface HubStandIn {
  url: string;
  commit: string;
  faults: Faults;
  /** Every request: method, path and Range header. */
  requests: { method: string; path: string; range?: string }[];
  /** Body bytes sent per repo path. */
  sent: Map<string, number>;
  close(): Promise<void>;
}

export async function startHubStandIn(opts: StandInOptions): Promise<HubStandIn> {
  const files = new Map<string, File>();
  const add = (path: string, data: Buffer) =>
    files.set(path, {
      path,
      data,
      lfs: data.length >= (opts.lfsFrom ?? 4096),
      sha256: createHash('sha256').update(data).digest('hex'),
      blobId: createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex'),
    });
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else add(relative(opts.dir, full).split('\\').join('/'), readFileSync(full));
    }
  };
  walk(opts.dir);
  for (const [path, data] of Object.entries(opts.extra ?? {})) add(path, data);
  const commit = createHash('sha1').update([...files.values()].map((f) => f.blobId).join()).digest('hex');
  const byHash = new Map([...files.values()].map((f) => [f.sha256, f]));
  const faults: Faults = {};
  const requests: HubStandIn['requests'] = [];
  const sent = new Map<string, number>();
  const pageSize = opts.pageSize ?? 20;

  const fail = (res: ServerResponse, status: number, code?: string) => {
    res.writeHead(status, { 'content-type': 'application/json', ...(code ? { 'x-error-code': code } : {}) });
    res.end(JSON.stringify({ error: code ?? `HTTP ${status}` }));
  };
  const revisionOk = (rev: string) => rev === 'main' || rev === commit;

  const serveBytes = (req: IncomingMessage, res: ServerResponse, file: File, headers: Record<string, string>) => {
    let data = file.data;
    if (faults.corrupt === file.path) data = Buffer.concat([data.subarray(0, data.length - 1), Buffer.from([data[data.length - 1] ^ 0xff])]);
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    let start = 0;
    if (range && !faults.ignoreRange) {
      start = Number(range[1]);
      res.writeHead(206, { ...headers, 'content-length': String(data.length - start), 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` });
    } else {
      res.writeHead(200, { ...headers, 'content-length': String(data.length) });
    }
    let body = data.subarray(start);
    const cut = faults.cut;
    if (cut && cut.path === file.path && cut.times > 0 && body.length > cut.after) {
      cut.times--;
      body = body.subarray(0, cut.after);
      sent.set(file.path, (sent.get(file.path) ?? 0) + body.length);
      // closed after the bytes (FIN, not a reset that could drop them): the client sees a short body
      res.write(body, () => res.socket?.end());
      return;
    }
    sent.set(file.path, (sent.get(file.path) ?? 0) + body.length);
    res.end(body);
  };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://stand-in');
    requests.push({ method: req.method ?? 'GET', path: url.pathname, range: req.headers.range });
    if (faults.token && req.headers.authorization !== `Bearer ${faults.token}`) return fail(res, 401);
    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
    if (cdn) {
      const file = byHash.get(cdn[1]);
      return file ? serveBytes(req, res, file, { 'content-type': 'application/octet-stream' }) : fail(res, 404);
    }
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|tree)\/([^/]+)(\/.*)?$/.exec(url.pathname);
    if (api) {
      if (api[1] !== opts.repo) return fail(res, 404, 'RepoNotFound');
      const rev = decodeURIComponent(api[3]);
      if (!revisionOk(rev)) return fail(res, 404, 'RevisionNotFound');
      if (api[2] === 'revision') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ id: opts.repo, sha: commit, siblings: [...files.keys()].map((rfilename) => ({ rfilename })) }));
      }
      const under = api[4] ? decodeURIComponent(api[4].slice(1)) : '';
      const listed = [...files.values()].filter((f) => !under || f.path.startsWith(`${under}/`)).sort((a, b) => a.path.localeCompare(b.path));
      if (under && listed.length === 0) return fail(res, 404, 'EntryNotFound');
      const cursor = Number(url.searchParams.get('cursor') ?? 0);
      const page = listed.slice(cursor, cursor + pageSize).map((f) => ({
        type: 'file',
        path: f.path,
        size: f.lfs ? 134 : f.data.length,
        oid: f.blobId,
        ...(f.lfs ? { lfs: { oid: f.sha256, size: f.data.length, pointerSize: 134 } } : {}),
      }));
      const next = cursor + pageSize < listed.length ? `<http://${req.headers.host}${url.pathname}?recursive=true&cursor=${cursor + pageSize}>; rel="next"` : undefined;
      res.writeHead(200, { 'content-type': 'application/json', ...(next ? { link: next } : {}) });
      return res.end(JSON.stringify(page));
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (resolve) {
      if (resolve[1] !== opts.repo) return fail(res, 404, 'RepoNotFound');
      if (!revisionOk(decodeURIComponent(resolve[2]))) return fail(res, 404, 'RevisionNotFound');
      const file = files.get(resolve[3].split('/').map(decodeURIComponent).join('/'));
      if (!file) return fail(res, 404, 'EntryNotFound');
      const common = { 'x-repo-commit': commit };
      if (file.lfs) {
        res.writeHead(302, { ...common, location: `/cdn/${file.sha256}`, 'x-linked-etag': `"${file.sha256}"`, 'x-linked-size': String(file.data.length), etag: `"${file.blobId}"` });
        return res.end();
      }
      return serveBytes(req, res, file, { ...common, etag: `"${file.blobId}"`, 'content-type': 'application/octet-stream' });
    }
    fail(res, 404);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    commit,
    faults,
    requests,
    sent,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
