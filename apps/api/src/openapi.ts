/** The OpenAPI 3.1 document, generated from the same zod schemas that validate requests. */
import {
  AccountResponse,
  BalanceResponse,
  AnimationRequest,
  CreateAccountRequest,
  CreateKeyRequest,
  DefaultWebhookResponse,
  DryRunResponse,
  EmbeddingList,
  EngineObject,
  LoraList,
  ERROR_CATALOGUE,
  ERROR_NAMES,
  GrantCreditsRequest,
  ImageToImageRequest,
  JobObject,
  LedgerPage,
  MaskingRequest,
  PullModelRequest,
  PullObject,
  SetSafetyRequest,
  SetTierRequest,
  SetWebhookRequest,
  TextToImageRequest,
  UpscaleRequest,
  WebhookDeliveryList,
  WebhookDeliveryObject,
  WebhookEventBody,
  WebhookSecretResponse,
  WorkerList,
} from '@sdq/contracts';
import { a1111OpenApi } from './dialects/a1111/openapi';
import { falOpenApi } from './dialects/fal/openapi';
import { openaiOpenApi } from './dialects/openai/openapi';
import { replicateOpenApi } from './dialects/replicate/openapi';
import { v2betaOpenApi } from './dialects/stability-v2beta/openapi';
import { errorsIn, type JsonSchema, type OpenApiKit, schemaOf } from './openapi-kit';

export function buildOpenApi(publicUrl: string): Record<string, unknown> {
  const schemas: Record<string, JsonSchema> = {};
  schemas.Error = {
    type: 'object',
    required: ['id', 'name', 'message'],
    properties: {
      id: { type: 'string' },
      name: { type: 'string', enum: ERROR_NAMES },
      message: { type: 'string' },
      field: { type: 'string', description: 'The request field the error is about (`steps`, `text_prompts[0].text`), when there is one' },
    },
  };
  const job = schemaOf(JobObject, schemas, 'output');
  const t2i = schemaOf(TextToImageRequest, schemas, 'input');
  const i2i = schemaOf(ImageToImageRequest, schemas, 'input');
  const masking = schemaOf(MaskingRequest, schemas, 'input');
  const upscale = schemaOf(UpscaleRequest, schemas, 'input');
  const animation = schemaOf(AnimationRequest, schemas, 'input');
  const account = schemaOf(CreateAccountRequest, schemas, 'input');
  const createKey = schemaOf(CreateKeyRequest, schemas, 'input');
  const grant = schemaOf(GrantCreditsRequest, schemas, 'input');
  const engine = schemaOf(EngineObject, schemas, 'output');
  const loraList = schemaOf(LoraList, schemas, 'output');
  const embeddingList = schemaOf(EmbeddingList, schemas, 'output');
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
      'invalid_lora',
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

  // each dialect writes its own paths (dialects/<name>/openapi.ts) with what they share
  const withImage = (schema: JsonSchema, files: string[]) => ({ ...schema, properties: { ...(schema.properties as object), ...Object.fromEntries(files.map((f) => [f, { type: 'string', format: 'binary' }])) } });
  /** What every dialect's job route takes besides its body, as Stability's routes do. */
  const dialectJobParams = [idempotencyParam, preferParam, { ...dryRunParam, description: 'true: validate and price the request (200 with DryRun, not the dialect\'s answer); nothing is queued or charged.' }, { name: 'X-Webhook-URL', in: 'header', required: false, schema: { type: 'string', format: 'uri' }, description: "The job's webhook (else the account's default)" }];
  const notFinished = { description: 'Not finished (Prefer: respond-async, Prefer: wait=N, or SYNC_WAIT ran out): the job object', content: { 'application/json': { schema: job } } };
  const kit: OpenApiKit = { schemas, schemaOf, errorsIn, withImage, dryRunParam, idempotencyParam, jobParam, dialectJobParams, notFinished, job };
  const v2Paths = v2betaOpenApi(kit);
  const openaiPaths = openaiOpenApi(kit);
  const a1111Paths = a1111OpenApi(kit);
  const replicatePaths = replicateOpenApi(kit);
  const falPaths = falOpenApi(kit);

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
      ...replicatePaths,
      ...falPaths,
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
      '/v1/loras': {
        get: {
          summary: 'The LoRA files of LORA_DIR: each with its modules, the engines it fits and its metadata; the files not taken with why',
          responses: { '200': { description: 'LoRAs', content: { 'application/json': { schema: loraList } } }, ...common },
        },
      },
      '/v1/embeddings': {
        get: {
          summary: 'The textual-inversion embeddings of EMBEDDINGS_DIR (the file stem is the trigger word), with the engines each fits',
          responses: { '200': { description: 'Embeddings', content: { 'application/json': { schema: embeddingList } } }, ...common },
        },
      },
      '/v1/generation/{engine_id}/text-to-image': generation('Text to image', t2i, 'application/json'),
      '/v1/generation/{engine_id}/image-to-image': generation('Image to image', i2i, 'multipart/form-data'),
      '/v1/generation/{engine_id}/image-to-image/masking': generation('Inpainting with a mask', masking, 'multipart/form-data'),
      '/v1/generation/{engine_id}/image-to-image/upscale': generation('Upscale', upscale, 'multipart/form-data'),
      '/v1/generation/{engine_id}/animation': {
        post: {
          summary: "An animation (sdq's own): frames between keyframes (prompt and seed travel, or frame feedback), written as animated WebP, GIF or MP4; every frame is a PNG artifact of the job",
          parameters: [engineParam, preferParam, dryRunParam, idempotencyParam],
          requestBody: { required: true, content: { 'application/json': { schema: animation } } },
          responses: {
            '200': {
              description: "The animation's bytes (Accept: image/webp, image/gif or video/mp4, once it ends within SYNC_WAIT); the job once ended (Prefer: wait=N); or the dry run's price",
              content: {
                'application/json': { schema: { oneOf: [job, dryRun] } },
                'image/webp': { schema: { type: 'string', contentMediaType: 'image/webp' } },
                'image/gif': { schema: { type: 'string', contentMediaType: 'image/gif' } },
                'video/mp4': { schema: { type: 'string', contentMediaType: 'video/mp4' } },
              },
            },
            '202': { description: 'Not finished (Accept: application/json answers at once; Prefer: wait=N or SYNC_WAIT ran out): the job, its progress in steps and frames', content: { 'application/json': { schema: job } } },
            ...errorResponses(['bad_request', 'invalid_keyframes', 'invalid_frames', 'unsupported_format', 'invalid_height_or_width', 'invalid_pixel_count', 'invalid_prompts', 'invalid_sampler', 'invalid_lora', 'invalid_mime_type', 'invalid_webhook', 'payload_too_large', 'not_found', 'invalid_accept', 'canceled', 'invalid_idempotency_key', 'permission_denied', 'insufficient_balance', 'idempotency_key_in_use', 'idempotency_key_mismatch', 'rate_limited', 'too_many_active_jobs', 'engine_unavailable']),
            ...common,
          },
        },
      },
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
      '/v1/admin/models': {
        post: {
          summary: 'Pull a diffusers ONNX repo from the Hugging Face Hub into MODELS_DIR (HF_ENDPOINT, HF_TOKEN): runs in the background; the answer names the pull',
          security: [{ admin: [] }],
          requestBody: { required: true, content: { 'application/json': { schema: schemaOf(PullModelRequest, schemas, 'input') } } },
          responses: {
            '202': { description: 'The pull, running', headers: { Location: { schema: { type: 'string' } } }, content: { 'application/json': { schema: schemaOf(PullObject, schemas, 'output') } } },
            ...errorResponses(['bad_request', 'conflict', 'permission_denied']),
            ...common,
          },
        },
      },
      '/v1/admin/models/{id}': {
        delete: {
          summary: "Remove an engine's folder from MODELS_DIR: the API drops the engine at once, its queued jobs fail (engine_unavailable, refunded), running ones finish",
          security: [{ admin: [] }],
          parameters: [jobParam],
          responses: { '200': { description: '{id, removed: true}' }, ...errorResponses(['bad_request', 'not_found', 'permission_denied']), ...common },
        },
      },
      '/v1/admin/models/pulls/{id}': {
        get: {
          summary: "A pull's state: bytes done and total, the file, the commit, its error",
          security: [{ admin: [] }],
          parameters: [jobParam],
          responses: { '200': { description: 'The pull', content: { 'application/json': { schema: schemaOf(PullObject, schemas, 'output') } } }, ...errorResponses(['not_found', 'permission_denied']), ...common },
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
      '/v1/admin/accounts/{id}/safety': {
        put: {
          summary: "Set the account's safety mode (blur, black, refuse, flag, off; null: SAFETY_MODE's): its jobs submitted from then on run with it",
          security: [{ admin: [] }],
          parameters: [jobParam],
          requestBody: { required: true, content: { 'application/json': { schema: schemaOf(SetSafetyRequest, schemas, 'input') } } },
          responses: { '200': { description: 'The account, with its safety_mode and balance' }, ...errorResponses(['bad_request', 'not_found', 'permission_denied']), ...common },
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
