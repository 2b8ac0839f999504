import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULTS } from './defaults';
import { PipelineError } from './errors';
import { SAMPLERS } from './schedulers/samplers';
import { optionErrorMessage } from './suggest';
import type { ExecutionProvider, MaskSource, OutputFormat, ProgressEvent } from './types';

// The embedded models, found from wherever the CLI runs (npx from any folder)
const REPO_MODELS = resolve(import.meta.dirname, '../../../models');
const DEFAULT_MODEL = resolve(REPO_MODELS, 'tiny-sd');
const DEFAULT_UPSCALER = resolve(REPO_MODELS, 'tiny-upscaler-x2');

/** A mistake of the caller's: one line with a code and a hint, exit 2. */
class UsageError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const HELP = `Usage: sdq-generate "<prompt>" [options]

Generates images with a Stable Diffusion ONNX model folder (diffusers layout).

Options:
  --model <dir>         model folder (default: sdq's models/tiny-sd, found from any folder)
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
  --upscaler <dir>      upscaler folder (default: sdq's models/tiny-upscaler-x2)
  --providers <list>    execution providers in priority order, e.g. cuda,cpu (default cpu)
  --fallback            fall back to the next provider when one cannot load
  --threads <n>         onnxruntime threads (default: the CPUs this process may use)
  -o, --output <file>   output file; .png, .jpg or .webp (default out.png)
  -h, --help            this help
`;

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || v.trim() === '') throw new UsageError('invalid_option', `--${name} must be a number (got ${JSON.stringify(v)})`);
  return n;
}

/** A file the caller named, read; a missing one is a usage error naming the flag. */
function readInput(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError('file_not_found', `${flag}: no such file ${JSON.stringify(path)} (from ${process.cwd()})`);
    if (code === 'EISDIR') throw new UsageError('file_not_found', `${flag}: ${JSON.stringify(path)} is a folder, not an image`);
    throw new UsageError('file_not_readable', `${flag}: cannot read ${JSON.stringify(path)} (${code ?? (err as Error).message})`);
  }
}

/** A model folder the caller named (relative to where they are), or the embedded default. */
function folder(flag: string, given: string | undefined, fallback: string): string {
  const dir = given === undefined ? fallback : resolve(given);
  if (!existsSync(dir)) throw new UsageError('model_not_found', `${flag}: no such folder ${JSON.stringify(given ?? dir)}${given === undefined ? ' (the embedded model is missing: reinstall sdq)' : ''}`);
  return dir;
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
  const options = {
    model: { type: 'string' },
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
    upscaler: { type: 'string' },
    providers: { type: 'string' },
    fallback: { type: 'boolean', default: false },
    threads: { type: 'string' },
    output: { type: 'string', short: 'o', default: 'out.png' },
    help: { type: 'boolean', short: 'h', default: false },
  } as const;
  let parsed;
  try {
    parsed = parseArgs({ allowPositionals: true, options });
  } catch (err) {
    throw new UsageError(/Unknown option/.test((err as Error).message) ? 'unknown_option' : 'invalid_option', optionErrorMessage(err, Object.keys(options)));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  // the pipeline and onnxruntime load only now: --help answers without them
  const [{ loadPipeline }, { Upscaler }] = await Promise.all([import('./families'), import('./upscaler')]);
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
    const init = readInput('--init', values.init);
    const upscaler = await Upscaler.load(folder('--upscaler', values.upscaler, DEFAULT_UPSCALER), runtime);
    const image = await upscaler.upscale({ image: init, outputFormat: format, onProgress: progressBar('upscale') });
    writeFileSync(output, image.data);
    process.stdout.write(`${output} ${image.width}x${image.height}\n`);
    return;
  }

  // inputs first: a missing file is said before a model loads
  const initImage = values.init ? readInput('--init', values.init) : undefined;
  const maskImage = values.mask ? readInput('--mask', values.mask) : undefined;
  const upscalerDir = values.upscale ? folder('--upscaler', values.upscaler, DEFAULT_UPSCALER) : undefined;
  const pipeline = await loadPipeline(folder('--model', values.model, DEFAULT_MODEL), runtime);
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
    initImage,
    imageStrength: num('strength', values.strength),
    maskImage,
    maskSource: values.mask || values['mask-source'] ? ((values['mask-source'] ?? 'MASK_IMAGE_WHITE') as MaskSource) : undefined,
    outputFormat: format,
    onProgress: progressBar('generate'),
    signal: controller.signal,
  });
  if (result.truncatedTokens > 0) process.stderr.write(`warning: prompt truncated, ${result.truncatedTokens} tokens dropped\n`);
  const upscaler = upscalerDir ? await Upscaler.load(upscalerDir, runtime) : undefined;
  for (const [i, image] of result.images.entries()) {
    const file = result.images.length > 1 ? output.replace(/(\.[^.]*)?$/, `-${i}$1`) : output;
    const data = upscaler ? (await upscaler.upscale({ image: image.data, outputFormat: format })).data : image.data;
    writeFileSync(file, data);
    process.stdout.write(`${file} seed=${image.seed}\n`);
  }
}

// One line, never a stack trace (SDQ_DEBUG=1 prints it): the code, what went wrong, and where to look.
main().catch((err) => {
  if (err instanceof UsageError) {
    process.stderr.write(`sdq-generate: error (${err.code}): ${err.message}; see sdq-generate --help\n`);
    process.exit(2);
  }
  if (err instanceof PipelineError) {
    process.stderr.write(`sdq-generate: error (${err.code}): ${err.message}\n`);
    process.exit(err.code === 'canceled' ? 130 : 2);
  }
  process.stderr.write(`sdq-generate: error (internal): ${err instanceof Error ? err.message : String(err)}${process.env.SDQ_DEBUG ? `\n${(err as Error).stack}` : ' (SDQ_DEBUG=1 shows where)'}\n`);
  process.exit(1);
});
