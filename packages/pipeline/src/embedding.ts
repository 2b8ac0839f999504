/**
 * A textual-inversion embedding, read into one shape whatever its form: the vectors its trigger word
 * stands for, per text encoder. A1111's convention names the word: the file stem. Forms read:
 * - A1111: `emb_params` [n, dim] (or one other single tensor, the `string_to_param` style);
 * - diffusers: `{"<token>": [dim]}` or [n, dim];
 * - SDXL: `clip_l` [n, 768] and `clip_g` [n, 1280] (the first and the second text encoder).
 */
import { type SafetensorsFile, tensorToFloat32 } from './safetensors';

export class EmbeddingFormatError extends Error {}

export interface Embedding {
  /** The vectors for the first text encoder ([n, dim] as n rows), and for SDXL's second when the file has them. */
  vectors: { data: Float32Array; count: number; dim: number };
  vectors2?: { data: Float32Array; count: number; dim: number };
}

/** At most this many vectors per word (A1111's files have 1 to 75). */
const MAX_VECTORS = 75;

export function readEmbedding(file: SafetensorsFile, name = 'embedding'): Embedding {
  const rows = (key: string) => {
    const entry = file.tensors.get(key)!;
    if (entry.shape.length !== 1 && entry.shape.length !== 2) throw new EmbeddingFormatError(`${name}: ${key} is [${entry.shape.join(', ')}], not [dim] or [vectors, dim]`);
    const [count, dim] = entry.shape.length === 1 ? [1, entry.shape[0]] : entry.shape;
    if (count < 1 || count > MAX_VECTORS || dim < 1) throw new EmbeddingFormatError(`${name}: ${key} has ${count} vectors of ${dim} (1 to ${MAX_VECTORS} vectors, each at least 1 wide)`);
    return { data: tensorToFloat32(entry, key), count, dim };
  };
  if (file.tensors.has('clip_l') || file.tensors.has('clip_g')) {
    if (!file.tensors.has('clip_l') || !file.tensors.has('clip_g')) throw new EmbeddingFormatError(`${name}: an SDXL embedding needs both clip_l and clip_g`);
    const first = rows('clip_l');
    const second = rows('clip_g');
    if (first.count !== second.count) throw new EmbeddingFormatError(`${name}: clip_l has ${first.count} vectors, clip_g ${second.count}`);
    return { vectors: first, vectors2: second };
  }
  if (file.tensors.has('emb_params')) return { vectors: rows('emb_params') };
  if (file.tensors.size === 1) return { vectors: rows([...file.tensors.keys()][0]) };
  throw new EmbeddingFormatError(`${name}: not an embedding (expected emb_params, one tensor, or clip_l and clip_g; found ${[...file.tensors.keys()].slice(0, 4).join(', ')}${file.tensors.size > 4 ? ', ...' : ''})`);
}
