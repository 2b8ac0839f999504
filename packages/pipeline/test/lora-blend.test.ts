/**
 * LoRAs merged into tiny-sd's graphs as ../shared/models/tiny-sd has them (their nodes carry diffusers'
 * and transformers' module names; models/tiny-sd's older export has none): the
 * kohya and the PEFT form of the fixture LoRA at weight 0.8 give the reference numbers of
 * ../shared/models/adapters/reference.json for the text encoder and the UNet, weight 0 the base numbers,
 * and the files on disk are never changed. A LoRA of another model matches no node, and says so.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OnnxClock, OnnxModel } from '../src/backends/onnx';
import { blendLoras, modulePathOf } from '../src/lora-blend';
import { readLora } from '../src/lora';
import { externalTensor, readOnnxGraph, replaceInitializers } from '../src/onnx-graph';
import { readSafetensorsFile } from '../src/safetensors';
import { absSum, det, type Ref, sum } from './reference';

const ADAPTERS = join(import.meta.dirname, 'fixtures/adapters');
const ref = JSON.parse(readFileSync(join(ADAPTERS, 'reference.json'), 'utf8')) as Record<string, Record<string, Ref>>;
const base = JSON.parse(readFileSync('../shared/models/tiny-sd/reference.json', 'utf8')) as { input_ids: number[][] };
// tiny-sd with diffusers' node names (../shared/models/tiny-sd: the same numbers as models/tiny-sd)
const TEXT_ENCODER = '../shared/models/tiny-sd/text_encoder/model.onnx';
const UNET = '../shared/models/tiny-sd/unet/model.onnx';

/** Sums within 1e-4 of the absolute sum; the first values to 3 places (the kohya file keeps its factors in fp16). */
function close(data: Float32Array, dims: number[], r: Ref) {
  expect(dims).toEqual(r.shape);
  expect(Math.abs(sum(data) - r.sum) / r.abs_sum).toBeLessThan(1e-4);
  expect(Math.abs(absSum(data) - r.abs_sum) / r.abs_sum).toBeLessThan(1e-4);
  r.first.forEach((v, i) => expect(data[i]).toBeCloseTo(v, 3));
}

async function outputs(file: string, weight: number, unetPath = UNET) {
  const lora = { name: 'green-objects', weight, modules: readLora(readSafetensorsFile(join(ADAPTERS, file))) };
  const te = blendLoras(TEXT_ENCODER, 'text_encoder', [lora]);
  const unet = blendLoras(unetPath, 'unet', [lora]);
  const clock = new OnnxClock();
  const textEncoder = await OnnxModel.load(TEXT_ENCODER, {}, clock, te);
  const denoiser = await OnnxModel.load(unetPath, {}, clock, unet);
  try {
    const enc = await textEncoder.run({ input_ids: { data: base.input_ids.slice(0, 2).flat(), dims: [2, 77] } });
    const hidden = enc.last_hidden_state;
    const out = await denoiser.run({ sample: { data: det(2 * 4 * 16 * 16), dims: [2, 4, 16, 16] }, timestep: { data: [500], dims: [1] }, encoder_hidden_states: hidden });
    return { hidden, out: out.out_sample, applied: [te.applied.get('green-objects')!, unet.applied.get('green-objects')!], unet };
  } finally {
    await textEncoder.dispose();
    await denoiser.dispose();
  }
}

const unetKey = (w: string) => Object.keys(ref[w]).find((k) => k.startsWith('unet.out_sample'))!;

describe('LoRA merged into ONNX graphs', () => {
  it('names a node by its module path', () => {
    expect(modulePathOf('/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul')).toBe('down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q');
    expect(modulePathOf('/text_model/encoder/layers.0/mlp/fc1/MatMul')).toBe('text_model_encoder_layers_0_mlp_fc1');
    expect(modulePathOf('MatMul_12')).toBeUndefined();
  });

  it.each([['kohya (fp16)', 'green-objects.safetensors'], ['PEFT (fp32)', 'green-objects-peft.safetensors']])('%s at weight 0.8 gives the reference numbers, every module applied', async (_form, file) => {
    const before = readFileSync(UNET);
    const { hidden, out, applied } = await outputs(file, 0.8);
    close(hidden.data, hidden.dims, ref['weight 0.8']['text_encoder.last_hidden_state']);
    close(out.data, out.dims, ref['weight 0.8'][unetKey('weight 0.8')]);
    expect(applied).toEqual([{ matched: 18, unmatched: [] }, { matched: 70, unmatched: [] }]);
    expect(readFileSync(UNET).equals(before)).toBe(true);
  });

  it('at weight 0 gives the base numbers', async () => {
    const { hidden, out } = await outputs('green-objects.safetensors', 0);
    close(hidden.data, hidden.dims, ref['weight 0.0']['text_encoder.last_hidden_state']);
    close(out.data, out.dims, ref['weight 0.0'][unetKey('weight 0.0')]);
  });

  it('a UNet whose weights are in an external data file, as large exports keep them: the same numbers, only the changed weights held in memory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sdq-external-unet-'));
    try {
      const unetPath = externalize(UNET, dir);
      const dataBytes = statSync(join(dir, 'model.onnx_data')).size;
      const { hidden, out, applied, unet } = await outputs('green-objects.safetensors', 0.8, unetPath);
      close(hidden.data, hidden.dims, ref['weight 0.8']['text_encoder.last_hidden_state']);
      close(out.data, out.dims, ref['weight 0.8'][unetKey('weight 0.8')]);
      expect(applied[1]).toEqual({ matched: 70, unmatched: [] });
      // the data file on disk is read where the changed weights are, and loaded from disk for the rest
      expect(unet.externalFiles).toEqual(['model.onnx_data', 'sdq-adapter-weights.bin']);
      expect([...unet.external.keys()]).toEqual(['sdq-adapter-weights.bin']);
      expect(unet.external.get('sdq-adapter-weights.bin')!.byteLength).toBeLessThan(dataBytes);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a LoRA for another model matches no node, and says why per module', () => {
    const modules = readLora(readSafetensorsFile(join(ADAPTERS, 'green-objects.safetensors'))).map((m) => ({ ...m, path: m.path.replace('down_blocks_0', 'down_blocks_9') }));
    const unet = blendLoras(UNET, 'unet', [{ name: 'other', weight: 1, modules }]);
    const result = unet.applied.get('other')!;
    expect(result.matched).toBeLessThan(70);
    expect(result.unmatched[0]).toMatch(/^down_blocks_9_.*: no node of the graph is this module$/);
  });
});

/** A copy of a graph with its larger weights moved to `model.onnx_data` beside it, as exports over 2 GB are written. */
function externalize(src: string, dir: string): string {
  const bytes = readFileSync(src);
  const graph = readOnnxGraph(bytes);
  const parts: Uint8Array[] = [];
  const tensors = new Map<string, Uint8Array>();
  let offset = 0;
  for (const init of graph.initializers.values()) {
    if (init.bytes?.kind !== 'inline' || init.bytes.length < 1024) continue;
    const data = bytes.subarray(init.bytes.offset, init.bytes.offset + init.bytes.length);
    tensors.set(init.name, externalTensor(init.name, init.dims, init.dataType, 'model.onnx_data', offset, data.byteLength));
    parts.push(data);
    offset += data.byteLength;
  }
  writeFileSync(join(dir, 'model.onnx'), replaceInitializers(bytes, graph, tensors));
  writeFileSync(join(dir, 'model.onnx_data'), Buffer.concat(parts));
  return join(dir, 'model.onnx');
}
