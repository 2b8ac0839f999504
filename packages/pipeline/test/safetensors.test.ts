/**
 * The safetensors reader: the adapter fixtures (kohya and PEFT LoRAs, A1111 and diffusers embeddings,
 * from ../shared/models/adapters) read as their headers say, and every kind of hostile or broken file
 * refused with a reason, never an out-of-range read.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adapterFileProblem, parseSafetensors, readSafetensorsFile, SafetensorsError, tensorToFloat32 } from '../src/safetensors';

const ADAPTERS = join(import.meta.dirname, 'fixtures/adapters');

/** A safetensors buffer from a header object and raw data. */
function build(header: unknown, data: Uint8Array = new Uint8Array(0), headerText = JSON.stringify(header)): Uint8Array {
  const text = new TextEncoder().encode(headerText);
  const buf = new Uint8Array(8 + text.length + data.length);
  new DataView(buf.buffer).setBigUint64(0, BigInt(text.length), true);
  buf.set(text, 8);
  buf.set(data, 8 + text.length);
  return buf;
}

describe('safetensors', () => {
  it('reads a kohya LoRA (fp16), a PEFT LoRA (fp32) and both embedding forms as their headers say', () => {
    const kohya = readSafetensorsFile(join(ADAPTERS, 'green-objects.safetensors'));
    const down = kohya.tensors.get('lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight')!;
    expect(down).toMatchObject({ dtype: 'F16', shape: [4, 128] });
    expect(tensorToFloat32(down)).toHaveLength(512);
    expect(tensorToFloat32(kohya.tensors.get('lora_te_text_model_encoder_layers_0_mlp_fc1.alpha')!)[0]).toBe(2);
    const peft = readSafetensorsFile(join(ADAPTERS, 'green-objects-peft.safetensors'));
    expect(peft.tensors.get('text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_B.weight')).toMatchObject({ dtype: 'F32', shape: [512, 4] });
    // the same LoRA: kohya's up @ down x alpha/rank is PEFT's B @ A (within fp16's rounding)
    const module = 'text_model.encoder.layers.0.mlp.fc1';
    const delta = (up: Float32Array, dn: Float32Array, rows: number, cols: number, rank: number, scale: number) => {
      const out = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) for (let k = 0; k < rank; k++) for (let c = 0; c < cols; c++) out[r * cols + c] += up[r * rank + k] * dn[k * cols + c] * scale;
      return out;
    };
    const fromKohya = delta(tensorToFloat32(kohya.tensors.get(`lora_te_${module.replaceAll('.', '_')}.lora_up.weight`)!), tensorToFloat32(down), 512, 128, 4, 2 / 4);
    const fromPeft = delta(tensorToFloat32(peft.tensors.get(`text_encoder.${module}.lora_B.weight`)!), tensorToFloat32(peft.tensors.get(`text_encoder.${module}.lora_A.weight`)!), 512, 128, 4, 1);
    const largest = Math.max(...fromPeft.map(Math.abs));
    expect(largest).toBeGreaterThan(0);
    expect(Math.max(...fromKohya.map((v, i) => Math.abs(v - fromPeft[i])))).toBeLessThan(largest * 5e-3);
    const a1111 = readSafetensorsFile(join(ADAPTERS, 'crimson.safetensors'));
    expect(a1111.tensors.get('emb_params')).toMatchObject({ dtype: 'F32', shape: [1, 128] });
    expect(a1111.metadata.sdq_fixture).toBe("the vector of 'red'");
    expect(Object.getPrototypeOf(a1111.metadata)).toBeNull();
    expect(readSafetensorsFile(join(ADAPTERS, 'crimson-diffusers.safetensors')).tensors.get('<crimson>')).toMatchObject({ shape: [128] });
  });

  it('converts bf16 and f16 to float32', () => {
    const bytes = new Uint8Array([0x80, 0x3f, 0x00, 0xc0]); // bf16 1, -2
    expect([...tensorToFloat32({ dtype: 'BF16', shape: [2], bytes })]).toEqual([1, -2]);
    expect([...tensorToFloat32({ dtype: 'F16', shape: [2], bytes: new Uint8Array([0x00, 0x3c, 0x00, 0xc0]) })]).toEqual([1, -2]);
    expect(() => tensorToFloat32({ dtype: 'I64', shape: [0], bytes: new Uint8Array(0) })).toThrow(/not a floating-point dtype/);
  });

  const entry = (over: object = {}) => ({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8], ...over } });
  it.each<[string, Uint8Array, RegExp]>([
    ['a file shorter than its length field', new Uint8Array(5), /too short/],
    ['a header longer than the file', (() => { const b = build(entry(), new Uint8Array(8)); new DataView(b.buffer).setBigUint64(0, 1n << 40n, true); return b; })(), /header says \d+ bytes, more than/],
    ['a truncated file (data cut off)', build(entry(), new Uint8Array(4)), /outside the 4 bytes of data/],
    ['a header that is not JSON', build(null, new Uint8Array(0), '{"w": '), /not JSON/],
    ['a header that is an array', build([1, 2]), /not a JSON object/],
    ['an unknown dtype', build(entry({ dtype: 'F8_E4M3X' }), new Uint8Array(8)), /unknown dtype "F8_E4M3X"/],
    ['a negative dimension', build(entry({ shape: [-2] }), new Uint8Array(8)), /shape must be/],
    ['a shape that does not match its bytes', build(entry({ shape: [3] }), new Uint8Array(8)), /needs 12 bytes, its offsets give 8/],
    ['offsets reversed', build(entry({ data_offsets: [8, 0] }), new Uint8Array(8)), /outside/],
    ['offsets past the end', build(entry({ data_offsets: [0, 2 ** 52] }), new Uint8Array(8)), /outside/],
    ['overlapping tensors', build({ ...entry(), v: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12)), /overlap/],
    ['metadata that is not strings', build({ __metadata__: { n: 1 } }), /__metadata__\.n is not a string/],
  ])('refuses %s', (_what, buf, reason) => {
    expect(() => parseSafetensors(buf, 'x.safetensors')).toThrow(SafetensorsError);
    expect(() => parseSafetensors(buf, 'x.safetensors')).toThrow(reason);
  });

  it('keeps a hostile tensor name as a name, never a prototype', () => {
    const file = parseSafetensors(build({ __proto__: null, constructor: { dtype: 'U8', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1), '{"__proto__": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}'));
    expect([...file.tensors.keys()]).toEqual(['__proto__']);
    expect(({} as { dtype?: unknown }).dtype).toBeUndefined();
  });

  it('opens only .safetensors: the pickle formats are refused by name, whatever they hold', () => {
    expect(adapterFileProblem('green.safetensors')).toBeUndefined();
    for (const name of ['x.pt', 'x.ckpt', 'x.bin', 'x.pth']) expect(adapterFileProblem(name)).toMatch(/pickle file \(it runs code when loaded\): only \.safetensors/);
    expect(adapterFileProblem('x.txt')).toMatch(/not a \.safetensors file/);
  });
});
