/**
 * What the LoRA blender needs of an ONNX model file, read from its protobuf without onnxruntime: each
 * node's name, operator and inputs, and each initializer's dims, dtype and where its bytes are (inside
 * the model buffer, or in an external data file). Only the fields named here are decoded; the rest are
 * skipped by their wire type. A malformed buffer is an error naming the offset, never a read past it.
 */

export class OnnxGraphError extends Error {}

export interface GraphNode {
  name: string;
  opType: string;
  inputs: string[];
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
}

export interface OnnxGraph {
  nodes: GraphNode[];
  initializers: Map<string, Initializer>;
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
  let sawGraph = false;
  while (model.pos < model.end) {
    const f = model.field();
    if (f.no !== 7 || f.wire !== 2) continue;
    sawGraph = true;
    const graph = model.sub(f.start, f.length);
    while (graph.pos < graph.end) {
      const g = graph.field();
      if (g.wire !== 2) continue;
      if (g.no === 1) nodes.push(readNode(graph.sub(g.start, g.length)));
      else if (g.no === 5) {
        const init = readTensor(graph.sub(g.start, g.length));
        initializers.set(init.name, init);
      }
    }
  }
  if (!sawGraph) throw new OnnxGraphError('no graph in the model (not an ONNX model file)');
  return { nodes, initializers };
}

function readNode(r: Reader): GraphNode {
  const node: GraphNode = { name: '', opType: '', inputs: [], ints: new Map() };
  while (r.pos < r.end) {
    const f = r.field();
    if (f.wire !== 2) continue;
    if (f.no === 1) node.inputs.push(r.string(f.start, f.length));
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
