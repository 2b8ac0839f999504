import { readFileSync, writeFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parseArgs } from 'node:util';
import { loadPipeline } from './families';
import { DEFAULTS } from './pipeline';
import { Upscaler } from './upscaler';
import { PipelineError } from './errors';
import { SAMPLERS } from './schedulers/samplers';
import type { ExecutionProvider, MaskSource, OutputFormat, ProgressEvent } from './types';

const HELP = `Usage: sdq-generate "<prompt>" [options]

Generates images with a Stable Diffusion ONNX model folder (diffusers layout).

Options:
  --model <dir>         model folder (default models/tiny-sd)
  --negative <text>     negative prompt
  --steps <n>           denoising steps (default ${DEFAULTS.steps})
  --cfg <x>             guidance scale (default ${DEFAULTS.cfgScale}; <= 1 turns guidance off)
  --seed <n>            seed; 0 = random (default 0)
  --sampler <name>      ${SAMPLERS.join(', ')} (default: the model's scheduler)
  --width <px>, --height <px>   output size (default: the model's native size)
  --samples <n>         images in one batch (default 1); files get -0, -1, ... suffixes
  --init <image>        image-to-image from this image
  --strength <x>        fraction of the init image kept, 0..1 (default ${DEFAULTS.imageStrength})
  --mask <image>        masking: repaint where the mask is white (see --mask-source)
  --mask-source <s>     MASK_IMAGE_WHITE (default), MASK_IMAGE_BLACK or INIT_IMAGE_ALPHA
  --upscale             upscale the result (or, without a prompt, the --init image)
  --upscaler <dir>      upscaler folder (default models/tiny-upscaler-x2)
  --providers <list>    execution providers in priority order, e.g. cuda,cpu (default cpu)
  --fallback            fall back to the next provider when one cannot load
  --threads <n>         onnxruntime threads
  -o, --output <file>   output file; .png, .jpg or .webp (default out.png)
  -h, --help            this help
`;

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new PipelineError('invalid_prompts', `--${name} must be a number (got ${v})`);
  return n;
}

function formatOf(file: string): OutputFormat {
  const ext = extname(file).toLowerCase();
  if (ext === '.jpg' || ext === '.jpeg') return 'jpeg';
  if (ext === '.webp') return 'webp';
  return 'png';
}

/** A one-line progress bar on stderr, redrawn in place when stderr is a terminal. */
function progressBar(label: string) {
  const tty = process.stderr.isTTY;
  return (p: ProgressEvent) => {
    const width = 30;
    const filled = Math.round((p.step / p.total) * width);
    const line = `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.step}/${p.total} ${(p.elapsedMs / 1000).toFixed(1)}s`;
    if (tty) process.stderr.write(`\r${line}${p.step === p.total ? '\n' : ''}`);
    else if (p.step === p.total || p.step % 5 === 0) process.stderr.write(`${line}\n`);
  };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      model: { type: 'string', default: 'models/tiny-sd' },
      negative: { type: 'string' },
      steps: { type: 'string' },
      cfg: { type: 'string' },
      seed: { type: 'string' },
      sampler: { type: 'string' },
      width: { type: 'string' },
      height: { type: 'string' },
      samples: { type: 'string' },
      init: { type: 'string' },
      strength: { type: 'string' },
      mask: { type: 'string' },
      'mask-source': { type: 'string' },
      upscale: { type: 'boolean', default: false },
      upscaler: { type: 'string', default: 'models/tiny-upscaler-x2' },
      providers: { type: 'string' },
      fallback: { type: 'boolean', default: false },
      threads: { type: 'string' },
      output: { type: 'string', short: 'o', default: 'out.png' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const prompt = positionals.join(' ');
  const runtime = {
    providers: values.providers?.split(',').map((p) => p.trim()) as ExecutionProvider[] | undefined,
    fallback: values.fallback,
    threads: num('threads', values.threads),
  };
  const output = values.output!;
  const format = formatOf(output);

  if (!prompt) {
    if (!(values.upscale && values.init)) throw new PipelineError('invalid_prompts', 'a prompt is required (or --upscale --init <image>)');
    const upscaler = await Upscaler.load(values.upscaler!, runtime);
    const image = await upscaler.upscale({ image: readFileSync(values.init), outputFormat: format, onProgress: progressBar('upscale') });
    writeFileSync(output, image.data);
    process.stdout.write(`${output} ${image.width}x${image.height}\n`);
    return;
  }

  const pipeline = await loadPipeline(values.model!, runtime);
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  const result = await pipeline.generate({
    prompts: [{ text: prompt, weight: 1 }, ...(values.negative ? [{ text: values.negative, weight: -1 }] : [])],
    steps: num('steps', values.steps),
    cfgScale: num('cfg', values.cfg),
    seed: num('seed', values.seed),
    sampler: values.sampler,
    width: num('width', values.width),
    height: num('height', values.height),
    samples: num('samples', values.samples),
    initImage: values.init ? readFileSync(values.init) : undefined,
    imageStrength: num('strength', values.strength),
    maskImage: values.mask ? readFileSync(values.mask) : undefined,
    maskSource: values.mask || values['mask-source'] ? ((values['mask-source'] ?? 'MASK_IMAGE_WHITE') as MaskSource) : undefined,
    outputFormat: format,
    onProgress: progressBar('generate'),
    signal: controller.signal,
  });
  if (result.truncatedTokens > 0) process.stderr.write(`warning: prompt truncated, ${result.truncatedTokens} tokens dropped\n`);
  const upscaler = values.upscale ? await Upscaler.load(values.upscaler!, runtime) : undefined;
  for (const [i, image] of result.images.entries()) {
    const file = result.images.length > 1 ? output.replace(/(\.[^.]*)?$/, `-${i}$1`) : output;
    const data = upscaler ? (await upscaler.upscale({ image: image.data, outputFormat: format })).data : image.data;
    writeFileSync(file, data);
    process.stdout.write(`${file} seed=${image.seed}\n`);
  }
}

main().catch((err) => {
  if (err instanceof PipelineError) {
    process.stderr.write(`error (${err.code}): ${err.message}\n`);
    process.exit(err.code === 'canceled' ? 130 : 2);
  }
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
