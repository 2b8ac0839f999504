/**
 * LoRAs merged into an ONNX graph's weights, in memory. An export keeps no module names on its weights,
 * but its nodes are named after the module path (`/down_blocks.0/attentions.0/transformer_blocks.0/
 * attn1/to_q/MatMul`); a LoRA module (`down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`) is
 * the node whose path, `/` and `.` read as `_`, it names, and its weight is that node's initializer
 * input. The change `weight x scale x up @ down` is added in float32 and stored back in the graph's dtype
 * (MatMul keeps its weight transposed, [in, out]; Gemm says by transB; Conv is [out, in, kh, kw]).
 * Everything is read from the graph: no table of names here. The file on disk is never changed: the
 * result is a copy of the model's bytes (and of any external data file patched), for onnxruntime to load.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { float16BitsToFloat32, float32ToFloat16Bits } from './fp16';
import type { LoraComponent, LoraModule } from './lora';
import { castSources, externalTensor, type GraphNode, type Initializer, ONNX_FLOAT, ONNX_FLOAT16, readOnnxGraph, replaceInitializers } from './onnx-graph';

export interface LoraApplication {
  name: string;
  weight: number;
  modules: LoraModule[];
}

export interface BlendedGraph {
  /** The model's bytes with the changes (the original's when nothing matched). */
  model: Uint8Array;
  /** External data files patched, by their location (as the model names them). */
  external: Map<string, Uint8Array>;
  /** Every external data file the model names (patched or not), as paths beside it. */
  externalFiles: string[];
  /** Per LoRA: modules of this component applied, and those no node took (with why). */
  applied: Map<string, { matched: number; unmatched: string[] }>;
}

const WEIGHTED_OPS = new Set(['MatMul', 'Gemm', 'Conv']);
/** The in-memory data file of a blended graph's changed external weights (a name no export uses). */
const CHANGED_DATA = 'sdq-adapter-weights.bin';

/** One external initializer's bytes, read by position from its data file beside the model. */
export function readExternal(modelPath: string, init: Initializer): Uint8Array {
  const where = init.bytes;
  if (where?.kind !== 'external') throw new Error(`${modelPath}: ${init.name} is not stored outside the model`);
  // a location is a file name beside the model: never a path out of its folder
  if (/[/\\]|^\.\.?$/.test(where.location)) throw new Error(`${modelPath}: external data location ${where.location} is not a file beside the model`);
  const path = join(dirname(modelPath), where.location);
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const length = where.length ?? size - where.offset;
    if (where.offset + length > size) throw new Error(`${modelPath}: ${init.name}'s external bytes run past ${where.location}`);
    const bytes = new Uint8Array(length);
    for (let done = 0; done < length; ) {
      const n = readSync(fd, bytes, done, Math.min(length - done, 1 << 30), where.offset + done);
      if (n === 0) throw new Error(`${modelPath}: ${where.location} ended early`);
      done += n;
    }
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/** The module path a node's name says, `_`-separated: `/a/b.0/c/MatMul` -> `a_b_0_c`. */
export function modulePathOf(nodeName: string): string | undefined {
  const at = nodeName.lastIndexOf('/');
  if (at <= 0) return undefined;
  return nodeName.slice(0, at).replace(/^\//, '').replace(/[/.]/g, '_');
}

/** Merges the LoRAs' modules for one component into the graph at modelPath. */
export function blendLoras(modelPath: string, component: LoraComponent, loras: LoraApplication[]): BlendedGraph {
  const original = readFileSync(modelPath);
  const graph = readOnnxGraph(original);
  // a float16 graph converted from float32 casts each weight: the LoRA changes the float16 initializer
  const source = castSources(graph.nodes);
  const byModule = new Map<string, GraphNode[]>();
  for (const node of graph.nodes) {
    if (!WEIGHTED_OPS.has(node.opType)) continue;
    const path = modulePathOf(node.name);
    if (path) byModule.set(path, [...(byModule.get(path) ?? []), node]);
  }
  let model: Uint8Array | undefined;
  // external weights a LoRA changes are read alone (a UNet's data file may be larger than a read can be)
  // and written to one data file of their own, kept in memory; the rest stay in the files on disk
  const changed = new Map<string, { init: Initializer; bytes: Uint8Array }>();
  const applied = new Map<string, { matched: number; unmatched: string[] }>();
  const bytesOf = (init: Initializer): Uint8Array => {
    const where = init.bytes!;
    if (where.kind === 'inline') {
      model ??= Uint8Array.from(original);
      return model.subarray(where.offset, where.offset + where.length);
    }
    const known = changed.get(init.name);
    if (known) return known.bytes;
    const bytes = readExternal(modelPath, init);
    changed.set(init.name, { init, bytes });
    return bytes;
  };
  for (const lora of loras) {
    const result = { matched: 0, unmatched: [] as string[] };
    applied.set(lora.name, result);
    for (const module of lora.modules) {
      if (module.component !== component) continue;
      const why = applyModule(module, lora.weight, byModule.get(module.path) ?? [], (name) => graph.initializers.get(source(name)), bytesOf);
      if (why) result.unmatched.push(`${module.path}: ${why}`);
      else result.matched++;
    }
  }
  const externalFiles = [...new Set([...graph.initializers.values()].flatMap((i) => (i.bytes?.kind === 'external' ? [i.bytes.location] : [])))];
  const external = new Map<string, Uint8Array>();
  if (changed.size) {
    // the changed weights, 64-byte aligned, in a data file no export names; their TensorProtos point there
    let size = 0;
    const placed = [...changed.values()].map((c) => {
      const offset = size;
      size += Math.ceil(c.bytes.byteLength / 64) * 64;
      return { ...c, offset };
    });
    const data = new Uint8Array(size);
    for (const p of placed) data.set(p.bytes, p.offset);
    const tensors = new Map(placed.map((p) => [p.init.name, externalTensor(p.init.name, p.init.dims, p.init.dataType, CHANGED_DATA, p.offset, p.bytes.byteLength)]));
    model = replaceInitializers(model ?? original, graph, tensors);
    external.set(CHANGED_DATA, data);
    externalFiles.push(CHANGED_DATA);
  }
  return { model: model ?? original, external, externalFiles, applied };
}

/** Adds one module's change to its node's weight; the reason when it cannot. */
function applyModule(module: LoraModule, weight: number, nodes: GraphNode[], initializerOf: (name: string) => Initializer | undefined, bytesOf: (init: Initializer) => Uint8Array): string | undefined {
  if (!nodes.length) return 'no node of the graph is this module';
  const out = module.up.shape[0];
  const cols = module.down.data.length / module.rank;
  for (const node of nodes) {
    const init = node.inputs.map(initializerOf).find((i) => i && i.bytes && (i.dataType === ONNX_FLOAT || i.dataType === ONNX_FLOAT16) && (i.dims.length === 2 || i.dims.length === 4));
    if (!init) continue;
    const elements = init.dims.reduce((n, d) => n * d, 1);
    if (elements !== out * cols) return `the LoRA changes ${out}x${cols} values, the node's weight has ${init.dims.join('x')} (a LoRA for another model)`;
    // where element (o, c) of the change goes in the stored weight
    let index: (o: number, c: number) => number;
    if (node.opType === 'MatMul' || (node.opType === 'Gemm' && !node.ints.get('transB'))) {
      if (init.dims[0] !== cols || init.dims[1] !== out) return `the weight is ${init.dims.join('x')}, the LoRA ${cols}x${out}`;
      index = (o, c) => c * out + o;
    } else {
      if (init.dims[0] !== out) return `the weight is ${init.dims.join('x')}, the LoRA's output ${out}`;
      index = (o, c) => o * cols + c;
    }
    const stored = bytesOf(init);
    const values = init.dataType === ONNX_FLOAT ? new Float32Array(stored.slice().buffer) : float16BitsToFloat32(new Uint16Array(stored.slice().buffer));
    const factor = weight * module.scale;
    const row = new Float32Array(cols);
    for (let o = 0; o < out; o++) {
      row.fill(0);
      for (let k = 0; k < module.rank; k++) {
        const u = module.up.data[o * module.rank + k] * factor;
        if (u === 0) continue;
        const d = k * cols;
        for (let c = 0; c < cols; c++) row[c] += u * module.down.data[d + c];
      }
      for (let c = 0; c < cols; c++) values[index(o, c)] += row[c];
    }
    stored.set(new Uint8Array(init.dataType === ONNX_FLOAT ? values.buffer : float32ToFloat16Bits(values).buffer));
    return undefined;
  }
  return 'the node has no float weight among its inputs';
}
