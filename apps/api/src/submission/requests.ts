/**
 * What several dialects read from a request the same way: sizes (the global and the engine's limits,
 * and the engine's size nearest a shape), style presets, required files, and a webhook's fields.
 */
import type { EngineInfo, GenerationEngineInfo } from '@sdq/pipeline/engines';
import { checkEngineSize } from '@sdq/pipeline/engines';
import { LATENT_UPSCALE_MODES, PIXEL_UPSCALERS, upscalerKind } from '@sdq/pipeline/hires';
import { type GenerationParams, type LoraUse, ServiceError, STYLE_PRESETS } from '@sdq/contracts';
import type { Request } from 'express';
import type { AdapterCatalog } from '../adapters';
import type { PromptBlocklist } from '../moderation';
import type { JobWebhook } from '../jobs.service';
import type { CheckedImage } from '../uploads';

/** MAX_PIXELS for every engine, then the engine's own sizes: no request can size a worker out of memory. */
export function checkSize(width: number, height: number, maxPixels: number, engine: EngineInfo): void {
  if (width * height > maxPixels) {
    throw new ServiceError('invalid_pixel_count', `width x height: ${width}x${height} = ${width * height} pixels is over the maximum of ${maxPixels}`, { field: 'width' });
  }
  const problem = checkEngineSize(engine, width, height);
  if (problem) throw new ServiceError('invalid_height_or_width', `width x height: ${problem}`, { field: 'width' });
}

/**
 * A style preset's text added to the positive prompts, from the engine's own table (its manifest's
 * style_presets, else Stability's). An engine whose vocabulary lacks the words (the tiny models) has a
 * table of "" so a preset never turns its prompt into noise.
 */
export function applyStyle(engine: EngineInfo, prompts: { text: string; weight?: number }[], style?: string): { text: string; weight?: number }[] {
  if (!style) return prompts;
  const table: Readonly<Record<string, string>> = engine.manifest.style_presets ?? STYLE_PRESETS;
  const suffix = Object.hasOwn(table, style) ? table[style] : '';
  if (!suffix) return prompts;
  return prompts.map((p) => ((p.weight ?? 1) > 0 ? { ...p, text: `${p.text}, ${suffix}` } : p));
}

export function requireFile(image: CheckedImage | undefined, field: string): CheckedImage {
  if (!image) throw new ServiceError('bad_request', `${field}: is required`, { field: field });
  return image;
}

/**
 * A multipart `webhook_events_filter` as an array: repeated fields (`f=start&f=completed`, `f[]=...`), a
 * JSON array (`["start","completed"]`) or a comma list (`start,completed`). The schema checks the names.
 */
export function formEventsFilter(values: string[] | undefined): unknown {
  if (values === undefined) return undefined;
  return values.flatMap((value): unknown[] => {
    const text = value.trim();
    if (text.startsWith('[')) {
      try {
        const parsed: unknown = JSON.parse(text);
        return Array.isArray(parsed) ? parsed : [parsed];
      } catch {
        throw new ServiceError('invalid_webhook', 'webhook_events_filter: is neither a JSON array nor a comma-separated list of events', { field: 'webhook_events_filter' });
      }
    }
    return text.split(',').map((v) => v.trim()).filter(Boolean);
  });
}

export function webhookOf(body: { webhook?: string; webhook_events_filter?: string[] }): JobWebhook | undefined {
  if (body.webhook === undefined && body.webhook_events_filter === undefined) return undefined;
  return { url: body.webhook, events: body.webhook_events_filter ? [...new Set(body.webhook_events_filter)] : undefined };
}

/**
 * A generation's prompts made ready, the same in every dialect: `<lora:name:weight>` tags taken out,
 * the `loras` field added, each LoRA checked against LORA_DIR and the engine (400 invalid_lora before any
 * hold), the embeddings its prompts' words use recorded in the params the job carries; then every
 * positive prompt (and prompt_2, prompt_3) held against the operator's blocklist (400 content_moderated,
 * before any hold; the term is logged for the operator with the account, never said to the client).
 */
export function resolvePrompts(
  deps: { adapters: AdapterCatalog; blocklist: PromptBlocklist },
  req: Request,
  engine: GenerationEngineInfo,
  params: GenerationParams,
  requested?: LoraUse[],
  field = 'loras',
): GenerationParams {
  const use = deps.adapters.resolve(engine, params, requested, field);
  const texts = [...params.prompts.filter((p) => (p.weight ?? 1) > 0).map((p) => p.text), params.prompt2, params.prompt3];
  for (const text of texts) {
    const term = text === undefined ? undefined : deps.blocklist.match(text);
    if (term === undefined) continue;
    req.log.warn({ account_id: req.accountId, term }, 'prompt refused: it matches a term of PROMPT_BLOCKLIST_FILE');
    throw new ServiceError('content_moderated', 'this request was flagged by content moderation: a prompt uses a term this service does not allow');
  }
  if (use.loras.length) params.loras = use.loras;
  else delete params.loras;
  if (use.embeddings.length) params.embeddings = use.embeddings;
  else delete params.embeddings;
  return params;
}

/**
 * The engines by another service's model names: each name for the first generation engine of its family
 * (`{'stability-ai/sdxl': 'stable-diffusion-xl'}`), and every generation engine as `sdq/<engine id>`.
 */
export function enginesByName(engines: Map<string, EngineInfo>, familyNames: Readonly<Record<string, string>>): Map<string, GenerationEngineInfo> {
  const out = new Map<string, GenerationEngineInfo>();
  const generation = [...engines.values()].filter((e): e is GenerationEngineInfo => e.kind === 'generation' && e.family !== undefined);
  for (const [name, family] of Object.entries(familyNames)) {
    const engine = generation.find((e) => e.family === family);
    if (engine) out.set(name, engine);
  }
  for (const e of generation) out.set(`sdq/${e.id}`, e);
  return out;
}

/**
 * A data URI's bytes (`data:image/png;base64,...`, or percent-encoded), as JSON dialects take images;
 * undefined for a string that is not one. One over MAX_UPLOAD_BYTES is refused before it is decoded.
 */
export function dataUriBytes(value: string, field: string, maxBytes: number): Buffer | undefined {
  const m = /^data:([\w.+/-]*)(;[\w=.+-]+)*?(;base64)?,/i.exec(value.slice(0, 256));
  if (!m) return undefined;
  const data = value.slice(m[0].length);
  const bytes = m[3] ? Math.floor((data.length * 3) / 4) : data.length;
  if (bytes > maxBytes) throw new ServiceError('invalid_file_size', `${field}: about ${bytes} bytes once decoded, over the maximum of ${maxBytes} (MAX_UPLOAD_BYTES)`, { field });
  return m[3] ? Buffer.from(data, 'base64') : Buffer.from(decodeURIComponent(data), 'latin1');
}

/**
 * Hires fix's second pass, the same in every dialect that takes it: its target checked as any size
 * (MAX_PIXELS, the engine's sizes), its upscaler a latent mode, Lanczos, Nearest or an upscale engine
 * here; refused before any hold.
 */
export function hiresParams(
  engines: Map<string, EngineInfo>,
  engine: GenerationEngineInfo,
  maxPixels: number,
  spec: { width: number; height: number; upscaler: string; steps?: number; denoisingStrength: number; sampler?: string; prompts?: GenerationParams['prompts']; label?: Record<string, string | number> },
  field: string,
): NonNullable<GenerationParams['hires']> {
  checkSize(spec.width, spec.height, maxPixels, engine);
  const upscalers = [...engines.values()].filter((e) => e.kind === 'upscale').map((e) => e.id);
  if (upscalerKind(spec.upscaler) === 'engine' && !upscalers.includes(spec.upscaler)) {
    throw new ServiceError('bad_request', `${field}: ${JSON.stringify(spec.upscaler)} is not an upscaler here (${[...LATENT_UPSCALE_MODES, ...PIXEL_UPSCALERS, ...upscalers].join(', ')})`, { field });
  }
  return { ...spec };
}
