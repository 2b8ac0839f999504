/** A safetensors buffer of float32 tensors with the given shapes (zeros), for tests of what reads them. */
export function f32File(tensors: Record<string, number[]>): Uint8Array {
  let offset = 0;
  const header: Record<string, unknown> = {};
  for (const [key, shape] of Object.entries(tensors)) {
    const bytes = shape.reduce((n, d) => n * d, 1) * 4;
    header[key] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const text = new TextEncoder().encode(JSON.stringify(header));
  const buf = new Uint8Array(8 + text.length + offset);
  new DataView(buf.buffer).setBigUint64(0, BigInt(text.length), true);
  buf.set(text, 8);
  return buf;
}
