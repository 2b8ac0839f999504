/** fal's OpenAPI paths under /fal, with fal's error body. */
import type { OpenApiKit } from '../../openapi-kit';
import { ERROR_NAMES, FalInput, FalOutput } from '@sdq/contracts';

export function falOpenApi(kit: OpenApiKit): Record<string, unknown> {
  const { schemas, schemaOf, errorsIn, idempotencyParam, dryRunParam } = kit;
  schemas.FalError = { type: 'object', required: ['detail', 'message', 'code'], properties: { detail: { type: 'string' }, message: { type: 'string' }, code: { type: 'string', enum: ERROR_NAMES } } };
  const errors = (names: string[]) => errorsIn(names, 'FalError');
  const tags = ['fal'];
  const input = schemaOf(FalInput, schemas, 'input');
  const output = { description: "fal's output: images, seed, timings, has_nsfw_concepts, prompt", content: { 'application/json': { schema: schemaOf(FalOutput, schemas, 'output') } } };
  const queued = { description: '{request_id, response_url, status_url, cancel_url, queue_position}', content: { 'application/json': { schema: { type: 'object' } } } };
  const owner = { name: 'owner', in: 'path', required: true, schema: { type: 'string' } };
  const alias = { name: 'alias', in: 'path', required: true, schema: { type: 'string' } };
  const id = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
  const createErrors = errors(['bad_request', 'invalid_lora', 'invalid_height_or_width', 'invalid_pixel_count', 'unauthorized', 'permission_denied', 'insufficient_balance', 'not_found', 'idempotency_key_mismatch', 'rate_limited', 'too_many_active_jobs', 'engine_unavailable', 'canceled', 'internal_error']);
  const post = (summary: string, responses: Record<string, unknown>) => ({ post: { tags, summary, parameters: [owner, alias, idempotencyParam, dryRunParam], requestBody: { required: true, content: { 'application/json': { schema: input } } }, responses: { ...responses, ...createErrors } } });
  const targetHeader = { name: 'x-fal-target-url', in: 'header', required: true, schema: { type: 'string', format: 'uri' }, description: 'The fal URL the client would call: https://fal.run/<app> or https://queue.fal.run/<app>[/requests/<id>[/status[/stream]|/cancel]]; any other is 400' };
  const proxyErrors = errors(['bad_request', 'unauthorized', 'not_found', 'conflict', 'insufficient_balance', 'rate_limited', 'internal_error']);
  return {
    '/fal/{owner}/{alias}': post('fal.run: the output once the images are there (past SYNC_WAIT, 202 with the queue answer)', { '200': output, '202': queued }),
    '/fal/queue/{owner}/{alias}': post("fal's queue: submit", { '200': queued }),
    '/fal/queue/{owner}/{alias}/requests/{id}/status': { get: { tags, summary: 'IN_QUEUE (queue_position), IN_PROGRESS, COMPLETED; logs with ?logs=1', parameters: [owner, alias, id, { name: 'logs', in: 'query', required: false, schema: { type: 'string' } }], responses: { '200': { description: 'The status' }, ...errors(['not_found', 'unauthorized']) } } },
    '/fal/queue/{owner}/{alias}/requests/{id}/status/stream': { get: { tags, summary: 'The status as server-sent events until COMPLETED', parameters: [owner, alias, id], responses: { '200': { description: 'text/event-stream' }, ...errors(['not_found', 'unauthorized']) } } },
    '/fal/queue/{owner}/{alias}/requests/{id}': { get: { tags, summary: "The result: fal's output (a failed or canceled request: its error; one not finished: 409)", parameters: [owner, alias, id], responses: { '200': output, ...errors(['not_found', 'conflict', 'canceled', 'unauthorized', 'internal_error']) } } },
    '/fal/queue/{owner}/{alias}/requests/{id}/cancel': { put: { tags, summary: 'Cancels a request (not charged)', parameters: [owner, alias, id], responses: { '202': { description: '{status: CANCELLATION_REQUESTED}' }, ...errors(['not_found', 'conflict', 'unauthorized', 'permission_denied']) } } },
    '/fal/proxy': {
      get: { tags, summary: "@fal-ai/client's proxy (proxyUrl): the fal URL in x-fal-target-url, served here", parameters: [targetHeader], responses: { '200': { description: "That URL's answer" }, ...proxyErrors } },
      post: { tags, summary: "@fal-ai/client's proxy: a run or a submit", parameters: [targetHeader], requestBody: { required: false, content: { 'application/json': { schema: input } } }, responses: { '200': output, ...proxyErrors } },
      put: { tags, summary: "@fal-ai/client's proxy: a cancel", parameters: [targetHeader], responses: { '202': { description: 'Cancellation requested' }, ...proxyErrors } },
    },
  };
}
