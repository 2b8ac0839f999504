/** OpenAI Images' OpenAPI paths, with OpenAI's error body. */
import type { OpenApiKit } from '../../openapi-kit';
import {
  ERROR_NAMES,
  OpenAIImageEditRequest,
  OpenAIImageGenerationRequest,
  OpenAIImagesResponse,
  OpenAIImageVariationRequest,
} from '@sdq/contracts';

export function openaiOpenApi(kit: OpenApiKit): Record<string, unknown> {
  const { schemas, schemaOf, errorsIn, withImage, dialectJobParams, notFinished } = kit;
  schemas.OpenAIError = {
    type: 'object',
    required: ['error'],
    properties: { error: { type: 'object', required: ['message', 'type', 'param', 'code'], properties: { message: { type: 'string' }, type: { type: 'string' }, param: { type: ['string', 'null'] }, code: { type: 'string', enum: ERROR_NAMES } } } },
  };
  const openaiErrors = (names: string[]) => errorsIn(names, 'OpenAIError');
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
          ...openaiErrors(['bad_request', 'invalid_lora', 'invalid_height_or_width', 'invalid_pixel_count', 'invalid_samples', 'unauthorized', 'permission_denied', 'insufficient_balance', 'not_found', 'idempotency_key_mismatch', 'rate_limited', 'too_many_active_jobs', 'engine_unavailable', 'internal_error']),
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
          ...openaiErrors(['bad_request', 'invalid_lora', 'invalid_mask_image', 'invalid_init_image', 'invalid_mime_type', 'invalid_height_or_width', 'unauthorized', 'insufficient_balance', 'not_found', 'rate_limited', 'internal_error']),
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
          ...openaiErrors(['bad_request', 'invalid_lora', 'invalid_init_image', 'invalid_mime_type', 'invalid_height_or_width', 'unauthorized', 'insufficient_balance', 'not_found', 'rate_limited', 'internal_error']),
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
  return openaiPaths;
}
