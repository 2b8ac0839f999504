/**
 * npm run bench:pipeline — tiny-sd on the CPU at 128x128, 25 steps: ms per image, time inside
 * onnxruntime, and the pipeline's own overhead (everything that is not onnxruntime: tokenizing,
 * scheduler maths, guidance, tensor conversion, PNG encoding) as a share of the total.
 *
 * Options (env): MODEL (default models/tiny-sd), RUNS (default 10), THREADS, PROVIDERS (e.g. cuda,cpu).
 */
import { StableDiffusionPipeline } from '../packages/pipeline/src';
import type { ExecutionProvider } from '../packages/pipeline/src';

const model = process.env.MODEL ?? 'models/tiny-sd';
const runs = Number(process.env.RUNS ?? 10);
const pipeline = await StableDiffusionPipeline.load(model, {
  threads: process.env.THREADS ? Number(process.env.THREADS) : undefined,
  providers: process.env.PROVIDERS?.split(',') as ExecutionProvider[] | undefined,
});

const rows: string[] = [];
for (const samples of [1, 4]) {
  const request = { prompts: [{ text: 'a red circle on a blue background' }], steps: 25, samples, seed: 1, sampler: 'K_EULER' };
  for (let i = 0; i < 2; i++) await pipeline.generate(request); // warm-up
  let total = 0;
  let onnx = 0;
  for (let i = 0; i < runs; i++) {
    const r = await pipeline.generate({ ...request, seed: i + 1 });
    total += r.timings.totalMs;
    onnx += r.timings.onnxMs;
  }
  const perImage = total / runs / samples;
  const overhead = (total - onnx) / total;
  rows.push(
    `| ${samples} | ${(total / runs).toFixed(1)} | ${perImage.toFixed(1)} | ${(onnx / runs).toFixed(1)} | ${((total - onnx) / runs).toFixed(2)} | ${(overhead * 100).toFixed(2)}% |`,
  );
}
console.log(`model ${model}, 128x128-class native size, 25 steps, K_EULER, guidance 7, ${runs} runs each, node ${process.version}`);
console.log('| batch | ms per request | ms per image | ms in onnxruntime | ms overhead | overhead share |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
await pipeline.dispose();
