/**
 * LoRA files read into one shape: the kohya fixture (fp16, alpha 2 of rank 4) and the PEFT fixture (fp32)
 * are the same 88 modules with the same change to each weight; LyCORIS and broken pairs are refused.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoraFormatError, type LoraModule, readLora } from '../src/lora';
import { parseSafetensors, readSafetensorsFile } from '../src/safetensors';
import { f32File } from './safetensors-file';

const ADAPTERS = join(import.meta.dirname, 'fixtures/adapters');

/** scale x up @ down, [out, in] (a Linear's change). */
function delta(m: LoraModule): Float32Array {
  const out = m.up.shape[0];
  const cols = m.down.data.length / m.rank;
  const result = new Float32Array(out * cols);
  for (let r = 0; r < out; r++) for (let k = 0; k < m.rank; k++) for (let c = 0; c < cols; c++) result[r * cols + c] += m.scale * m.up.data[r * m.rank + k] * m.down.data[k * cols + c];
  return result;
}


describe('LoRA files', () => {
  it('reads the kohya and the PEFT form of one LoRA as the same modules and the same changes', () => {
    const kohya = readLora(readSafetensorsFile(join(ADAPTERS, 'green-objects.safetensors')));
    const peft = readLora(readSafetensorsFile(join(ADAPTERS, 'green-objects-peft.safetensors')));
    expect(kohya).toHaveLength(88);
    expect(kohya.filter((m) => m.component === 'unet')).toHaveLength(70);
    expect(kohya.filter((m) => m.component === 'text_encoder')).toHaveLength(18);
    expect(kohya.every((m) => m.rank === 4 && m.scale === 0.5)).toBe(true);
    expect(peft.every((m) => m.scale === 1)).toBe(true);
    const key = (m: LoraModule) => `${m.component}:${m.path}`;
    expect(peft.map(key).sort()).toEqual(kohya.map(key).sort());
    expect(kohya.map(key)).toContain('unet:down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q');
    expect(kohya.map(key)).toContain('text_encoder:text_model_encoder_layers_0_mlp_fc1');
    const byKey = new Map(peft.map((m) => [key(m), m]));
    for (const m of kohya) {
      const a = delta(m);
      const b = delta(byKey.get(key(m))!);
      const largest = Math.max(...b.map(Math.abs));
      expect(Math.max(...a.map((v, i) => Math.abs(v - b[i]))), key(m)).toBeLessThanOrEqual(largest * 5e-3);
    }
  });

  it('reads SDXL text encoder prefixes, the older diffusers form and a LoCon convolution', () => {
    const modules = readLora(
      parseSafetensors(
        f32File({
          'lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': [2, 8],
          'lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight': [8, 2],
          'lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': [2, 8],
          'lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight': [8, 2],
          'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight': [2, 8],
          'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.up.weight': [8, 2],
          'lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight': [2, 4, 3, 3],
          'lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight': [4, 2, 1, 1],
        }),
      ),
    );
    expect(modules.map((m) => `${m.component}:${m.path}`).sort()).toEqual([
      'text_encoder:text_model_encoder_layers_0_self_attn_q_proj',
      'text_encoder_2:text_model_encoder_layers_0_self_attn_q_proj',
      'unet:down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q',
      'unet:down_blocks_0_resnets_0_conv1',
    ]);
    // no alpha: the change is up @ down as it is
    expect(modules.every((m) => m.scale === 1)).toBe(true);
  });

  it.each<[string, Record<string, number[]>, RegExp]>([
    ['a LoHa', { 'lora_unet_x.hada_w1_a': [2, 2] }, /LyCORIS LoHa .* sdq applies LoRA \(and LoCon\) only/],
    ['a LoKr', { 'lora_unet_x.lokr_w1': [2, 2] }, /LyCORIS LoKr/],
    ['an embedding', { emb_params: [1, 128] }, /no LoRA keys .* e\.g\. emb_params/],
    ['a module without its up factor', { 'lora_unet_x.lora_down.weight': [2, 8] }, /module x has no up factor/],
    ['factors that are not a pair', { 'lora_unet_x.lora_down.weight': [2, 8], 'lora_unet_x.lora_up.weight': [8, 3] }, /are not a rank-2 pair/],
  ])('refuses %s', (_what, tensors, reason) => {
    expect(() => readLora(parseSafetensors(f32File(tensors)), 'f.safetensors')).toThrow(LoraFormatError);
    expect(() => readLora(parseSafetensors(f32File(tensors)), 'f.safetensors')).toThrow(reason);
  });
});
