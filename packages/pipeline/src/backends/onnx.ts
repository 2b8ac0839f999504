/**
 * The only module that imports onnxruntime-node: sessions, execution providers and tensors.
 * Everything above it works with Float32Array / number[] and the graphs' own metadata.
 */
import * as ort from 'onnxruntime-node';
import { constants, copyFileSync, existsSync, linkSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { PipelineError } from '../errors';
import type { ExecutionProvider, RuntimeOptions } from '../types';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../fp16';
import { availableCpus } from '../cpus';

export type TensorType = 'float32' | 'float16' | 'int32' | 'int64';

export interface IoInfo {
  name: string;
  type: TensorType | string;
  /** Symbolic dimensions are strings (e.g. "batch"); -1 when unknown. */
  shape: (number | string)[];
}

/** A tensor on the JS side: float data is always Float32Array, integer data plain numbers. */
export interface HostTensor {
  data: Float32Array;
  dims: number[];
}

export interface FeedValue {
  /** Float32Array for float inputs (converted to float16 when the graph wants it); number[] for integer ids. */
  data: Float32Array | number[];
  dims: number[];
}

/** onnxruntime's version, for what depends on it (the memory models' cache key). */
export const RUNTIME_VERSION: string = (ort.env as { versions?: { node?: string; common?: string } }).versions?.node ?? (ort.env as { versions?: { common?: string } }).versions?.common ?? 'unknown';

/** Time spent inside onnxruntime, summed over all sessions of one pipeline. */
export class OnnxClock {
  ms = 0;
}

function ioInfo(meta: readonly ort.InferenceSession.ValueMetadata[]): IoInfo[] {
  return meta.map((m) =>
    m.isTensor
      ? { name: m.name, type: m.type, shape: [...m.shape].map((d) => (typeof d === 'number' ? d : String(d))) }
      : { name: m.name, type: 'non-tensor', shape: [] },
  );
}

function toOrtTensor(value: FeedValue, type: string): ort.Tensor {
  const size = value.dims.reduce((a, b) => a * b, 1);
  if (value.data.length !== size) throw new Error(`tensor data has ${value.data.length} values for shape [${value.dims}]`);
  switch (type) {
    case 'float32':
      return new ort.Tensor('float32', value.data instanceof Float32Array ? value.data : Float32Array.from(value.data), value.dims);
    case 'float16': {
      const src = value.data instanceof Float32Array ? value.data : Float32Array.from(value.data);
      return new ort.Tensor('float16', float32ToFloat16Bits(src), value.dims);
    }
    case 'int32':
      return new ort.Tensor('int32', Int32Array.from(value.data as ArrayLike<number>), value.dims);
    case 'int64': {
      const out = new BigInt64Array(size);
      for (let i = 0; i < size; i++) out[i] = BigInt(Math.round(value.data[i] as number));
      return new ort.Tensor('int64', out, value.dims);
    }
    default:
      throw new Error(`unsupported input tensor type ${type}`);
  }
}

function fromOrtTensor(tensor: ort.Tensor): HostTensor {
  const dims = [...tensor.dims];
  switch (tensor.type) {
    case 'float32':
      return { data: tensor.data as Float32Array, dims };
    case 'float16': {
      const data = tensor.data as unknown;
      // Newer Node versions hand back Float16Array; Node 20 gives the raw IEEE half bits.
      if (data instanceof Uint16Array) return { data: float16BitsToFloat32(data), dims };
      return { data: Float32Array.from(data as ArrayLike<number>), dims };
    }
    default:
      return { data: Float32Array.from(tensor.data as ArrayLike<number>, Number), dims };
  }
}

/** One ONNX graph, loaded once and reused for every request. */
export class OnnxModel {
  readonly inputs: IoInfo[];
  readonly outputs: IoInfo[];

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly path: string,
    readonly provider: ExecutionProvider,
    private readonly clock: OnnxClock,
  ) {
    this.inputs = ioInfo(session.inputMetadata);
    this.outputs = ioInfo(session.outputMetadata);
  }

  /**
   * Creates the session on the first provider of the priority list that loads. Without `fallback` the
   * first failure is final, since silently running a GPU deployment on the CPU is rarely wanted.
   */
  static async load(path: string, options: RuntimeOptions, clock: OnnxClock, blended?: { model: Uint8Array; external: Map<string, Uint8Array>; externalFiles: string[] }): Promise<OnnxModel> {
    if (!existsSync(path)) throw new PipelineError('invalid_model', `model file missing: ${path}`);
    // A graph blended in memory (adapters) loads from its bytes. One with external data files is written
    // to a folder of its own first: its changed data beside hard links to the original files (a copy
    // where the temporary folder is on another file system), which onnxruntime then reads from disk as
    // it reads the base graph's. Node's binding takes external data only as bytes, an SD 1.5 UNet's data
    // file is 3.4 GB, and onnxruntime refuses a symbolic link that leaves the model's folder. The folder
    // goes once the session holds the weights.
    let staged: string | undefined;
    let source: string | Uint8Array = path;
    if (blended && blended.externalFiles.length === 0) source = blended.model;
    else if (blended) {
      staged = mkdtempSync(join(tmpdir(), 'sdq-blended-'));
      source = join(staged, basename(path));
      writeFileSync(source, blended.model);
      for (const location of blended.externalFiles) {
        const own = blended.external.get(location);
        if (own) writeFileSync(join(staged, location), own);
        else linkOrCopy(join(dirname(resolve(path)), location), join(staged, location));
      }
    }
    try {
      return await OnnxModel.create(path, source, options, clock);
    } finally {
      if (staged) rmSync(staged, { recursive: true, force: true });
    }
  }

  private static async create(path: string, source: string | Uint8Array, options: RuntimeOptions, clock: OnnxClock): Promise<OnnxModel> {
    const providers = options.providers?.length ? options.providers : (['cpu'] as ExecutionProvider[]);
    const warn = options.warn ?? ((m: string) => console.warn(m));
    const failures: string[] = [];
    for (let i = 0; i < providers.length; i++) {
      const provider = providers[i];
      try {
        const session = await ort.InferenceSession.create(source as Uint8Array, {
          executionProviders: [provider],
          graphOptimizationLevel: 'all',
          enableCpuMemArena: options.memoryArena ?? false,
          // the CPUs this process may use, not onnxruntime's guess of physical cores (1 on a 2-vCPU machine)
          intraOpNumThreads: options.threads ?? availableCpus(),
          interOpNumThreads: 1,
          // Spinning intra-op threads win on an idle machine but lose badly when the cores are shared
          // (API, Redis and the worker on one box): measured 200 ms vs 230 ms per tiny-sd image here.
          extra: { session: { intra_op: { allow_spinning: options.spinning ? '1' : '0' } } },
        });
        if (failures.length) warn(`execution provider fallback for ${path}: using ${provider} (${failures.join('; ')})`);
        return new OnnxModel(session, path, provider, clock);
      } catch (err) {
        const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
        if (/protobuf|parse|invalid model|load model/i.test(reason) && !/provider|execution/i.test(reason)) {
          throw new PipelineError('invalid_model', `malformed ONNX graph ${path}: ${reason}`);
        }
        failures.push(`${provider} unavailable: ${reason}`);
        const last = i === providers.length - 1;
        if (!options.fallback || last) {
          throw new PipelineError(
            'provider_unavailable',
            `execution provider ${provider} could not load ${path}: ${reason}` +
              (options.fallback ? '' : ' (set fallback to try the next provider)'),
          );
        }
      }
    }
    throw new PipelineError('provider_unavailable', `no execution provider could load ${path}`);
  }

  input(name: string): IoInfo | undefined {
    return this.inputs.find((i) => i.name === name);
  }

  output(name: string): IoInfo | undefined {
    return this.outputs.find((o) => o.name === name);
  }

  /** Runs the graph; inputs are converted to the dtypes the graph declares. */
  async run(feeds: Record<string, FeedValue>, outputNames?: string[]): Promise<Record<string, HostTensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, value] of Object.entries(feeds)) {
      const info = this.input(name);
      if (!info) throw new Error(`${this.path} has no input named ${name}`);
      ortFeeds[name] = toOrtTensor(value, info.type);
    }
    const started = performance.now();
    const results = outputNames ? await this.session.run(ortFeeds, outputNames) : await this.session.run(ortFeeds);
    this.clock.ms += performance.now() - started;
    const out: Record<string, HostTensor> = {};
    for (const [name, tensor] of Object.entries(results)) out[name] = fromOrtTensor(tensor as ort.Tensor);
    return out;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** A hard link to a file, or a copy (a clone where the file system can) when it is on another file system. */
function linkOrCopy(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to, constants.COPYFILE_FICLONE);
  }
}
