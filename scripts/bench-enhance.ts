/**
 * `npm run bench:enhance`: the tiled enhancement behind v2beta's conservative and creative upscales, on
 * tiny-sd (128x128 tiles, 30 steps at the creative default's denoise 0.3, guidance 7), in this process.
 * For each output size: tiles, wall time, time per tile, and how far resident memory (VmRSS) rose above
 * what the loaded model already held. Memory should grow with the output's pixels (one float RGB
 * accumulator), not with the number of tiles.
 */
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { StableDiffusionPipeline, tiledEnhance, tileOrigins } from '../packages/pipeline/src';

const SIZES = (process.env.BENCH_SIZES ?? '256,512,1024').split(',').map(Number);
const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
const peakMiB = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;

const pipeline = await StableDiffusionPipeline.load('models/tiny-sd');
// warm up: the first run pays for graph optimisation
await pipeline.generate({ prompts: [{ text: 'a red circle on a blue background' }], steps: 4, seed: 1 });
const base = rssMiB();
console.log(`model loaded: RSS ${base.toFixed(0)} MiB`);
console.log('output     tiles  wall s  ms/tile  RSS rise MiB  peak MiB');
for (const side of SIZES) {
  const input = await sharp({ create: { width: side / 2, height: side / 2, channels: 3, background: '#2040c0' } })
    .composite([{ input: await sharp({ create: { width: side / 4, height: side / 4, channels: 3, background: '#d02020' } }).png().toBuffer(), left: side / 8, top: side / 8 }])
    .png()
    .toBuffer();
  const tiles = tileOrigins(side, 128, 32).length ** 2;
  const before = rssMiB();
  let high = before;
  const timer = setInterval(() => (high = Math.max(high, rssMiB())), 20);
  const start = performance.now();
  await tiledEnhance(pipeline, {
    image: input,
    width: side,
    height: side,
    tileWidth: 128,
    tileHeight: 128,
    prompts: [{ text: 'a red square on a blue background' }],
    imageStrength: 0.7,
    steps: 30,
    cfgScale: 7,
    seed: 7,
    outputFormat: 'png',
  });
  const wall = (performance.now() - start) / 1000;
  clearInterval(timer);
  high = Math.max(high, rssMiB());
  console.log(`${`${side}x${side}`.padEnd(10)} ${String(tiles).padStart(5)}  ${wall.toFixed(1).padStart(6)}  ${((wall * 1000) / tiles).toFixed(0).padStart(7)}  ${(high - before).toFixed(0).padStart(12)}  ${peakMiB().toFixed(0).padStart(8)}`);
}
await pipeline.dispose();
