/** Replicate's OpenAPI paths under /replicate/v1, with Replicate's error body. */
import type { OpenApiKit } from '../../openapi-kit';
import { ERROR_NAMES, ReplicateModelPredictionRequest, ReplicatePredictionRequest } from '@sdq/contracts';

export function replicateOpenApi(kit: OpenApiKit): Record<string, unknown> {
  const { schemas, schemaOf, errorsIn, idempotencyParam, dryRunParam } = kit;
  schemas.ReplicateError = { type: 'object', required: ['title', 'detail', 'status', 'code'], properties: { title: { type: 'string' }, detail: { type: 'string' }, status: { type: 'integer' }, code: { type: 'string', enum: ERROR_NAMES, description: "sdq's catalogue name" } } };
  schemas.ReplicatePrediction = {
    type: 'object',
    required: ['id', 'model', 'version', 'input', 'status', 'urls'],
    properties: {
      id: { type: 'string' },
      model: { type: 'string' },
      version: { type: 'string' },
      input: { type: 'object' },
      logs: { type: 'string' },
      output: { type: ['array', 'null'], items: { type: 'string', format: 'uri' }, description: 'Image URLs; data URIs in an answer that waited (Prefer: wait) for images of up to 8 MB in all' },
      error: { type: ['string', 'null'] },
      status: { enum: ['starting', 'processing', 'succeeded', 'failed', 'canceled'] },
      created_at: { type: 'string' },
      started_at: { type: 'string' },
      completed_at: { type: 'string' },
      urls: { type: 'object', properties: { get: { type: 'string' }, cancel: { type: 'string' }, stream: { type: 'string' } } },
      metrics: { type: 'object', properties: { predict_time: { type: 'number' }, image_count: { type: 'integer' } } },
    },
  };
  const errors = (names: string[]) => errorsIn(names, 'ReplicateError');
  const tags = ['Replicate'];
  const prediction = { description: 'The prediction', content: { 'application/json': { schema: { $ref: '#/components/schemas/ReplicatePrediction' } } } };
  const page = { description: '{next, previous, results}', content: { 'application/json': { schema: { type: 'object', properties: { next: { type: ['string', 'null'] }, previous: { type: ['string', 'null'] }, results: { type: 'array' } } } } } };
  const anything = (description: string) => ({ description, content: { 'application/json': { schema: { type: 'object' } } } });
  const prefer = { name: 'Prefer', in: 'header', required: false, schema: { type: 'string' }, description: 'wait (up to 60 s) or wait=N: answer once the prediction ends, or when N seconds pass' };
  const createErrors = errors(['bad_request', 'invalid_lora', 'invalid_sampler', 'invalid_height_or_width', 'invalid_pixel_count', 'invalid_init_image', 'invalid_mime_type', 'invalid_file_size', 'invalid_webhook', 'unauthorized', 'permission_denied', 'insufficient_balance', 'not_found', 'idempotency_key_mismatch', 'rate_limited', 'too_many_active_jobs', 'engine_unavailable', 'payload_too_large', 'internal_error']);
  const create = (summary: string, body: unknown, path: unknown[] = []) => ({ post: { tags, summary, parameters: [...path, prefer, idempotencyParam, dryRunParam], requestBody: { required: true, content: { 'application/json': { schema: body } } }, responses: { '201': prediction, ...createErrors } } });
  const owner = { name: 'owner', in: 'path', required: true, schema: { type: 'string' } };
  const name = { name: 'name', in: 'path', required: true, schema: { type: 'string' } };
  const id = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
  return {
    '/replicate/v1/predictions': {
      ...create('A prediction of a model version (ReplicateInput), as a job', schemaOf(ReplicatePredictionRequest, schemas, 'input')),
      get: { tags, summary: "The caller's predictions (every job of the account), newest first, 20 a page", parameters: [{ name: 'cursor', in: 'query', required: false, schema: { type: 'string' } }], responses: { '200': page, ...errors(['unauthorized']) } },
    },
    '/replicate/v1/models/{owner}/{name}/predictions': create('A prediction of a model (sdq/<engine>, or a Replicate name REPLICATE_MODELS maps)', schemaOf(ReplicateModelPredictionRequest, schemas, 'input'), [owner, name]),
    '/replicate/v1/predictions/{id}': { get: { tags, parameters: [id], summary: 'A prediction of the caller (another account\'s is 404)', responses: { '200': prediction, ...errors(['not_found', 'unauthorized']) } } },
    '/replicate/v1/predictions/{id}/cancel': { post: { tags, parameters: [id], summary: 'Cancels a prediction: at once while it waits, within a step while it runs; a canceled prediction is not charged', responses: { '200': prediction, ...errors(['not_found', 'conflict', 'unauthorized', 'permission_denied']) } } },
    '/replicate/v1/files': { post: { tags, summary: 'Always 501: sdq keeps no uploaded files (the replicate client then sends the file as a data URI)', responses: errors(['not_implemented', 'unauthorized', 'permission_denied']) } },
    '/replicate/v1/webhooks/default/secret': { get: { tags, summary: "The account's webhook signing secret as {key} (whsec_...), for the replicate client's validateWebhook", responses: { '200': anything('{key}'), ...errors(['unauthorized', 'permission_denied']) } } },
    '/replicate/v1/models': { get: { tags, summary: "sdq's engines as Replicate models", responses: { '200': page, ...errors(['unauthorized']) } } },
    '/replicate/v1/models/{owner}/{name}': { get: { tags, parameters: [owner, name], summary: 'A model, its latest_version with the openapi_schema of its input', responses: { '200': anything('The model'), ...errors(['not_found', 'unauthorized']) } } },
    '/replicate/v1/models/{owner}/{name}/versions': { get: { tags, parameters: [owner, name], summary: "A model's versions (one)", responses: { '200': page, ...errors(['not_found', 'unauthorized']) } } },
    '/replicate/v1/models/{owner}/{name}/versions/{version}': { get: { tags, parameters: [owner, name, { name: 'version', in: 'path', required: true, schema: { type: 'string' } }], summary: 'A version of a model', responses: { '200': anything('The version'), ...errors(['not_found', 'unauthorized']) } } },
  };
}
