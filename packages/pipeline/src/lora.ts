/**
 * A LoRA file, read into one shape whatever its form: per module (the component it patches and the
 * module's path with `.` and `/` as `_`, the form kohya's keys use and an ONNX node name normalises to),
 * the two factors and the scale, so that the change to the module's weight is
 * `scale x up @ down` (up [out, rank], down [rank, in...]). Forms read:
 * - kohya / A1111: `lora_unet_<path>`, `lora_te_<path>` (`lora_te1_` / `lora_te2_` for SDXL's two
 *   encoders), with `.lora_down.weight`, `.lora_up.weight` and `.alpha` (default: the rank);
 * - diffusers / PEFT: `unet.<path>` / `text_encoder.<path>` / `text_encoder_2.<path>` with
 *   `.lora_A.weight` / `.lora_B.weight` (scale 1, or alpha when given), and the older `.lora.down.weight`
 *   / `.lora.up.weight` (and `attn1.processor.to_q_lora.down.weight`).
 * LoHa and LoKr are refused by name. Which graph node a module is, is the blender's business (it reads
 * the graphs); this file knows only the file.
 */
import { type SafetensorsFile, tensorToFloat32 } from './safetensors';

export type LoraComponent = 'unet' | 'text_encoder' | 'text_encoder_2';

export interface LoraModule {
  component: LoraComponent;
  /** The module path, `_`-separated (`down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`). */
  path: string;
  /** [rank, in] for a Linear, [rank, in, kh, kw] for a convolution. */
  down: { data: Float32Array; shape: number[] };
  /** [out, rank] (or [out, rank, 1, 1]). */
  up: { data: Float32Array; shape: number[] };
  rank: number;
  /** alpha / rank (kohya), or 1 (PEFT without alpha). */
  scale: number;
}

export class LoraFormatError extends Error {}

const KOHYA_PREFIXES: [string, LoraComponent][] = [
  ['lora_unet_', 'unet'],
  ['lora_te1_', 'text_encoder'],
  ['lora_te2_', 'text_encoder_2'],
  ['lora_te_', 'text_encoder'],
];
const DIFFUSERS_PREFIXES: [string, LoraComponent][] = [
  ['unet.', 'unet'],
  ['text_encoder_2.', 'text_encoder_2'],
  ['text_encoder.', 'text_encoder'],
];
/** Suffix -> which factor it is. */
const FACTORS: [string, 'down' | 'up' | 'alpha'][] = [
  ['.lora_down.weight', 'down'],
  ['.lora_up.weight', 'up'],
  ['.lora_A.weight', 'down'],
  ['.lora_B.weight', 'up'],
  ['.lora.down.weight', 'down'],
  ['.lora.up.weight', 'up'],
  ['_lora.down.weight', 'down'],
  ['_lora.up.weight', 'up'],
  ['.alpha', 'alpha'],
];

/** A module as a file's header lays it out: its keys and rank, checked; no tensor data read. */
export interface LoraModuleLayout {
  component: LoraComponent;
  path: string;
  down: string;
  up: string;
  alpha?: string;
  rank: number;
}

/**
 * The modules of a LoRA file from its tensor names and shapes alone (a listing reads only headers);
 * throws LoraFormatError naming what is not a LoRA sdq can apply.
 */
export function loraLayout(tensors: ReadonlyMap<string, { shape: number[] }>, name = 'LoRA'): LoraModuleLayout[] {
  const parts = new Map<string, { component: LoraComponent; path: string; down?: string; up?: string; alpha?: string }>();
  const unknown: string[] = [];
  for (const key of tensors.keys()) {
    if (/(hada_w[12]_[ab]|lokr_w[12])/.test(key)) throw new LoraFormatError(`${name}: it is a LyCORIS ${key.includes('hada') ? 'LoHa' : 'LoKr'} file (key ${key}); sdq applies LoRA (and LoCon) only`);
    const factor = FACTORS.find(([suffix]) => key.endsWith(suffix));
    const prefix = [...KOHYA_PREFIXES, ...DIFFUSERS_PREFIXES].find(([p]) => key.startsWith(p));
    if (!factor || !prefix) {
      unknown.push(key);
      continue;
    }
    const module = key.slice(prefix[0].length, key.length - factor[0].length);
    // diffusers' older processor naming (`attn1.processor.to_q_lora.down`) is the module `attn1.to_q`
    const path = module.replace(/\.processor\./g, '.').replace(/[./]/g, '_');
    const id = `${prefix[1]}:${path}`;
    const entry = parts.get(id) ?? { component: prefix[1], path };
    entry[factor[1]] = key;
    parts.set(id, entry);
  }
  if (parts.size === 0) throw new LoraFormatError(`${name}: no LoRA keys (lora_down / lora_up, lora_A / lora_B) in ${tensors.size} tensors${unknown.length ? `, e.g. ${unknown.slice(0, 3).join(', ')}` : ''}`);
  const layout: LoraModuleLayout[] = [];
  for (const { component, path, down, up, alpha } of parts.values()) {
    if (!down || !up) throw new LoraFormatError(`${name}: module ${path} has ${down ? 'no up' : 'no down'} factor`);
    const d = tensors.get(down)!.shape;
    const u = tensors.get(up)!.shape;
    const rank = d[0];
    if ((d.length !== 2 && d.length !== 4) || (u.length !== 2 && u.length !== 4) || u[1] !== rank || !rank) {
      throw new LoraFormatError(`${name}: module ${path}: down [${d.join(', ')}] and up [${u.join(', ')}] are not a rank-${rank} pair`);
    }
    if (u.length === 4 && (u[2] !== 1 || u[3] !== 1)) throw new LoraFormatError(`${name}: module ${path}: an up factor with a ${u[2]}x${u[3]} kernel is not LoRA or LoCon`);
    if (alpha && tensors.get(alpha)!.shape.reduce((n, x) => n * x, 1) !== 1) throw new LoraFormatError(`${name}: ${alpha} is not one number`);
    layout.push({ component, path, down, up, alpha, rank });
  }
  return layout;
}

/** The modules of a LoRA file with their factors; throws LoraFormatError naming what is not a LoRA sdq can apply. */
export function readLora(file: SafetensorsFile, name = 'LoRA'): LoraModule[] {
  return loraLayout(file.tensors, name).map(({ component, path, down, up, alpha, rank }) => {
    const d = file.tensors.get(down)!;
    const u = file.tensors.get(up)!;
    let scale = 1;
    if (alpha) {
      const value = tensorToFloat32(file.tensors.get(alpha)!, alpha);
      if (!Number.isFinite(value[0])) throw new LoraFormatError(`${name}: ${alpha} is not a finite number`);
      scale = value[0] / rank;
    }
    return { component, path, down: { data: tensorToFloat32(d, down), shape: d.shape }, up: { data: tensorToFloat32(u, up), shape: u.shape }, rank, scale };
  });
}
