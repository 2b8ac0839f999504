/**
 * Textual-inversion embeddings in an ONNX text encoder: the token embedding table (the Gather of the
 * largest 2-D initializer) gets the embeddings' vectors as rows after its own, in a copy of the graph
 * for one request's set, and the tokenizer gives their trigger words ids that address those rows.
 *
 * The ids are negative (Gather counts them from the table's end): CLIP's exports pick the pooled output
 * at the highest input id (ArgMax, the end-of-text token being the vocabulary's last), so ids above the
 * vocabulary would move SDXL's pooled embedding onto the new word. Negative ids never win that ArgMax.
 */
import { readFileSync } from 'node:fs';
import type { Embedding } from './embedding';
import { float32ToFloat16Bits } from './fp16';
import { type InitializerBytes, ONNX_FLOAT, ONNX_FLOAT16, type OnnxGraph, readOnnxGraph, replaceInitializer, tokenTableOf } from './onnx-graph';
import { PipelineError } from './errors';
import { readExternal } from './lora-blend';

/** A graph's bytes as onnxruntime loads them from memory (lora-blend's result has this shape). */
export interface GraphBytes {
  model: Uint8Array;
  external: Map<string, Uint8Array>;
  externalFiles: string[];
}

export interface NamedEmbedding {
  /** The trigger word (the file stem). */
  name: string;
  embedding: Embedding;
}

/**
 * The graph at modelPath (or its blended bytes) with the embeddings' rows appended to its token table,
 * and each trigger word's ids (lower-cased word -> ids). `second`: SDXL's second encoder, which takes
 * an embedding's clip_g vectors.
 */
export function withEmbeddingRows(modelPath: string, source: GraphBytes | undefined, embeddings: NamedEmbedding[], second: boolean): { graph: GraphBytes; words: Map<string, number[]> } {
  const model = source?.model ?? new Uint8Array(readFileSync(modelPath));
  const graph: OnnxGraph = readOnnxGraph(model);
  const table = tokenTableOf(graph.nodes, (name) => graph.initializers.get(name)?.dims);
  if (!table) throw new PipelineError('invalid_embedding', `${modelPath}: no token embedding table (a Gather of a 2-D weight) to add embeddings to`);
  const init = graph.initializers.get(table.name)!;
  if (init.dataType !== ONNX_FLOAT && init.dataType !== ONNX_FLOAT16) throw new PipelineError('invalid_embedding', `${modelPath}: the token table is ONNX dtype ${init.dataType}; embeddings are added to float32 and float16 tables`);
  const [rows, dim] = table.dims;
  const vectors = embeddings.map(({ name, embedding }) => {
    const v = second ? embedding.vectors2 : embedding.vectors;
    if (!v) throw new PipelineError('invalid_embedding', `embedding ${name} has no vectors for the second text encoder (an SDXL embedding has clip_l and clip_g)`);
    if (v.dim !== dim) throw new PipelineError('invalid_embedding', `embedding ${name} is ${v.dim} wide; this text encoder's tokens are ${dim} (an embedding for another model family)`);
    return { name, v };
  });
  const added = vectors.reduce((n, { v }) => n + v.count, 0);
  const elementBytes = init.dataType === ONNX_FLOAT ? 4 : 2;
  const raw = new Uint8Array((rows + added) * dim * elementBytes);
  raw.set(tableBytes(modelPath, model, source, init.bytes, rows * dim * elementBytes));
  const words = new Map<string, number[]>();
  let at = rows;
  for (const { name, v } of vectors) {
    const bytes = init.dataType === ONNX_FLOAT ? new Uint8Array(Float32Array.from(v.data).buffer) : new Uint8Array(float32ToFloat16Bits(v.data).buffer);
    raw.set(bytes, at * dim * elementBytes);
    // row r of the new table as Gather's negative index: r - (rows + added)
    words.set(name.toLowerCase(), Array.from({ length: v.count }, (_, i) => at + i - (rows + added)));
    at += v.count;
  }
  const patched = replaceInitializer(model, graph, table.name, { dims: [rows + added, dim], dataType: init.dataType, raw });
  return { graph: { model: patched, external: source?.external ?? new Map(), externalFiles: source?.externalFiles ?? externalFilesOf(graph) }, words };
}

function externalFilesOf(graph: OnnxGraph): string[] {
  return [...new Set([...graph.initializers.values()].flatMap((i) => (i.bytes?.kind === 'external' ? [i.bytes.location] : [])))];
}

/** The table's bytes, inline in the model or in its external data file (already patched, or on disk). */
function tableBytes(modelPath: string, model: Uint8Array, source: GraphBytes | undefined, where: InitializerBytes | undefined, length: number): Uint8Array {
  if (!where) throw new PipelineError('invalid_embedding', `${modelPath}: the token table has no data`);
  let bytes: Uint8Array;
  if (where.kind === 'inline') bytes = model.subarray(where.offset, where.offset + where.length);
  else {
    const patched = source?.external.get(where.location);
    bytes = patched ? patched.subarray(where.offset, where.offset + (where.length ?? length)) : readExternal(modelPath, { name: 'the token table', dims: [], dataType: 0, bytes: where });
  }
  if (bytes.byteLength !== length) throw new PipelineError('invalid_model', `${modelPath}: the token table holds ${bytes.byteLength} bytes, its dims say ${length}`);
  return bytes;
}
