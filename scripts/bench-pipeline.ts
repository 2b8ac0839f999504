/**
 * npm run bench:pipeline — tiny-sd, tiny-sdxl (25 steps, K_EULER) and tiny-sd3 (28 steps, its flow
 * sampler) on the CPU at 128x128: ms per image, time
 * inside onnxruntime, and the pipeline's own overhead (everything that is not onnxruntime: tokenizing,
 * prompt composition, scheduler maths, guidance, tensor conversion, PNG encoding) as a share of the total.
 *
 * Options (env): MODEL (one folder; default both tiny-sd and tiny-sdxl), RUNS (default 10), THREADS,
 * PROVIDERS (e.g. cuda,cpu).
 */
import { availableCpus, loadPipeline } from '../packages/pipeline/src';
import type { ExecutionProvider } from '../packages/pipeline/src';

const models = process.env.MODEL ? [process.env.MODEL] : ['models/tiny-sd', 'models/tiny-sdxl', 'models/tiny-sd3'];
const runs = Number(process.env.RUNS ?? 10);
for (const model of models) {
  const pipeline = await loadPipeline(model, {
    threads: process.env.THREADS ? Number(process.env.THREADS) : undefined,
    providers: process.env.PROVIDERS?.split(',') as ExecutionProvider[] | undefined,
  });

  // SD3 at its reference 28 steps with its one sampler; the others at 25 with Euler.
  const flow = pipeline.family.id === 'stable-diffusion-3';
  const steps = flow ? 28 : 25;
  const sampler = flow ? 'FLOW_MATCH_EULER' : 'K_EULER';
  const rows: string[] = [];
  for (const samples of [1, 4]) {
    const request = { prompts: [{ text: 'a red circle on a blue background' }], steps, samples, seed: 1, sampler };
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
  console.log(`model ${model} (${pipeline.family.name}), native ${pipeline.nativeWidth}x${pipeline.nativeHeight}, ${steps} steps, ${sampler}, guidance 7, ${runs} runs each, ${process.env.THREADS ?? availableCpus()} onnxruntime threads, node ${process.version}`);
  console.log('| batch | ms per request | ms per image | ms in onnxruntime | ms overhead | overhead share |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  await pipeline.dispose();
}
