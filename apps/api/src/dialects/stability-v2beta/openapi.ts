/** Stability v2beta's OpenAPI paths: multipart in, the image (accept: image/*) or JSON out, errors as {id, name, errors}. */
import type { JsonSchema, OpenApiKit } from '../../openapi-kit';
import {
  ERROR_NAMES,
  V2BETA_UNSUPPORTED,
  V2GenerateRequest,
  V2InpaintRequest,
  V2ConservativeRequest,
  V2CreativeRequest,
  V2OutpaintRequest,
  V2Sd3Request,
  V2UpscaleFastRequest,
} from '@sdq/contracts';

export function v2betaOpenApi(kit: OpenApiKit): Record<string, unknown> {
  const { schemas, schemaOf, errorsIn, withImage, dryRunParam, idempotencyParam, jobParam } = kit;
  // Stability v2beta: multipart in, the image (accept: image/*) or {image, finish_reason, seed} out,
  // errors as {id, name, errors, field?}.
  schemas.V2Error = {
    type: 'object',
    required: ['id', 'name', 'errors'],
    properties: {
      id: { type: 'string' },
      name: { type: 'string', enum: ERROR_NAMES },
      errors: { type: 'array', items: { type: 'string' } },
      field: { type: 'string', description: 'The request field the error is about (`steps`, `text_prompts[0].text`), when there is one' },
    },
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
  const v2Common = ['bad_request', 'invalid_lora', 'invalid_init_image', 'invalid_mask_image', 'invalid_mime_type', 'invalid_file_size', 'invalid_accept', 'request_timeout', 'payload_too_large', 'unauthorized', 'permission_denied', 'not_found', 'insufficient_balance', 'idempotency_key_mismatch', 'rate_limited', 'too_many_active_jobs', 'engine_unavailable', 'internal_error'];
  const v2Post = (summary: string, body: JsonSchema) => ({
    post: {
      summary,
      parameters: [dryRunParam, idempotencyParam, { name: 'accept', in: 'header', required: false, schema: { type: 'string', enum: ['image/*', 'application/json'], default: 'image/*' } }],
      requestBody: { required: true, content: { 'multipart/form-data': { schema: body } } },
      responses: { ...v2Result, ...v2Errors(v2Common) },
    },
  });
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
  return v2Paths;
}
