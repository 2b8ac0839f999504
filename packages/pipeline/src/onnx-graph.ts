/**
 * What the LoRA blender needs of an ONNX model file, read from its protobuf without onnxruntime: each
 * node's name, operator and inputs, and each initializer's dims, dtype and where its bytes are (inside
 * the model buffer, or in an external data file). Only the fields named here are decoded; the rest are
 * skipped by their wire type. A malformed buffer is an error naming the offset, never a read past it.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export class OnnxGraphError extends Error {}

export interface GraphNode {
  name: string;
  opType: string;
  inputs: string[];
  outputs: string[];
  /** Integer attributes (Gemm's transB), by name. */
  ints: Map<string, number>;
}

export type InitializerBytes =
  /** raw_data or packed float_data: bytes [offset, offset + length) of the model buffer. */
  | { kind: 'inline'; offset: number; length: number }
  /** data_location EXTERNAL: `location` beside the model, from offset for length bytes. */
  | { kind: 'external'; location: string; offset: number; length: number | undefined };

export interface Initializer {
  name: string;
  dims: number[];
  /** ONNX TensorProto.DataType: 1 float, 10 float16, 16 bfloat16, ... */
  dataType: number;
  bytes: InitializerBytes | undefined;
  /** Where its TensorProto sits in the model buffer: the field's key, its bytes' start and end. */
  span?: Span;
}

export interface Span {
  keyStart: number;
  start: number;
  end: number;
}

export interface OnnxGraph {
  nodes: GraphNode[];
  initializers: Map<string, Initializer>;
  /** Where the GraphProto sits in the model buffer. */
  span: Span;
}

export const ONNX_FLOAT = 1;
export const ONNX_FLOAT16 = 10;
export const ONNX_BFLOAT16 = 16;

/** A protobuf reader over [start, end) of a buffer. */
class Reader {
  constructor(
    readonly buf: Uint8Array,
    public pos: number,
    readonly end: number,
  ) {}

  varint(): number {
    let result = 0;
    let shift = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new OnnxGraphError(`truncated varint at byte ${this.pos}`);
      const byte = this.buf[this.pos++];
      result += (byte & 0x7f) * shift;
      if (byte < 0x80) return result;
      shift *= 128;
    }
    throw new OnnxGraphError(`varint too long at byte ${this.pos}`);
  }

  /** The next field: its number, wire type, and for length-delimited ones the range. */
  field(): { no: number; wire: number; start: number; length: number; value: number } {
    const key = this.varint();
    const no = Math.floor(key / 8);
    const wire = key % 8;
    let start = this.pos;
    let length = 0;
    let value = 0;
    switch (wire) {
      case 0:
        value = this.varint();
        return { no, wire, start: this.pos, length: 0, value };
      case 1:
        length = 8;
        break;
      case 2:
        length = this.varint();
        start = this.pos;
        break;
      case 5:
        length = 4;
        break;
      default:
        throw new OnnxGraphError(`wire type ${wire} at byte ${this.pos} (not an ONNX model, or a corrupt one)`);
    }
    if (start + length > this.end) throw new OnnxGraphError(`field ${no} runs past its message at byte ${start}`);
    this.pos = start + length;
    return { no, wire, start, length, value };
  }

  string(start: number, length: number): string {
    return new TextDecoder().decode(this.buf.subarray(start, start + length));
  }

  sub(start: number, length: number): Reader {
    return new Reader(this.buf, start, start + length);
  }
}

/** Reads a model file's graph: nodes and initializers (subgraphs of If / Loop are not looked into). */
export function readOnnxGraph(buf: Uint8Array): OnnxGraph {
  const model = new Reader(buf, 0, buf.byteLength);
  const nodes: GraphNode[] = [];
  const initializers = new Map<string, Initializer>();
  let span: Span | undefined;
  while (model.pos < model.end) {
    const keyStart = model.pos;
    const f = model.field();
    if (f.no !== 7 || f.wire !== 2) continue;
    span = { keyStart, start: f.start, end: f.start + f.length };
    const graph = model.sub(f.start, f.length);
    while (graph.pos < graph.end) {
      const at = graph.pos;
      const g = graph.field();
      if (g.wire !== 2) continue;
      if (g.no === 1) nodes.push(readNode(graph.sub(g.start, g.length)));
      else if (g.no === 5) {
        const init = readTensor(graph.sub(g.start, g.length));
        init.span = { keyStart: at, start: g.start, end: g.start + g.length };
        initializers.set(init.name, init);
      }
    }
  }
  if (!span) throw new OnnxGraphError('no graph in the model (not an ONNX model file)');
  return { nodes, initializers, span };
}

function readNode(r: Reader): GraphNode {
  const node: GraphNode = { name: '', opType: '', inputs: [], outputs: [], ints: new Map() };
  while (r.pos < r.end) {
    const f = r.field();
    if (f.wire !== 2) continue;
    if (f.no === 1) node.inputs.push(r.string(f.start, f.length));
    else if (f.no === 2) node.outputs.push(r.string(f.start, f.length));
    else if (f.no === 3) node.name = r.string(f.start, f.length);
    else if (f.no === 4) node.opType = r.string(f.start, f.length);
    else if (f.no === 5) {
      const a = r.sub(f.start, f.length);
      let name = '';
      let int: number | undefined;
      while (a.pos < a.end) {
        const af = a.field();
        if (af.no === 1 && af.wire === 2) name = a.string(af.start, af.length);
        else if (af.no === 3 && af.wire === 0) int = af.value;
      }
      if (name && int !== undefined) node.ints.set(name, int);
    }
  }
  return node;
}

function readTensor(r: Reader): Initializer {
  const tensor: Initializer = { name: '', dims: [], dataType: 0, bytes: undefined };
  const external = new Map<string, string>();
  let externalLocation = false;
  while (r.pos < r.end) {
    const f = r.field();
    if (f.no === 1 && f.wire === 0) tensor.dims.push(f.value);
    else if (f.no === 1 && f.wire === 2) {
      const packed = r.sub(f.start, f.length);
      while (packed.pos < packed.end) tensor.dims.push(packed.varint());
    } else if (f.no === 2 && f.wire === 0) tensor.dataType = f.value;
    else if (f.no === 8 && f.wire === 2) tensor.name = r.string(f.start, f.length);
    else if ((f.no === 9 || f.no === 4) && f.wire === 2) tensor.bytes = { kind: 'inline', offset: f.start, length: f.length };
    else if (f.no === 13 && f.wire === 2) {
      const e = r.sub(f.start, f.length);
      let key = '';
      let value = '';
      while (e.pos < e.end) {
        const ef = e.field();
        if (ef.no === 1 && ef.wire === 2) key = e.string(ef.start, ef.length);
        else if (ef.no === 2 && ef.wire === 2) value = e.string(ef.start, ef.length);
      }
      external.set(key, value);
    } else if (f.no === 14 && f.wire === 0) externalLocation = f.value === 1;
  }
  if (externalLocation && external.has('location')) {
    const number = (v: string | undefined) => (v === undefined ? undefined : Number(v));
    tensor.bytes = { kind: 'external', location: external.get('location')!, offset: number(external.get('offset')) ?? 0, length: number(external.get('length')) };
  }
  return tensor;
}

/**
 * The model's bytes with one initializer replaced by an inline tensor of new dims and bytes (the token
 * embedding table with an embedding's rows added): the tensor's and the graph's length prefixes are
 * written again, everything else is copied as it was.
 */
export function replaceInitializer(model: Uint8Array, graph: OnnxGraph, name: string, tensor: { dims: number[]; dataType: number; raw: Uint8Array }): Uint8Array {
  return replaceInitializers(model, graph, new Map([[name, inlineTensor(name, tensor.dims, tensor.dataType, tensor.raw)]]));
}

/** A TensorProto holding its bytes (raw_data). */
export function inlineTensor(name: string, dims: number[], dataType: number, raw: Uint8Array): Uint8Array {
  return concat([...dims.flatMap((d) => [varint(1 * 8 + 0), varint(d)]), varint(2 * 8 + 0), varint(dataType), lengthDelimited(8, new TextEncoder().encode(name)), lengthDelimited(9, raw)]);
}

/** A TensorProto whose bytes are in an external data file: `location` from `offset` for `length` bytes. */
export function externalTensor(name: string, dims: number[], dataType: number, location: string, offset: number, length: number): Uint8Array {
  const entry = (key: string, value: string) => lengthDelimited(13, concat([lengthDelimited(1, new TextEncoder().encode(key)), lengthDelimited(2, new TextEncoder().encode(value))]));
  return concat([
    ...dims.flatMap((d) => [varint(1 * 8 + 0), varint(d)]),
    varint(2 * 8 + 0),
    varint(dataType),
    lengthDelimited(8, new TextEncoder().encode(name)),
    entry('location', location),
    entry('offset', String(offset)),
    entry('length', String(length)),
    varint(14 * 8 + 0),
    varint(1),
  ]);
}

/**
 * The model's bytes with initializers replaced by the given encoded TensorProtos: the graph's length
 * prefix is written again, everything else copied as it was.
 */
export function replaceInitializers(model: Uint8Array, graph: OnnxGraph, replacements: Map<string, Uint8Array>): Uint8Array {
  const spans = [...replacements].map(([name, encoded]) => {
    const span = graph.initializers.get(name)?.span;
    if (!span) throw new OnnxGraphError(`no initializer ${name} in the graph`);
    return { span, encoded };
  });
  spans.sort((a, b) => a.span.keyStart - b.span.keyStart);
  const g = graph.span;
  const parts: Uint8Array[] = [];
  let at = g.start;
  for (const { span, encoded } of spans) {
    parts.push(model.subarray(at, span.keyStart), lengthDelimited(5, encoded));
    at = span.end;
  }
  parts.push(model.subarray(at, g.end));
  return concat([model.subarray(0, g.keyStart), lengthDelimited(7, concat(parts)), model.subarray(g.end)]);
}

function varint(value: number): Uint8Array {
  const bytes: number[] = [];
  let v = value;
  while (v >= 0x80) {
    bytes.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  bytes.push(v);
  return Uint8Array.from(bytes);
}

function lengthDelimited(field: number, payload: Uint8Array): Uint8Array {
  return concat([varint(field * 8 + 2), varint(payload.byteLength), payload]);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** What can be known of a graph without its weights: the module paths of its weighted nodes, and its token table's size. */
export interface GraphLayout {
  /** Node names of MatMul / Gemm / Conv nodes (a LoRA module is one of them, by its path). */
  weightedNodes: string[];
  /** Rows and width of its token embedding table, for a text encoder. */
  tokenTable?: { rows: number; dim: number };
}

/**
 * A graph's layout read from its file in small reads: nodes are decoded, initializers only as far as
 * their name and dims, their bytes skipped. A 1.7 GB UNet is read in a few megabytes this way.
 */
export function readGraphLayout(path: string): GraphLayout {
  const fd = openSync(path, 'r');
  try {
    const file = new FileWindow(fd, fstatSync(fd).size);
    const nodes: GraphNode[] = [];
    const dims = new Map<string, number[]>();
    for (const f of file.fields(0, file.size)) {
      if (f.no !== 7 || f.wire !== 2) continue;
      for (const g of file.fields(f.start, f.start + f.length)) {
        if (g.wire !== 2) continue;
        if (g.no === 1) {
          const bytes = file.read(g.start, g.length);
          nodes.push(readNode(new Reader(bytes, 0, bytes.byteLength)));
        } else if (g.no === 5) {
          let name = '';
          const shape: number[] = [];
          for (const t of file.fields(g.start, g.start + g.length)) {
            if (t.no === 1 && t.wire === 0) shape.push(t.value);
            else if (t.no === 1 && t.wire === 2) {
              const packed = file.read(t.start, t.length);
              const r = new Reader(packed, 0, packed.byteLength);
              while (r.pos < r.end) shape.push(r.varint());
            } else if (t.no === 8 && t.wire === 2) name = new TextDecoder().decode(file.read(t.start, t.length));
          }
          dims.set(name, shape);
        }
      }
    }
    const weightedNodes = nodes.filter((n) => n.opType === 'MatMul' || n.opType === 'Gemm' || n.opType === 'Conv').map((n) => n.name);
    const table = tokenTableOf(nodes, (name) => dims.get(name));
    return { weightedNodes, ...(table ? { tokenTable: { rows: table.dims[0], dim: table.dims[1] } } : {}) };
  } finally {
    closeSync(fd);
  }
}

/**
 * A text encoder's token embedding: the Gather whose table is the largest 2-D initializer gathered
 * (the position table is gathered too, and is far smaller than any vocabulary).
 */
export function tokenTableOf(nodes: GraphNode[], dimsOf: (name: string) => number[] | undefined): { node: GraphNode; name: string; dims: number[] } | undefined {
  const source = castSources(nodes);
  let best: { node: GraphNode; name: string; dims: number[] } | undefined;
  for (const node of nodes) {
    if (node.opType !== 'Gather') continue;
    const name = source(node.inputs[0]);
    const dims = dimsOf(name);
    if (dims?.length === 2 && (!best || dims[0] > best.dims[0])) best = { node, name, dims };
  }
  return best;
}

/**
 * The tensor a name comes from through Cast nodes: float16 exports made by converting a float32 graph
 * keep each weight as a float16 initializer cast back to float32 (`w_fp16 -> Cast -> w`).
 */
export function castSources(nodes: GraphNode[]): (name: string) => string {
  const castFrom = new Map<string, string>();
  for (const node of nodes) if (node.opType === 'Cast' && node.inputs.length === 1 && node.outputs.length === 1) castFrom.set(node.outputs[0], node.inputs[0]);
  return (name) => {
    let at = name;
    for (let hops = 0; hops < 4 && castFrom.has(at); hops++) at = castFrom.get(at)!;
    return at;
  };
}

/** Positional reads of a protobuf file through a 64 KiB window. */
class FileWindow {
  private buf = new Uint8Array(0);
  private at = 0;

  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {}

  read(start: number, length: number): Uint8Array {
    if (start + length > this.size) throw new OnnxGraphError(`field at byte ${start} runs past the end of the file`);
    if (start >= this.at && start + length <= this.at + this.buf.byteLength) return this.buf.subarray(start - this.at, start - this.at + length);
    const size = Math.max(length, 65536);
    const buf = new Uint8Array(Math.min(size, this.size - start));
    readSync(this.fd, buf, 0, buf.byteLength, start);
    this.buf = buf;
    this.at = start;
    return buf.subarray(0, length);
  }

  *fields(start: number, end: number): Generator<{ no: number; wire: number; start: number; length: number; value: number }> {
    let pos = start;
    while (pos < end) {
      const head = this.read(pos, Math.min(24, end - pos));
      const r = new Reader(head, 0, head.byteLength);
      const key = r.varint();
      const wire = key % 8;
      const no = Math.floor(key / 8);
      let length = 0;
      let value = 0;
      if (wire === 0) value = r.varint();
      else if (wire === 2) length = r.varint();
      else if (wire === 1) length = 8;
      else if (wire === 5) length = 4;
      else throw new OnnxGraphError(`wire type ${wire} at byte ${pos} (not an ONNX model, or a corrupt one)`);
      const fieldStart = pos + r.pos;
      if (fieldStart + length > end) throw new OnnxGraphError(`field ${no} runs past its message at byte ${fieldStart}`);
      pos = fieldStart + length;
      yield { no, wire, start: fieldStart, length, value };
    }
  }
}
