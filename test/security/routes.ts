/**
 * The fuzz suite's list of routes: every route the API serves, with what a valid request looks like.
 * fuzz.test.ts checks that this list, the OpenAPI document and the routes Express has registered are the
 * same set, so a new route cannot land without joining the fuzz suite and the document.
 *
 * Adding a route: add its entry here (method, OpenAPI path, who may call it, its body and a valid
 * sample); the fuzzer derives the malformed variants itself.
 */
import type { Express } from 'express';
import { replicateVersionOf, V2BETA_UNSUPPORTED } from '@sdq/contracts';

export type Caller = 'key' | 'admin' | 'none';

/** The ids a sample can name; the fuzz test fills them in once the accounts and a job exist. */
export interface FuzzIds {
  engine: string;
  upscaler: string;
  job: string;
  account: string;
  key: string;
  artifact: string;
}

export interface FuzzRoute {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** The OpenAPI path template. */
  path: string;
  caller: Caller;
  /** Valid values of the path parameters. */
  params?: (ids: FuzzIds) => Record<string, string>;
  /** A valid query string's parameters. */
  query?: Record<string, string>;
  /** A valid JSON body. */
  json?: () => Record<string, unknown>;
  /** A valid multipart body: text fields and which image fields carry a file. */
  multipart?: { fields: () => [string, string][]; files: readonly string[] };
  /** Creates a job (so accepted requests are counted against holds). */
  creates?: boolean;
}

/** A 64x64 red PNG, as A1111 clients send images: base64 in the JSON. */
const RED_PNG_64 = 'iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAAT0lEQVR42u3PQQkAAAgEsAtx/fMYywi+hcEKLNO+FgEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQGBK7CmQADiM6FBWwAAAABJRU5ErkJggg==';

const prompts = (): [string, string][] => [
  ['text_prompts[0][text]', 'a red circle'],
  ['text_prompts[0][weight]', '1'],
];

export const FUZZ_ROUTES: FuzzRoute[] = [
  { method: 'GET', path: '/healthz', caller: 'none' },
  { method: 'GET', path: '/readyz', caller: 'none' },
  { method: 'GET', path: '/openapi.json', caller: 'none' },
  { method: 'GET', path: '/metrics', caller: 'none' },
  { method: 'GET', path: '/v1/artifacts/{key}', caller: 'none', params: (ids) => ({ key: ids.artifact }), query: { expires: '4102444800', signature: '0'.repeat(64) } },
  { method: 'GET', path: '/v1/engines/list', caller: 'key' },
  { method: 'GET', path: '/v1/loras', caller: 'key' },
  { method: 'GET', path: '/v1/embeddings', caller: 'key' },
  // OpenAI's Images API
  {
    method: 'POST',
    path: '/v1/images/generations',
    caller: 'key',
    json: () => ({ model: 'gen-a', prompt: 'a red circle', n: 1, size: 'auto', response_format: 'b64_json', quality: 'standard', style: 'vivid', user: 'u1', seed: 7 }),
    creates: true,
  },
  {
    method: 'POST',
    path: '/v1/images/edits',
    caller: 'key',
    multipart: { fields: () => [['model', 'gen-a'], ['prompt', 'a red circle'], ['n', '1'], ['response_format', 'b64_json']], files: ['image', 'mask'] },
    creates: true,
  },
  { method: 'POST', path: '/v1/images/variations', caller: 'key', multipart: { fields: () => [['model', 'gen-a'], ['n', '1'], ['size', 'auto']], files: ['image'] }, creates: true },
  { method: 'GET', path: '/v1/models', caller: 'key' },
  // AUTOMATIC1111's /sdapi/v1
  { method: 'POST', path: '/sdapi/v1/txt2img', caller: 'key', json: () => ({ prompt: 'a red circle', steps: 10, seed: 3, sampler_name: 'Euler', batch_size: 1, override_settings: { sd_model_checkpoint: 'gen-a' } }), creates: true },
  {
    method: 'POST',
    path: '/sdapi/v1/img2img',
    caller: 'key',
    json: () => ({ prompt: 'a red circle', init_images: [RED_PNG_64], mask: RED_PNG_64, denoising_strength: 0.5, mask_blur: 2, steps: 10, override_settings: { sd_model_checkpoint: 'gen-a' } }),
    creates: true,
  },
  { method: 'POST', path: '/sdapi/v1/extra-single-image', caller: 'key', json: () => ({ image: RED_PNG_64, upscaling_resize: 2, upscaler_1: 'up-x2' }), creates: true },
  { method: 'POST', path: '/sdapi/v1/png-info', caller: 'key', json: () => ({ image: RED_PNG_64 }) },
  ...['sd-vae', 'latent-upscale-modes', 'hypernetworks', 'face-restorers', 'realesrgan-models', 'prompt-styles', 'sd-modules', 'scripts', 'script-info', 'extensions', 'cmd-flags', 'memory'].map((name) => ({ method: 'GET' as const, path: `/sdapi/v1/${name}`, caller: 'key' as const })),
  ...['refresh-checkpoints', 'refresh-vae', 'unload-checkpoint', 'reload-checkpoint', 'interrogate'].map((name) => ({ method: 'POST' as const, path: `/sdapi/v1/${name}`, caller: 'key' as const })),
  { method: 'GET', path: '/internal/ping', caller: 'none' },
  ...['sd-models', 'samplers', 'schedulers', 'upscalers', 'loras', 'embeddings', 'options', 'progress'].map((name) => ({ method: 'GET' as const, path: `/sdapi/v1/${name}`, caller: 'key' as const })),
  { method: 'POST', path: '/sdapi/v1/options', caller: 'key', json: () => ({ sd_model_checkpoint: 'gen-a' }) },
  {
    method: 'POST',
    path: '/replicate/v1/models/{owner}/{name}/predictions',
    caller: 'key',
    params: (ids) => ({ owner: 'sdq', name: ids.engine }),
    json: () => ({ input: { prompt: 'a red circle', width: 128, height: 128, num_inference_steps: 10, seed: 1 } }),
    creates: true,
  },
  {
    method: 'POST',
    path: '/replicate/v1/predictions',
    caller: 'key',
    json: () => ({ version: replicateVersionOf('gen-a'), input: { prompt: 'a red circle', width: 128, height: 128, num_inference_steps: 10, seed: 1 } }),
    creates: true,
  },
  { method: 'GET', path: '/replicate/v1/predictions', caller: 'key' },
  { method: 'GET', path: '/replicate/v1/predictions/{id}', caller: 'key', params: (ids) => ({ id: ids.job }) },
  { method: 'POST', path: '/replicate/v1/predictions/{id}/cancel', caller: 'key', params: (ids) => ({ id: ids.job }) },
  { method: 'GET', path: '/replicate/v1/models', caller: 'key' },
  { method: 'GET', path: '/replicate/v1/webhooks/default/secret', caller: 'key' },
  { method: 'POST', path: '/replicate/v1/files', caller: 'key' },
  { method: 'GET', path: '/replicate/v1/models/{owner}/{name}', caller: 'key', params: (ids) => ({ owner: 'sdq', name: ids.engine }) },
  { method: 'GET', path: '/replicate/v1/models/{owner}/{name}/versions', caller: 'key', params: (ids) => ({ owner: 'sdq', name: ids.engine }) },
  { method: 'GET', path: '/replicate/v1/models/{owner}/{name}/versions/{version}', caller: 'key', params: (ids) => ({ owner: 'sdq', name: ids.engine, version: replicateVersionOf(ids.engine) }) },
  { method: 'POST', path: '/fal/{owner}/{alias}', caller: 'key', params: (ids) => ({ owner: 'sdq', alias: ids.engine }), json: () => ({ prompt: 'a red circle', image_size: { width: 128, height: 128 }, num_inference_steps: 10, seed: 1 }), creates: true },
  { method: 'POST', path: '/fal/queue/{owner}/{alias}', caller: 'key', params: (ids) => ({ owner: 'sdq', alias: ids.engine }), json: () => ({ prompt: 'a red circle', image_size: { width: 128, height: 128 }, num_inference_steps: 10, seed: 1 }), creates: true },
  { method: 'GET', path: '/fal/queue/{owner}/{alias}/requests/{id}/status', caller: 'key', params: (ids) => ({ owner: 'sdq', alias: ids.engine, id: ids.job }) },
  { method: 'GET', path: '/fal/queue/{owner}/{alias}/requests/{id}/status/stream', caller: 'key', params: (ids) => ({ owner: 'sdq', alias: ids.engine, id: ids.job }) },
  { method: 'GET', path: '/fal/queue/{owner}/{alias}/requests/{id}', caller: 'key', params: (ids) => ({ owner: 'sdq', alias: ids.engine, id: ids.job }) },
  { method: 'PUT', path: '/fal/queue/{owner}/{alias}/requests/{id}/cancel', caller: 'key', params: (ids) => ({ owner: 'sdq', alias: ids.engine, id: ids.job }) },
  { method: 'GET', path: '/fal/proxy', caller: 'key' },
  { method: 'POST', path: '/fal/proxy', caller: 'key', json: () => ({ prompt: 'a red circle', image_size: { width: 128, height: 128 }, num_inference_steps: 10, seed: 1 }), creates: true },
  { method: 'PUT', path: '/fal/proxy', caller: 'key' },
  { method: 'POST', path: '/sdapi/v1/interrupt', caller: 'key' },
  { method: 'POST', path: '/sdapi/v1/refresh-loras', caller: 'key' },
  { method: 'POST', path: '/sdapi/v1/refresh-embeddings', caller: 'key' },
  { method: 'POST', path: '/sdapi/v1/skip', caller: 'key' },
  {
    method: 'POST',
    path: '/v1/generation/{engine_id}/text-to-image',
    caller: 'key',
    params: (ids) => ({ engine_id: ids.engine }),
    json: () => ({ text_prompts: [{ text: 'a red circle', weight: 1 }], steps: 10, cfg_scale: 7, samples: 1, seed: 1, width: 128, height: 128, sampler: 'K_EULER' }),
    creates: true,
  },
  {
    method: 'POST',
    path: '/v1/generation/{engine_id}/animation',
    caller: 'key',
    params: (ids) => ({ engine_id: ids.engine }),
    json: () => ({ keyframes: [{ frame: 0, text_prompts: [{ text: 'a red circle', weight: 1 }], seed: 1 }, { frame: 2, text_prompts: [{ text: 'a blue circle' }], seed: 2 }], frames: 3, steps: 10, width: 128, height: 128, fps: 6, format: 'gif', mode: 'travel' }),
    creates: true,
  },
  {
    method: 'POST',
    path: '/v1/generation/{engine_id}/image-to-image',
    caller: 'key',
    params: (ids) => ({ engine_id: ids.engine }),
    multipart: { fields: () => [...prompts(), ['steps', '10'], ['image_strength', '0.4'], ['init_image_mode', 'IMAGE_STRENGTH']], files: ['init_image'] },
    creates: true,
  },
  {
    method: 'POST',
    path: '/v1/generation/{engine_id}/image-to-image/masking',
    caller: 'key',
    params: (ids) => ({ engine_id: ids.engine }),
    multipart: { fields: () => [...prompts(), ['steps', '10'], ['mask_source', 'MASK_IMAGE_WHITE']], files: ['init_image', 'mask_image'] },
    creates: true,
  },
  {
    method: 'POST',
    path: '/v1/generation/{engine_id}/image-to-image/upscale',
    caller: 'key',
    params: (ids) => ({ engine_id: ids.upscaler }),
    multipart: { fields: () => [['width', '256']], files: ['image'] },
    creates: true,
  },
  { method: 'GET', path: '/v1/jobs', caller: 'key', query: { limit: '5' } },
  { method: 'GET', path: '/v1/jobs/{id}', caller: 'key', params: (ids) => ({ id: ids.job }) },
  { method: 'POST', path: '/v1/jobs/{id}/cancel', caller: 'key', params: (ids) => ({ id: ids.job }) },
  { method: 'GET', path: '/v1/jobs/{id}/events', caller: 'key', params: (ids) => ({ id: ids.job }) },
  { method: 'GET', path: '/v1/jobs/{id}/webhooks', caller: 'key', params: (ids) => ({ id: ids.job }) },
  { method: 'POST', path: '/v1/jobs/{id}/webhooks/{delivery}/redeliver', caller: 'key', params: (ids) => ({ id: ids.job, delivery: 'dlv_0' }) },
  { method: 'GET', path: '/v1/user/webhook', caller: 'key' },
  { method: 'PUT', path: '/v1/user/webhook', caller: 'key', json: () => ({ url: 'http://127.0.0.1:9/hook', events: ['completed'] }) },
  { method: 'DELETE', path: '/v1/user/webhook', caller: 'key' },
  { method: 'GET', path: '/v1/webhooks/secret', caller: 'key' },
  { method: 'POST', path: '/v1/webhooks/secret/rotate', caller: 'key' },
  { method: 'GET', path: '/v1/user/balance', caller: 'key' },
  { method: 'GET', path: '/v1/user/account', caller: 'key' },
  { method: 'GET', path: '/v1/user/ledger', caller: 'key', query: { limit: '5' } },
  { method: 'GET', path: '/v1/admin/accounts', caller: 'admin' },
  { method: 'GET', path: '/v1/admin/workers', caller: 'admin' },
  // a pull of a repo no Hub here has (no network in tests): it is accepted and fails in the background
  { method: 'POST', path: '/v1/admin/models', caller: 'admin', json: () => ({ repo: 'fuzz-owner/fuzz-model' }) },
  { method: 'GET', path: '/v1/admin/models/pulls/{id}', caller: 'admin', params: () => ({ id: 'pull_00000000-0000-0000-0000-000000000000' }) },
  // an engine no folder holds: 404 (the fuzz suite removes nothing it needs)
  { method: 'DELETE', path: '/v1/admin/models/{id}', caller: 'admin', params: () => ({ id: 'no-such-engine' }) },
  { method: 'POST', path: '/v1/admin/accounts', caller: 'admin', json: () => ({ name: 'fuzzed', credits: 1 }) },
  { method: 'GET', path: '/v1/admin/accounts/{id}', caller: 'admin', params: (ids) => ({ id: ids.account }) },
  { method: 'PUT', path: '/v1/admin/accounts/{id}/tier', caller: 'admin', params: (ids) => ({ id: ids.account }), json: () => ({ tier: 'standard' }) },
  { method: 'PUT', path: '/v1/admin/accounts/{id}/safety', caller: 'admin', params: (ids) => ({ id: ids.account }), json: () => ({ mode: 'blur' }) },
  { method: 'POST', path: '/v1/admin/accounts/{id}/credits', caller: 'admin', params: (ids) => ({ id: ids.account }), json: () => ({ amount: 1, reason: 'fuzz' }) },
  { method: 'GET', path: '/v1/admin/accounts/{id}/ledger', caller: 'admin', params: (ids) => ({ id: ids.account }) },
  { method: 'POST', path: '/v1/admin/accounts/{id}/keys', caller: 'admin', params: (ids) => ({ id: ids.account }), json: () => ({ scope: 'read' }) },
  { method: 'GET', path: '/v1/admin/accounts/{id}/keys', caller: 'admin', params: (ids) => ({ id: ids.account }) },
  { method: 'DELETE', path: '/v1/admin/keys/{id}', caller: 'admin', params: (ids) => ({ id: ids.key }) },
  // Stability v2beta (the fuzz API maps every service onto its stub engines with V2BETA_ENGINES)
  ...(['core', 'ultra'] as const).map((service): FuzzRoute => ({
    method: 'POST',
    path: `/v2beta/stable-image/generate/${service}`,
    caller: 'key',
    multipart: { fields: () => [['prompt', 'a red circle'], ['aspect_ratio', '1:1'], ['seed', '1'], ['output_format', 'png']], files: [] },
    creates: true,
  })),
  {
    method: 'POST',
    path: '/v2beta/stable-image/generate/sd3',
    caller: 'key',
    multipart: { fields: () => [['prompt', 'a red circle'], ['model', 'sd3.5-large'], ['mode', 'image-to-image'], ['strength', '0.5']], files: ['image'] },
    creates: true,
  },
  { method: 'POST', path: '/v2beta/stable-image/upscale/fast', caller: 'key', multipart: { fields: () => [['output_format', 'png']], files: ['image'] }, creates: true },
  ...(['inpaint', 'erase'] as const).map((service): FuzzRoute => ({
    method: 'POST',
    path: `/v2beta/stable-image/edit/${service}`,
    caller: 'key',
    multipart: { fields: () => [['prompt', 'a red circle'], ['grow_mask', '3']], files: ['image', 'mask'] },
    creates: true,
  })),
  ...(['conservative', 'creative'] as const).map((kind): FuzzRoute => ({
    method: 'POST',
    path: `/v2beta/stable-image/upscale/${kind}`,
    caller: 'key',
    multipart: { fields: () => [['prompt', 'a red circle'], ['creativity', '0.3']], files: ['image'] },
    creates: true,
  })),
  {
    method: 'POST',
    path: '/v2beta/stable-image/edit/outpaint',
    caller: 'key',
    multipart: { fields: () => [['left', '64'], ['creativity', '0.5'], ['prompt', 'a blue background']], files: ['image'] },
    creates: true,
  },
  { method: 'GET', path: '/v2beta/results/{id}', caller: 'key', params: (ids) => ({ id: ids.job }) },
  { method: 'GET', path: '/v2beta/stable-image/upscale/creative/result/{id}', caller: 'key', params: (ids) => ({ id: ids.job }) },
  ...V2BETA_UNSUPPORTED.map((path): FuzzRoute => ({ method: 'POST', path, caller: 'key' })),
];

/** `METHOD /path/{param}` for every route Express has registered, mounted routers included. */
export function registeredRoutes(app: Express): string[] {
  const out: string[] = [];
  type Layer = { rawPath?: string; route?: { path: string; methods: Record<string, boolean> }; handle?: { stack?: Layer[] } };
  const walk = (stack: Layer[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        const path = (prefix + layer.route.path).replace(/:(\w+)/g, '{$1}').replace(/\*(\w+)/g, '{$1}');
        for (const method of Object.keys(layer.route.methods)) if (method !== '_all') out.push(`${method.toUpperCase()} ${path}`);
      } else if (layer.handle?.stack) {
        walk(layer.handle.stack, prefix + (layer.rawPath && layer.rawPath !== '/' ? layer.rawPath : ''));
      }
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack, '');
  return [...new Set(out)].sort();
}
