/**
 * `npm run bench:lora`: what a LoRA set costs on tiny-sd, against the base engine in the same run: the
 * time to blend a new set into the text encoder and UNet graphs and load them (what a request with a set
 * not cached pays once), and an image with a cached set against an image on the base pipeline (goal: a
 * cached set adds under 2%). The blend's rate (bytes of weights rewritten per second) gives what an SD
 * 1.5-sized UNet (2.6 GB fp32, 1.7 GB fp16) would cost to blend on this machine.
 *
 *   BENCH_ROUNDS (7)   images per side, alternated; the median
 *   SD15_DIR           a folder made by ../shared/tools/sd15_random.py (--parts unet is enough): also
 *                      blend a rank-4 LoRA on every attention and feed-forward layer of its UNet, measured
 */
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadPipeline } from '@sdq/pipeline';
import { OnnxClock, OnnxModel } from '../packages/pipeline/src/backends/onnx';
import { blendLoras } from '../packages/pipeline/src/lora-blend';
import { type LoraModule, readLora } from '../packages/pipeline/src/lora';
import { modulePathOf } from '../packages/pipeline/src/lora-blend';
import { readOnnxGraph } from '../packages/pipeline/src/onnx-graph';
import { withLoras } from '../packages/pipeline/src/lora-pipeline';
import { readSafetensorsFile } from '../packages/pipeline/src/safetensors';

const ROOT = resolve(import.meta.dirname, '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
// the export whose nodes carry module names (models/tiny-sd's older one has none)
const MODEL = resolve(ROOT, '../shared/models/tiny-sd');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const modules = readLora(readSafetensorsFile(join(ROOT, 'packages/pipeline/test/fixtures/adapters/green-objects.safetensors')));
const lora = { name: 'green-objects', weight: 0.8, modules };

const base = await loadPipeline(MODEL);
const request = { prompts: [{ text: 'a red circle on a blue background' }], seed: 1, steps: 20 };
await base.generate(request);

// blend alone, per graph, and blend + load
const blends: number[] = [];
const loads: number[] = [];
for (let i = 0; i < 3; i++) {
  let started = performance.now();
  blendLoras(join(MODEL, 'text_encoder/model.onnx'), 'text_encoder', [lora]);
  blendLoras(join(MODEL, 'unet/model.onnx'), 'unet', [lora]);
  blends.push(performance.now() - started);
  started = performance.now();
  const set = await withLoras(base, [lora]);
  loads.push(performance.now() - started);
  await set.dispose();
}
const graphBytes = statSync(join(MODEL, 'text_encoder/model.onnx')).size + statSync(join(MODEL, 'unet/model.onnx')).size;

const cached = await withLoras(base, [lora]);
await cached.pipeline.generate(request);
const plain: number[] = [];
const withSet: number[] = [];
for (let i = 0; i < ROUNDS; i++) {
  let started = performance.now();
  await base.generate(request);
  plain.push(performance.now() - started);
  started = performance.now();
  await cached.pipeline.generate(request);
  withSet.push(performance.now() - started);
}
await cached.dispose();
await base.dispose();

const [b, l, p, w] = [median(blends), median(loads), median(plain), median(withSet)];
const rate = graphBytes / (b / 1000);
console.log(`bench:lora on tiny-sd (${(graphBytes / 2 ** 20).toFixed(1)} MB of text encoder and UNet graphs), green-objects (88 modules, rank 4), median`);
console.log(`  blend (read the graphs, add the changes, in memory):  ${b.toFixed(0)} ms, ${(rate / 2 ** 20).toFixed(0)} MB/s of graph`);
console.log(`  a new set: blend + load its sessions:                  ${l.toFixed(0)} ms`);
console.log(`  image (20 steps) on the base pipeline:                 ${p.toFixed(1)} ms`);
console.log(`  image (20 steps) with the cached set:                  ${w.toFixed(1)} ms  (${(((w - p) / p) * 100).toFixed(1)}%, goal < 2%)`);
console.log(`  an SD 1.5-sized UNet at this rate: ${((2.6 * 2 ** 30) / rate).toFixed(1)} s (fp32, 2.6 GB), ${((1.7 * 2 ** 30) / rate).toFixed(1)} s (fp16, 1.7 GB) to blend, before its load`);

const sd15 = process.env.SD15_DIR;
if (sd15) {
  // a LoRA of rank 4 on every Linear of the UNet's transformer blocks, shaped from the graph itself
  const unetPath = join(sd15, 'unet/model.onnx');
  const graph = readOnnxGraph(readFileSync(unetPath));
  const unetModules: LoraModule[] = [];
  const rank = 4;
  let seed = 1;
  const random = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.01);
  for (const node of graph.nodes) {
    if (node.opType !== 'MatMul' || !node.name.includes('transformer_blocks')) continue;
    const weight = node.inputs.map((n) => graph.initializers.get(n)).find((i) => i?.dims.length === 2);
    const path = modulePathOf(node.name);
    if (!weight || !path) continue;
    const [inputs, outputs] = weight.dims;
    unetModules.push({ component: 'unet', path, rank, scale: 1, down: { data: random(rank * inputs), shape: [rank, inputs] }, up: { data: random(outputs * rank), shape: [outputs, rank] } });
  }
  const dataBytes = [...new Set([...graph.initializers.values()].flatMap((i) => (i.bytes?.kind === 'external' ? [i.bytes.location] : [])))].reduce((sum, f) => sum + statSync(join(sd15, 'unet', f)).size, 0) + statSync(unetPath).size;
  const rss = () => process.memoryUsage().rss / 2 ** 30;
  const before = rss();
  const started = performance.now();
  const result = blendLoras(unetPath, 'unet', [{ name: 'sd15-lora', weight: 1, modules: unetModules }]);
  const ms = performance.now() - started;
  const applied = result.applied.get('sd15-lora')!;
  // and the set's UNet session loaded from it (the staged folder: the changed data, a link to the rest)
  const loadStarted = performance.now();
  const session = await OnnxModel.load(unetPath, {}, new OnnxClock(), result);
  const loadMs = performance.now() - loadStarted;
  const loadedRss = rss();
  await session.dispose();
  console.log(`  then its blended session loaded in ${(loadMs / 1000).toFixed(1)} s, RSS then ${loadedRss.toFixed(1)} GB`);
  console.log(`  SD 1.5-sized UNet (${(dataBytes / 2 ** 30).toFixed(2)} GB of graph and external data): a rank-4 LoRA on ${applied.matched} of ${unetModules.length} transformer Linear layers blended in ${(ms / 1000).toFixed(1)} s (${(dataBytes / 2 ** 20 / (ms / 1000)).toFixed(0)} MB/s), RSS ${before.toFixed(1)} -> ${rss().toFixed(1)} GB`);
}
