/**
 * `npm run bench:uploads`: what uploads cost the API, on this machine, with the API as its own process
 * (`npm run start:api`'s entry) on loopback, a private redis-server and local storage.
 *
 * 1. Stalled clients: STALLED uploads each send 9 MB of a 10 MB init image and stop. The API's resident
 *    memory (VmRSS) before, while they are held, and after they drop; other clients' answers meanwhile.
 * 2. Validation: the latency of a dry-run image-to-image with a noise PNG of each size (the API decodes
 *    every pixel before it accepts an upload), median and p90 of RUNS, against a JSON text-to-image dry run.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../test/e2e/support';
import { startTestRedis } from '../test/support/redis';
import { type ApiProcess, png, rssMiB, spawnApi, stalledUpload } from '../test/security/support';

const STALLED = Number(process.env.BENCH_STALLED ?? 100);
const RUNS = Number(process.env.BENCH_RUNS ?? 30);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.9))];

async function timed(fn: () => Promise<Response>): Promise<number> {
  const start = performance.now();
  const res = await fn();
  await res.arrayBuffer();
  if (res.status >= 300) throw new Error(`unexpected ${res.status}`);
  return performance.now() - start;
}

const redis = await startTestRedis();
const uploads = mkdtempSync(join(tmpdir(), 'sdq-bench-uploads-'));
let api: ApiProcess | undefined;
try {
  api = await spawnApi(redis, {
    UPLOAD_TMP_DIR: uploads,
    UPLOAD_IDLE_TIMEOUT_MS: '120000',
    MAX_UPLOADS_PER_KEY: String(STALLED),
    RATE_LIMIT: '1000000',
    MAX_PIXELS: String(1024 * 1024),
  });
  const { url, pid } = api;
  const key = await api.account('bench', 100);
  const auth = { authorization: `Bearer ${key}` };

  // 2. Validation cost per upload size (run first, on a quiet API).
  const t2i = () => fetch(`${url}/v1/generation/gen-a/text-to-image?dry_run=true`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ text_prompts: [{ text: 'a red circle' }] }) });
  const i2i = (image: Buffer) => () => {
    const fd = new FormData();
    fd.append('text_prompts[0][text]', 'a red circle');
    fd.append('width', '512');
    fd.append('height', '512');
    fd.append('init_image', new Blob([new Uint8Array(image)], { type: 'image/png' }), 'a.png');
    return fetch(`${url}/v1/generation/gen-a/image-to-image?dry_run=true`, { method: 'POST', headers: auth, body: fd });
  };
  const rows: [string, () => Promise<Response>][] = [['JSON text-to-image', t2i]];
  for (const side of [128, 512, 1024]) {
    const image = await png(side, side, { noise: true });
    rows.push([`image-to-image, ${side}x${side} noise PNG (${(image.length / 1024).toFixed(0)} KiB)`, i2i(image)]);
  }
  console.log(`validation: dry-run latency, ${RUNS} runs each after 3 warm-up runs`);
  for (const [name, call] of rows) {
    for (let i = 0; i < 3; i++) await timed(call);
    const xs: number[] = [];
    for (let i = 0; i < RUNS; i++) xs.push(await timed(call));
    console.log(`  ${name}: median ${median(xs).toFixed(1)} ms, p90 ${p90(xs).toFixed(1)} ms`);
  }

  // 1. Stalled clients.
  const baseline = rssMiB(pid);
  const sockets: Socket[] = [];
  const latencies: number[] = [];
  for (let i = 0; i < STALLED; i += 10) {
    sockets.push(...(await Promise.all(Array.from({ length: Math.min(10, STALLED - i) }, () => stalledUpload(url, key, 10 * 1024 * 1024 - 1024, 9 * 1024 * 1024)))));
    latencies.push(await timed(() => fetch(`${url}/v1/engines/list`, { headers: auth })));
  }
  await waitFor(async () => readdirSync(uploads).length === STALLED || undefined, 'every upload to be receiving', 60_000);
  for (let i = 0; i < 10; i++) latencies.push(await timed(() => fetch(`${url}/v1/engines/list`, { headers: auth })));
  const held = rssMiB(pid);
  for (const s of sockets) s.destroy();
  await waitFor(async () => readdirSync(uploads).length === 0 || undefined, 'the dropped uploads to be removed', 30_000);
  await new Promise((r) => setTimeout(r, 1000));
  const after = rssMiB(pid);
  console.log(`stalled uploads: ${STALLED} x 9 MB of 10 MB`);
  console.log(`  API rss: baseline ${baseline.toFixed(0)} MiB, held ${held.toFixed(0)} MiB (+${(held - baseline).toFixed(0)}), after they drop ${after.toFixed(0)} MiB (+${(after - baseline).toFixed(0)})`);
  console.log(`  other clients meanwhile: median ${median(latencies).toFixed(1)} ms, worst ${Math.max(...latencies).toFixed(1)} ms (${latencies.length} requests)`);
} finally {
  await api?.close();
  await redis.close();
  rmSync(uploads, { recursive: true, force: true });
}
