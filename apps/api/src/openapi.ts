/** The OpenAPI 3.1 document, generated from the same zod schemas that validate requests. */
import { z } from 'zod';
import {
  AccountResponse,
  BalanceResponse,
  CreateAccountRequest,
  DefaultWebhookResponse,
  SetWebhookRequest,
  WebhookDeliveryList,
  WebhookDeliveryObject,
  WebhookEventBody,
  WebhookSecretResponse,
  CreateKeyRequest,
  DryRunResponse,
  EngineObject,
  ERROR_CATALOGUE,
  GrantCreditsRequest,
  LedgerPage,
  ERROR_NAMES,
  ImageToImageRequest,
  JobObject,
  MaskingRequest,
  TextToImageRequest,
  SetTierRequest,
  UpscaleRequest,
  WorkerList,
  V2BETA_UNSUPPORTED,
  V2GenerateRequest,
  V2InpaintRequest,
  V2ConservativeRequest,
  V2CreativeRequest,
  V2OutpaintRequest,
  V2Sd3Request,
  V2UpscaleFastRequest,
  OpenAIImageEditRequest,
  A1111ExtraSingleImageRequest,
  A1111Img2ImgRequest,
  A1111OptionsUpdate,
  A1111PngInfoRequest,
  A1111Txt2ImgRequest,
  OpenAIImageGenerationRequest,
  OpenAIImagesResponse,
  OpenAIImageVariationRequest,
} from '@sdq/contracts';

type JsonSchema = Record<string, unknown>;

/** JSON Schema of one zod schema; named sub-schemas move to components. */
function schemaOf(schema: z.ZodType, components: Record<string, JsonSchema>, io: 'input' | 'output'): JsonSchema {
  const json = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as JsonSchema;
  const text = JSON.stringify(json).replaceAll('"#/$defs/', '"#/components/schemas/');
  const { $schema: _, $defs, ...rest } = JSON.parse(text) as JsonSchema & { $defs?: Record<string, JsonSchema> };
  Object.assign(components, $defs ?? {});
  return rest;
}

/** Error responses by status for the named catalogue errors, in one dialect's error schema. */
function errorsIn(names: string[], schema: string): Record<string, unknown> {
  const statusOf = (n: string) => ERROR_CATALOGUE[n as keyof typeof ERROR_CATALOGUE].status;
  return Object.fromEntries(
    [...new Set(names.map(statusOf))].map((status) => [
      String(status),
      { description: names.filter((n) => statusOf(n) === status).join(', '), content: { 'application/json': { schema: { $ref: `#/components/schemas/${schema}` } } } },
    ]),
  );
}

export function buildOpenApi(publicUrl: string): Record<string, unknown> {
  const schemas: Record<string, JsonSchema> = {};
  schemas.Error = {
    type: 'object',
    required: ['id', 'name', 'message'],
    properties: { id: { type: 'string' }, name: { type: 'string', enum: ERROR_NAMES }, message: { type: 'string' } },
  };
  const job = schemaOf(JobObject, schemas, 'output');
  const t2i = schemaOf(TextToImageRequest, schemas, 'input');
  const i2i = schemaOf(ImageToImageRequest, schemas, 'input');
  const masking = schemaOf(MaskingRequest, schemas, 'input');
  const upscale = schemaOf(UpscaleRequest, schemas, 'input');
  const account = schemaOf(CreateAccountRequest, schemas, 'input');
  const createKey = schemaOf(CreateKeyRequest, schemas, 'input');
  const grant = schemaOf(GrantCreditsRequest, schemas, 'input');
  const engine = schemaOf(EngineObject, schemas, 'output');
  const dryRun = schemaOf(DryRunResponse, schemas, 'output');
  const balance = schemaOf(BalanceResponse, schemas, 'output');
  const accountOut = schemaOf(AccountResponse, schemas, 'output');
  const ledger = schemaOf(LedgerPage, schemas, 'output');
  const setWebhook = schemaOf(SetWebhookRequest, schemas, 'input');
  const defaultWebhook = schemaOf(DefaultWebhookResponse, schemas, 'output');
  const webhookSecret = schemaOf(WebhookSecretResponse, schemas, 'output');
  const deliveries = schemaOf(WebhookDeliveryList, schemas, 'output');
  const delivery = schemaOf(WebhookDeliveryObject, schemas, 'output');
  // Not an endpoint's: what receivers get, listed so clients can generate types for it.
  schemaOf(WebhookEventBody, schemas, 'output');

  const errorResponses = (names: (keyof typeof ERROR_CATALOGUE)[]) => errorsIn(names, 'Error');
  const common = errorResponses(['unauthorized', 'service_unavailable', 'internal_error']);
  const generationResponses = {
    '200': {
      description: 'Finished: Stability artifacts (JSON) or one image (image Accept) with Seed and Finish-Reason headers',
      headers: { Seed: { schema: { type: 'integer' } }, 'Finish-Reason': { schema: { type: 'string' } } },
      content: {
        'application/json': {
          schema: {
            description: 'Stability artifacts, or with ?dry_run=true the price (DryRun)',
            type: 'object',
            properties: {
              artifacts: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: { base64: { type: 'string' }, seed: { type: 'integer' }, finishReason: { type: 'string', enum: ['SUCCESS', 'ERROR', 'CONTENT_FILTERED'] } },
                },
              },
            },
          },
        },
        'image/png': { schema: { type: 'string', contentMediaType: 'image/png' } },
        'image/jpeg': { schema: { type: 'string', contentMediaType: 'image/jpeg' } },
        'image/webp': { schema: { type: 'string', contentMediaType: 'image/webp' } },
      },
    },
    '202': { description: 'Not finished (Prefer: respond-async, Prefer: wait=N, or the sync wait ran out): the job', content: { 'application/json': { schema: job } } },
    ...errorResponses([
      'bad_request',
      'invalid_samples',
      'invalid_height_or_width',
      'invalid_pixel_count',
      'invalid_prompts',
      'invalid_sampler',
      'invalid_file_size',
      'invalid_mime_type',
      'invalid_image_dimensions',
      'invalid_init_image',
      'invalid_mask_image',
      'invalid_webhook',
      'request_timeout',
      'payload_too_large',
      'unsupported_media_type',
      'not_found',
      'invalid_accept',
      'canceled',
      'invalid_idempotency_key',
      'permission_denied',
      'insufficient_balance',
      'idempotency_key_in_use',
      'idempotency_key_mismatch',
      'rate_limited',
      'too_many_active_jobs',
      'engine_unavailable',
    ]),
    ...common,
  };
  // The dry run's answer shares the 200 with Stability's artifacts.
  const ok = generationResponses['200'].content['application/json'];
  ok.schema = { oneOf: [{ ...ok.schema, description: undefined }, dryRun] } as unknown as typeof ok.schema;
  const engineParam = { name: 'engine_id', in: 'path', required: true, schema: { type: 'string' } };
  const jobParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
  const preferParam = {
    name: 'Prefer',
    in: 'header',
    required: false,
    schema: { type: 'string' },
    description: '`respond-async` answers 202 at once; `wait=N` (1-60) waits up to N seconds.',
  };
  const dryRunParam = {
    name: 'dry_run',
    in: 'query',
    required: false,
    schema: { type: 'boolean', default: false },
    description: 'true: validate and price the request (200 with DryRun); nothing is queued or charged.',
  };
  const idempotencyParam = {
    name: 'Idempotency-Key',
    in: 'header',
    required: false,
    schema: { type: 'string', minLength: 1, maxLength: 255 },
    description: 'The same key and body within 24 h answer the same job, charged once (Idempotent-Replayed: true).',
  };
  const generation = (summary: string, body: JsonSchema, mediaType: string) => ({
    post: {
      summary,
      parameters: [engineParam, preferParam, dryRunParam, idempotencyParam],
      requestBody: { required: true, content: { [mediaType]: { schema: body } } },
      responses: generationResponses,
    },
  });
  const jobResponse = { description: 'The job', content: { 'application/json': { schema: job } } };

  // Stability v2beta: multipart in, the image (accept: image/*) or {image, finish_reason, seed} out,
  // errors as {id, name, errors}.
  schemas.V2Error = {
    type: 'object',
    required: ['id', 'name', 'errors'],
    properties: { id: { type: 'string' }, name: { type: 'string', enum: ERROR_NAMES }, errors: { type: 'array', items: { type: 'string' } } },
  };
  const v2Errors = (names: string[]) => errorsIn(names, 'V2Error');
  const v2Result = {
    '200': {
      description: 'The image (accept: image/*, with finish-reason and seed headers) or, with accept: application/json, {image, finish_reason, seed}',
      headers: { 'finish-reason': { schema: { type: 'string' } }, seed: { schema: { type: 'string' } } },
      content: {
        'image/*': { schema: { type: 'string', format: 'binary' } },
        'application/json': { schema: { type: 'object', properties: { image: { type: 'string', description: 'base64' }, finish_reason: { type: 'string' }, seed: { type: 'integer' } } } },
      },
    },
    '202': { description: 'Not finished within the wait: {id, status: "in-progress"}; poll GET /v2beta/results/{id}', content: { 'application/json': { schema: { type: 'object', properties: { id: { type: 'string' }, status: { const: 'in-progress' } } } } } },
  };
  const v2Common = ['bad_request', 'invalid_init_image', 'invalid_mask_image', 'invalid_mime_type', 'invalid_file_size', 'invalid_accept', 'request_timeout', 'payload_too_large', 'unauthorized', 'permission_denied', 'not_found', 'insufficient_balance', 'idempotency_key_mismatch', 'rate_limited', 'too_many_active_jobs', 'engine_unavailable', 'internal_error'];
  const v2Post = (summary: string, body: JsonSchema) => ({
    post: {
      summary,
      parameters: [dryRunParam, idempotencyParam, { name: 'accept', in: 'header', required: false, schema: { type: 'string', enum: ['image/*', 'application/json'], default: 'image/*' } }],
      requestBody: { required: true, content: { 'multipart/form-data': { schema: body } } },
      responses: { ...v2Result, ...v2Errors(v2Common) },
    },
  });
  const withImage = (schema: JsonSchema, files: string[]) => ({ ...schema, properties: { ...(schema.properties as object), ...Object.fromEntries(files.map((f) => [f, { type: 'string', format: 'binary' }])) } });
  const v2Generate = schemaOf(V2GenerateRequest, schemas, 'input');
  const v2Paths: Record<string, unknown> = {
    '/v2beta/stable-image/generate/core': v2Post('Stable Image Core: text to image', v2Generate),
    '/v2beta/stable-image/generate/ultra': v2Post('Stable Image Ultra: text to image, or image to image with image and strength', withImage(v2Generate, ['image'])),
    '/v2beta/stable-image/generate/sd3': v2Post('Stable Diffusion 3.5 (model), text to image or image to image (mode)', withImage(schemaOf(V2Sd3Request, schemas, 'input'), ['image'])),
    '/v2beta/stable-image/upscale/fast': v2Post("Fast upscale by the upscaler engine's factor", withImage(schemaOf(V2UpscaleFastRequest, schemas, 'input'), ['image'])),
    '/v2beta/stable-image/upscale/conservative': v2Post('Twice the size, sharpened with the prompt and hardly changed (tiled image to image)', withImage(schemaOf(V2ConservativeRequest, schemas, 'input'), ['image'])),
    '/v2beta/stable-image/upscale/creative': {
      post: {
        ...v2Post('Twice the size, repainted tile by tile with the prompt; asynchronous: answers {id} for GET /v2beta/results/{id}', withImage(schemaOf(V2CreativeRequest, schemas, 'input'), ['image'])).post,
        responses: { '200': { description: 'The generation id', content: { 'application/json': { schema: { type: 'object', properties: { id: { type: 'string' } } } } } }, ...v2Errors(v2Common) },
      },
    },
    '/v2beta/stable-image/edit/inpaint': v2Post('Repaint the masked area (mask, else the image\'s transparent pixels) with the prompt', withImage(schemaOf(V2InpaintRequest, schemas, 'input'), ['image', 'mask'])),
    '/v2beta/stable-image/edit/outpaint': v2Post('Extend the canvas by left, right, up and down pixels and paint the new area', withImage(schemaOf(V2OutpaintRequest, schemas, 'input'), ['image'])),
    '/v2beta/stable-image/edit/erase': v2Post('Erase the masked area, filled from its surroundings', withImage(schemaOf(V2InpaintRequest, schemas, 'input'), ['image', 'mask'])),
    '/v2beta/results/{id}': {
      get: {
        summary: 'The result of a v2beta generation: 202 while in progress, then the image or JSON by accept',
        parameters: [jobParam],
        responses: { ...v2Result, ...v2Errors(['not_found', 'invalid_accept', 'unauthorized', 'permission_denied', 'canceled', 'internal_error']) },
      },
    },
  };
  v2Paths['/v2beta/stable-image/upscale/creative/result/{id}'] = {
    get: { ...(v2Paths['/v2beta/results/{id}'] as { get: object }).get, summary: "The creative upscale's result at Stability's earlier path: as GET /v2beta/results/{id}" },
  };
  for (const path of V2BETA_UNSUPPORTED) {
    v2Paths[path] = { post: { summary: 'Needs a model sdq does not have (501)', responses: v2Errors(['not_implemented']) } };
  }

  // OpenAI's Images API: errors as {error: {message, type, param, code}}
  schemas.OpenAIError = {
    type: 'object',
    required: ['error'],
    properties: { error: { type: 'object', required: ['message', 'type', 'param', 'code'], properties: { message: { type: 'string' }, type: { type: 'string' }, param: { type: ['string', 'null'] }, code: { type: 'string', enum: ERROR_NAMES } } } },
  };
  const openaiErrors = (names: string[]) => errorsIn(names, 'OpenAIError');
  /** What every dialect's job route takes besides its body, as Stability's routes do. */
  const dialectJobParams = [idempotencyParam, preferParam, { ...dryRunParam, description: 'true: validate and price the request (200 with DryRun, not the dialect\'s answer); nothing is queued or charged.' }, { name: 'X-Webhook-URL', in: 'header', required: false, schema: { type: 'string', format: 'uri' }, description: "The job's webhook (else the account's default)" }];
  const notFinished = { description: 'Not finished (Prefer: respond-async, Prefer: wait=N, or SYNC_WAIT ran out): the job object', content: { 'application/json': { schema: job } } };
  const openaiPaths: Record<string, unknown> = {
    '/v1/images/generations': {
      post: {
        tags: ['OpenAI'],
        summary: "OpenAI's image generation: the job's images as signed URLs or base64 once it ends (202 with the job object past SYNC_WAIT)",
        parameters: dialectJobParams,
        requestBody: { required: true, content: { 'application/json': { schema: schemaOf(OpenAIImageGenerationRequest, schemas, 'input') } } },
        responses: {
          '200': { description: '{created, data: [{url | b64_json, revised_prompt}]}', content: { 'application/json': { schema: schemaOf(OpenAIImagesResponse, schemas, 'output') } } },
          '202': notFinished,
          ...openaiErrors(['bad_request', 'invalid_height_or_width', 'invalid_pixel_count', 'invalid_samples', 'unauthorized', 'permission_denied', 'insufficient_balance', 'not_found', 'idempotency_key_mismatch', 'rate_limited', 'too_many_active_jobs', 'engine_unavailable', 'internal_error']),
        },
      },
    },
    '/v1/images/edits': {
      post: {
        tags: ['OpenAI'],
        summary: "OpenAI's image edit: repaints where the mask (else the image) is transparent; the rest of the image is kept exactly",
        parameters: dialectJobParams,
        requestBody: { required: true, content: { 'multipart/form-data': { schema: withImage(schemaOf(OpenAIImageEditRequest, schemas, 'input'), ['image', 'mask']) } } },
        responses: {
          '200': { description: '{created, data: [{url | b64_json, revised_prompt}]}', content: { 'application/json': { schema: schemaOf(OpenAIImagesResponse, schemas, 'output') } } },
          '202': notFinished,
          ...openaiErrors(['bad_request', 'invalid_mask_image', 'invalid_init_image', 'invalid_mime_type', 'invalid_height_or_width', 'unauthorized', 'insufficient_balance', 'not_found', 'rate_limited', 'internal_error']),
        },
      },
    },
    '/v1/images/variations': {
      post: {
        tags: ['OpenAI'],
        summary: "OpenAI's image variation: image to image from the image alone (half of it kept)",
        parameters: dialectJobParams,
        requestBody: { required: true, content: { 'multipart/form-data': { schema: withImage(schemaOf(OpenAIImageVariationRequest, schemas, 'input'), ['image']) } } },
        responses: {
          '200': { description: '{created, data: [{url | b64_json, revised_prompt}]}', content: { 'application/json': { schema: schemaOf(OpenAIImagesResponse, schemas, 'output') } } },
          '202': notFinished,
          ...openaiErrors(['bad_request', 'invalid_init_image', 'invalid_mime_type', 'invalid_height_or_width', 'unauthorized', 'insufficient_balance', 'not_found', 'rate_limited', 'internal_error']),
        },
      },
    },
    '/v1/models': {
      get: {
        tags: ['OpenAI'],
        summary: 'The image models of the OpenAI dialect: the OpenAI names the operator mapped (OPENAI_MODELS) and the generation engine ids',
        responses: {
          '200': { description: '{object: "list", data: [{id, object: "model", created, owned_by}]}', content: { 'application/json': { schema: { type: 'object', properties: { object: { const: 'list' }, data: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, object: { const: 'model' }, created: { type: 'integer' }, owned_by: { type: 'string' } } } } } } } } },
          ...openaiErrors(['unauthorized']),
        },
      },
    },
  };

  // AUTOMATIC1111's /sdapi/v1: errors as {error, detail, body, errors}
  schemas.A1111Error = {
    type: 'object',
    required: ['error', 'detail'],
    properties: { error: { type: 'string', enum: ERROR_NAMES }, detail: { type: 'string' }, body: { type: 'string' }, errors: { type: 'string' } },
  };
  const a1111Errors = (names: string[]) => errorsIn(names, 'A1111Error');
  const a1111Get = (summary: string) => ({ get: { tags: ['AUTOMATIC1111'], summary, responses: { '200': { description: 'As AUTOMATIC1111 answers it', content: { 'application/json': { schema: {} } } }, ...a1111Errors(['unauthorized']) } } });
  const a1111Paths: Record<string, unknown> = {
    '/sdapi/v1/txt2img': {
      post: {
        tags: ['AUTOMATIC1111'],
        summary: 'Text to image: {images: [base64 PNG], parameters, info (a JSON string with seeds and infotexts)}; 202 with the job object past SYNC_WAIT',
        parameters: dialectJobParams,
        requestBody: { required: true, content: { 'application/json': { schema: schemaOf(A1111Txt2ImgRequest, schemas, 'input') } } },
        responses: {
          '200': { description: '{images, parameters, info}', content: { 'application/json': { schema: { type: 'object', properties: { images: { type: 'array', items: { type: 'string' } }, parameters: { type: 'object' }, info: { type: 'string' } } } } } },
          '202': notFinished,
          ...a1111Errors(['bad_request', 'invalid_sampler', 'invalid_samples', 'invalid_height_or_width', 'invalid_pixel_count', 'unauthorized', 'permission_denied', 'insufficient_balance', 'not_found', 'canceled', 'rate_limited', 'too_many_active_jobs', 'engine_unavailable', 'internal_error']),
        },
      },
    },
    '/sdapi/v1/img2img': {
      post: {
        tags: ['AUTOMATIC1111'],
        summary: 'Image to image (init_images[0], denoising_strength), or inpainting with mask (white = repaint; inpainting_mask_invert 1 flips it)',
        parameters: dialectJobParams,
        requestBody: { required: true, content: { 'application/json': { schema: schemaOf(A1111Img2ImgRequest, schemas, 'input') } } },
        responses: {
          '200': { description: '{images, parameters (without the images), info}', content: { 'application/json': { schema: { type: 'object', properties: { images: { type: 'array', items: { type: 'string' } }, parameters: { type: 'object' }, info: { type: 'string' } } } } } },
          '202': notFinished,
          ...a1111Errors(['bad_request', 'invalid_init_image', 'invalid_mask_image', 'invalid_mime_type', 'invalid_file_size', 'invalid_image_dimensions', 'invalid_sampler', 'invalid_height_or_width', 'invalid_pixel_count', 'unauthorized', 'insufficient_balance', 'not_found', 'canceled', 'payload_too_large', 'rate_limited', 'service_unavailable', 'internal_error']),
        },
      },
    },
    '/sdapi/v1/extra-single-image': {
      post: {
        tags: ['AUTOMATIC1111'],
        summary: "Upscale by an upscale engine (upscaler_1; None = the first): by upscaling_resize, or to upscaling_resize_w x _h in the image's shape, up to the engine's factor",
        parameters: dialectJobParams,
        requestBody: { required: true, content: { 'application/json': { schema: schemaOf(A1111ExtraSingleImageRequest, schemas, 'input') } } },
        responses: {
          '200': { description: '{html_info, image}', content: { 'application/json': { schema: { type: 'object', properties: { html_info: { type: 'string' }, image: { type: 'string' } } } } } },
          '202': notFinished,
          ...a1111Errors(['bad_request', 'invalid_init_image', 'invalid_mime_type', 'invalid_file_size', 'invalid_height_or_width', 'invalid_pixel_count', 'unauthorized', 'insufficient_balance', 'not_found', 'rate_limited', 'service_unavailable', 'internal_error']),
        },
      },
    },
    '/sdapi/v1/png-info': {
      post: {
        tags: ['AUTOMATIC1111'],
        summary: "A PNG's text: info (its parameters infotext), items (every text chunk), parameters (the infotext parsed as A1111 parses it); rate-limited as generations are",
        requestBody: { required: true, content: { 'application/json': { schema: schemaOf(A1111PngInfoRequest, schemas, 'input') } } },
        responses: { '200': { description: '{info, items, parameters}', content: { 'application/json': { schema: { type: 'object', properties: { info: { type: 'string' }, items: { type: 'object' }, parameters: { type: 'object' } } } } } }, ...a1111Errors(['bad_request', 'invalid_init_image', 'invalid_mime_type', 'invalid_file_size', 'unauthorized', 'rate_limited', 'service_unavailable']) },
      },
    },
    '/sdapi/v1/sd-models': a1111Get('The generation engines as checkpoints (title = engine id)'),
    '/sdapi/v1/samplers': a1111Get("The samplers the engines offer, in AUTOMATIC1111's names"),
    '/sdapi/v1/schedulers': a1111Get("AUTOMATIC1111's schedulers (Karras selects DPM++ 2M Karras; the others follow the sampler)"),
    '/sdapi/v1/upscalers': a1111Get('The upscale engines'),
    '/sdapi/v1/loras': a1111Get('Always empty: sdq has no LoRA yet'),
    '/sdapi/v1/options': {
      ...a1111Get("The caller's options: sd_model_checkpoint is this API key's default engine"),
      post: {
        tags: ['AUTOMATIC1111'],
        summary: "Sets sd_model_checkpoint as this API key's default engine (never another caller's); other options are not kept",
        requestBody: { required: true, content: { 'application/json': { schema: schemaOf(A1111OptionsUpdate, schemas, 'input') } } },
        responses: { '200': { description: 'null' }, ...a1111Errors(['bad_request', 'not_found', 'unauthorized', 'permission_denied']) },
      },
    },
    '/sdapi/v1/progress': a1111Get("The calling key's most recent unfinished job (another key of the account has its own): progress, eta_relative, state.sampling_step / sampling_steps, textinfo"),
    '/sdapi/v1/interrupt': { post: { tags: ['AUTOMATIC1111'], summary: "Cancels the calling key's unfinished job (never another key's)", responses: { '200': { description: 'null' }, ...a1111Errors(['unauthorized', 'permission_denied']) } } },
    '/sdapi/v1/skip': { post: { tags: ['AUTOMATIC1111'], summary: 'As interrupt: each request here is one job', responses: { '200': { description: 'null' }, ...a1111Errors(['unauthorized', 'permission_denied']) } } },
  };

  return {
    openapi: '3.1.0',
    info: { title: 'sdq', version: '0.1.0', description: 'Queue-backed Stable Diffusion service, compatible with Stability REST v1.' },
    servers: [{ url: publicUrl }],
    security: [{ bearer: [] }],
    paths: {
      '/metrics': {
        get: {
          summary: 'Prometheus metrics: HTTP requests by route and status, jobs by engine queue and state, the oldest waiting job, credits reserved, process figures',
          security: [],
          responses: { '200': { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } } },
        },
      },
      ...v2Paths,
      ...openaiPaths,
      ...a1111Paths,
      '/v1/engines/list': {
        get: {
          summary: 'List engines',
          responses: {
            '200': {
              description: 'Engines',
              content: {
                'application/json': {
                  schema: { type: 'array', items: engine },
                },
              },
            },
            ...common,
          },
        },
      },
      '/v1/generation/{engine_id}/text-to-image': generation('Text to image', t2i, 'application/json'),
      '/v1/generation/{engine_id}/image-to-image': generation('Image to image', i2i, 'multipart/form-data'),
      '/v1/generation/{engine_id}/image-to-image/masking': generation('Inpainting with a mask', masking, 'multipart/form-data'),
      '/v1/generation/{engine_id}/image-to-image/upscale': generation('Upscale', upscale, 'multipart/form-data'),
      '/v1/jobs': {
        get: {
          summary: "The caller's jobs, newest first",
          parameters: [
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' } },
          ],
          responses: {
            '200': {
              description: 'A page of jobs',
              content: {
                'application/json': {
                  schema: { type: 'object', properties: { data: { type: 'array', items: job }, next_cursor: { type: ['string', 'null'] } } },
                },
              },
            },
            ...errorResponses(['bad_request']),
            ...common,
          },
        },
      },
      '/v1/jobs/{id}': { get: { summary: 'A job', parameters: [jobParam], responses: { '200': jobResponse, ...errorResponses(['not_found']), ...common } } },
      '/v1/jobs/{id}/cancel': {
        post: {
          summary: 'Cancel a job',
          parameters: [jobParam],
          responses: { '200': jobResponse, '202': jobResponse, ...errorResponses(['not_found', 'conflict', 'permission_denied']), ...common },
        },
      },
      '/v1/jobs/{id}/events': {
        get: {
          summary: 'Server-Sent Events: queued, started, progress, completed. Open streams are capped per key (MAX_EVENT_STREAMS_PER_KEY, 429), per account (429) and per API process (MAX_EVENT_STREAMS, 503)',
          parameters: [jobParam],
          responses: { '200': { description: 'An event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } }, ...errorResponses(['not_found', 'rate_limited', 'service_unavailable']), ...common },
        },
      },
      '/v1/jobs/{id}/webhooks': {
        get: {
          summary: "A job's webhook deliveries, oldest first, each with its attempts",
          parameters: [jobParam],
          responses: { '200': { description: 'Deliveries', content: { 'application/json': { schema: deliveries } } }, ...errorResponses(['not_found']), ...common },
        },
      },
      '/v1/jobs/{id}/webhooks/{delivery}/redeliver': {
        post: {
          summary: 'Send a delivery again: a new delivery with the same webhook-id and body',
          parameters: [jobParam, { name: 'delivery', in: 'path', required: true, schema: { type: 'string' } }],
          responses: {
            '202': { description: 'The new delivery, queued', content: { 'application/json': { schema: delivery } } },
            ...errorResponses(['not_found', 'permission_denied']),
            ...common,
          },
        },
      },
      '/v1/user/webhook': {
        get: {
          summary: "The account's default webhook (used by jobs that name none)",
          responses: { '200': { description: 'The default webhook', content: { 'application/json': { schema: defaultWebhook } } }, ...errorResponses(['permission_denied']), ...common },
        },
        put: {
          summary: "Set (and re-enable) the account's default webhook; url null removes it",
          requestBody: { required: true, content: { 'application/json': { schema: setWebhook } } },
          responses: {
            '200': { description: 'The default webhook', content: { 'application/json': { schema: defaultWebhook } } },
            ...errorResponses(['bad_request', 'invalid_webhook', 'invalid_mime_type', 'permission_denied']),
            ...common,
          },
        },
        delete: {
          summary: "Remove the account's default webhook",
          responses: { '200': { description: 'No default webhook', content: { 'application/json': { schema: defaultWebhook } } }, ...errorResponses(['permission_denied']), ...common },
        },
      },
      '/v1/webhooks/secret': {
        get: {
          summary: "The account's webhook signing secret (whsec_...), made on first use",
          responses: { '200': { description: 'The secret', content: { 'application/json': { schema: webhookSecret } } }, ...errorResponses(['permission_denied']), ...common },
        },
      },
      '/v1/webhooks/secret/rotate': {
        post: {
          summary: 'A new signing secret; the replaced one keeps signing (a second signature) for WEBHOOK_SECRET_GRACE',
          responses: { '200': { description: 'The new secret', content: { 'application/json': { schema: webhookSecret } } }, ...errorResponses(['permission_denied']), ...common },
        },
      },
      '/v1/user/balance': {
        get: { summary: "The caller's balance", responses: { '200': { description: 'Credits', content: { 'application/json': { schema: balance } } }, ...common } },
      },
      '/v1/user/account': {
        get: { summary: "The caller's account, as Stability's", responses: { '200': { description: 'The account', content: { 'application/json': { schema: accountOut } } }, ...common } },
      },
      '/v1/user/ledger': {
        get: {
          summary: "The caller's ledger, newest first",
          parameters: [
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' } },
          ],
          responses: { '200': { description: 'A page of entries', content: { 'application/json': { schema: ledger } } }, ...errorResponses(['bad_request']), ...common },
        },
      },
      '/v1/admin/accounts/{id}': {
        get: { summary: 'An account with its balance', security: [{ admin: [] }], parameters: [jobParam], responses: { '200': { description: 'The account' }, ...errorResponses(['not_found', 'permission_denied']), ...common } },
      },
      '/v1/admin/accounts/{id}/tier': {
        put: {
          summary: "Set the account's priority tier: its jobs submitted from then on queue at that tier's priority",
          security: [{ admin: [] }],
          parameters: [jobParam],
          requestBody: { required: true, content: { 'application/json': { schema: schemaOf(SetTierRequest, schemas, 'input') } } },
          responses: { '200': { description: 'The account, with its tier and balance' }, ...errorResponses(['bad_request', 'not_found', 'permission_denied']), ...common },
        },
      },
      '/v1/admin/accounts/{id}/credits': {
        post: {
          summary: 'Grant credits (amount > 0) or adjust (amount < 0, never below zero)',
          security: [{ admin: [] }],
          parameters: [jobParam, { ...idempotencyParam, description: 'Makes the grant once-only: a retry grants nothing more (200, duplicate: true).' }],
          requestBody: { required: true, content: { 'application/json': { schema: grant } } },
          responses: {
            '201': { description: 'Granted: {account_id, type, amount, reason, credits (the new balance), entry_id, duplicate}' },
            '200': { description: 'A repeat of a grant made under the same Idempotency-Key: nothing changed' },
            ...errorResponses(['bad_request', 'not_found', 'conflict', 'permission_denied']),
            ...common,
          },
        },
      },
      '/v1/admin/accounts/{id}/ledger': {
        get: { summary: "An account's ledger", security: [{ admin: [] }], parameters: [jobParam], responses: { '200': { description: 'A page of entries', content: { 'application/json': { schema: ledger } } }, ...common } },
      },
      '/v1/admin/workers': {
        get: {
          summary: 'The live workers: engines, execution providers, current jobs, jobs done, last heartbeat (a dead worker drops off within 15 s)',
          security: [{ admin: [] }],
          responses: { '200': { description: 'The workers', content: { 'application/json': { schema: schemaOf(WorkerList, schemas, 'output') } } }, ...common },
        },
      },
      '/v1/admin/accounts': {
        post: {
          summary: 'Create an account and its first API key (shown once)',
          security: [{ admin: [] }],
          requestBody: { required: true, content: { 'application/json': { schema: account } } },
          responses: { '201': { description: 'The account, with api_key' }, ...errorResponses(['bad_request', 'permission_denied']), ...common },
        },
        get: { summary: 'List accounts', security: [{ admin: [] }], responses: { '200': { description: 'Accounts' }, ...common } },
      },
      '/v1/admin/accounts/{id}/keys': {
        post: {
          summary: 'New API key',
          security: [{ admin: [] }],
          parameters: [jobParam],
          requestBody: { required: false, content: { 'application/json': { schema: createKey } } },
          responses: { '201': { description: 'The key, shown once' }, ...errorResponses(['not_found']), ...common },
        },
        get: { summary: "An account's keys", security: [{ admin: [] }], parameters: [jobParam], responses: { '200': { description: 'Keys' }, ...errorResponses(['not_found']), ...common } },
      },
      '/v1/admin/keys/{id}': {
        delete: { summary: 'Revoke an API key', security: [{ admin: [] }], parameters: [jobParam], responses: { '200': { description: 'The revoked key' }, ...errorResponses(['not_found']), ...common } },
      },
      '/v1/artifacts/{key}': {
        get: {
          summary: 'A stored image by its signed URL (local storage only; with S3 the URLs are presigned S3 URLs)',
          security: [],
          parameters: [
            { name: 'key', in: 'path', required: true, schema: { type: 'string' }, description: 'The object key, e.g. generations/<job id>/0.png' },
            { name: 'expires', in: 'query', required: true, schema: { type: 'string', pattern: '^[1-9][0-9]*$' }, description: 'Unix seconds, as signed' },
            { name: 'signature', in: 'query', required: true, schema: { type: 'string', pattern: '^[0-9a-f]{64}$' }, description: 'HMAC-SHA256, lower-case hex' },
          ],
          responses: { '200': { description: 'The image', content: { 'image/png': {}, 'image/jpeg': {}, 'image/webp': {} } }, ...errorResponses(['bad_request', 'permission_denied', 'not_found']) },
        },
      },
      '/openapi.json': { get: { summary: 'This document', security: [], responses: { '200': { description: 'OpenAPI 3.1' } } } },
      '/healthz': { get: { summary: 'Process up', security: [], responses: { '200': { description: 'ok' } } } },
      '/readyz': { get: { summary: 'Redis and storage reachable', security: [], responses: { '200': { description: 'ready' }, ...errorResponses(['service_unavailable']) } } },
    },
    components: {
      schemas,
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'An API key (sk-...)' },
        admin: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN' },
      },
    },
  };
}
