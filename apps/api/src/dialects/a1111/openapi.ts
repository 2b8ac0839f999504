/** AUTOMATIC1111's /sdapi/v1 OpenAPI paths, with A1111's error body. */
import type { OpenApiKit } from '../../openapi-kit';
import {
  ERROR_NAMES,
  A1111ExtraSingleImageRequest,
  A1111Img2ImgRequest,
  A1111OptionsUpdate,
  A1111PngInfoRequest,
  A1111Txt2ImgRequest,
} from '@sdq/contracts';

export function a1111OpenApi(kit: OpenApiKit): Record<string, unknown> {
  const { schemas, schemaOf, errorsIn, dialectJobParams, notFinished } = kit;
  // AUTOMATIC1111's /sdapi/v1: errors as {error, detail, body, errors}
  schemas.A1111Error = {
    type: 'object',
    required: ['error', 'detail'],
    properties: { error: { type: 'string', enum: ERROR_NAMES }, detail: { type: 'string' }, body: { type: 'string' }, errors: { type: 'string' } },
  };
  const a1111Errors = (names: string[]) => errorsIn(names, 'A1111Error');
  const a1111Get = (summary: string) => ({ get: { tags: ['AUTOMATIC1111'], summary, responses: { '200': { description: 'As AUTOMATIC1111 answers it', content: { 'application/json': { schema: {} } } }, ...a1111Errors(['unauthorized']) } } });
  const a1111Post = (summary: string) => ({ post: { tags: ['AUTOMATIC1111'], summary, responses: { '200': { description: 'null' }, ...a1111Errors(['unauthorized', 'permission_denied']) } } });
  const a1111Paths: Record<string, unknown> = {
    '/sdapi/v1/txt2img': {
      post: {
        tags: ['AUTOMATIC1111'],
        summary: 'Text to image: {images: [base64 PNG], parameters, info (a JSON string with seeds and infotexts)}; 202 with the job object past SYNC_WAIT. enable_hr runs hires fix as one job: the first pass, the upscale (a latent mode, Lanczos, Nearest or an upscaler), an image-to-image pass at the target size',
        parameters: dialectJobParams,
        requestBody: { required: true, content: { 'application/json': { schema: schemaOf(A1111Txt2ImgRequest, schemas, 'input') } } },
        responses: {
          '200': { description: '{images, parameters, info}', content: { 'application/json': { schema: { type: 'object', properties: { images: { type: 'array', items: { type: 'string' } }, parameters: { type: 'object' }, info: { type: 'string' } } } } } },
          '202': notFinished,
          ...a1111Errors(['bad_request', 'invalid_sampler', 'invalid_lora', 'invalid_samples', 'invalid_height_or_width', 'invalid_pixel_count', 'unauthorized', 'permission_denied', 'insufficient_balance', 'not_found', 'canceled', 'rate_limited', 'too_many_active_jobs', 'engine_unavailable', 'internal_error']),
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
          ...a1111Errors(['bad_request', 'invalid_init_image', 'invalid_mask_image', 'invalid_mime_type', 'invalid_file_size', 'invalid_image_dimensions', 'invalid_sampler', 'invalid_lora', 'invalid_height_or_width', 'invalid_pixel_count', 'unauthorized', 'insufficient_balance', 'not_found', 'canceled', 'payload_too_large', 'rate_limited', 'service_unavailable', 'internal_error']),
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
    '/sdapi/v1/loras': a1111Get('The LoRA files of LORA_DIR: name, alias (ss_output_name), path (the file name), metadata (the safetensors header\'s)'),
    '/sdapi/v1/embeddings': a1111Get('The embeddings of EMBEDDINGS_DIR: loaded (those the caller\'s checkpoint takes) and skipped, each {step, sd_checkpoint, sd_checkpoint_name, shape, vectors}'),
    '/sdapi/v1/refresh-loras': a1111Post('Reads LORA_DIR and EMBEDDINGS_DIR again now (they are also read again within a second of a change)'),
    '/sdapi/v1/refresh-embeddings': a1111Post('Reads LORA_DIR and EMBEDDINGS_DIR again now'),
    '/sdapi/v1/options': {
      ...a1111Get("The caller's options: sd_model_checkpoint is this API key's default engine"),
      post: {
        tags: ['AUTOMATIC1111'],
        summary: "Sets sd_model_checkpoint as this API key's default engine (never another caller's); other options are not kept",
        requestBody: { required: true, content: { 'application/json': { schema: schemaOf(A1111OptionsUpdate, schemas, 'input') } } },
        responses: { '200': { description: 'null' }, ...a1111Errors(['bad_request', 'not_found', 'unauthorized', 'permission_denied']) },
      },
    },
    '/sdapi/v1/sd-vae': a1111Get('VAEs apart from the checkpoints: none (each engine has its own)'),
    '/sdapi/v1/latent-upscale-modes': a1111Get("Hires fix's latent upscale modes (Latent, Latent (antialiased), Latent (bicubic), ..., Latent (nearest-exact))"),
    '/sdapi/v1/hypernetworks': a1111Get('Hypernetworks: none (sdq refuses <hypernet:...> tags)'),
    '/sdapi/v1/face-restorers': a1111Get('Face restorers: none'),
    '/sdapi/v1/realesrgan-models': a1111Get('The upscale engines, as Real-ESRGAN models (name, scale)'),
    '/sdapi/v1/prompt-styles': a1111Get('Prompt styles: none'),
    '/sdapi/v1/sd-modules': a1111Get('Text encoder modules: none apart from the checkpoints'),
    '/sdapi/v1/scripts': a1111Get('Scripts: {txt2img: [], img2img: []}'),
    '/sdapi/v1/script-info': a1111Get('Scripts: none'),
    '/sdapi/v1/extensions': a1111Get('Extensions: none'),
    '/sdapi/v1/cmd-flags': a1111Get('The flags clients branch on (api, nowebui, ...), none of the server\'s own'),
    '/sdapi/v1/memory': a1111Get('RAM of the API process; cuda says the models run on the workers'),
    '/sdapi/v1/refresh-checkpoints': a1111Post('Done already: engines added or removed are served within ENGINE_REFRESH_MS'),
    '/sdapi/v1/refresh-vae': a1111Post('Done already: there are no separate VAEs'),
    '/sdapi/v1/unload-checkpoint': { post: { tags: ['AUTOMATIC1111'], summary: "403: the workers load and unload engines (the operator's settings), never a caller", responses: a1111Errors(['permission_denied', 'unauthorized']) } },
    '/sdapi/v1/reload-checkpoint': { post: { tags: ['AUTOMATIC1111'], summary: "403: the workers load and unload engines (the operator's settings), never a caller", responses: a1111Errors(['permission_denied', 'unauthorized']) } },
    '/sdapi/v1/interrogate': { post: { tags: ['AUTOMATIC1111'], summary: '501: sdq has no captioning model', responses: a1111Errors(['not_implemented', 'unauthorized', 'permission_denied']) } },
    '/internal/ping': { get: { tags: ['AUTOMATIC1111'], summary: 'A1111\'s liveness ping: {}', security: [], responses: { '200': { description: '{}' } } } },
    '/sdapi/v1/progress': a1111Get("The calling key's most recent unfinished job (another key of the account has its own): progress, eta_relative, state.sampling_step / sampling_steps, textinfo"),
    '/sdapi/v1/interrupt': { post: { tags: ['AUTOMATIC1111'], summary: "Cancels the calling key's unfinished job (never another key's)", responses: { '200': { description: 'null' }, ...a1111Errors(['unauthorized', 'permission_denied']) } } },
    '/sdapi/v1/skip': { post: { tags: ['AUTOMATIC1111'], summary: 'As interrupt: each request here is one job', responses: { '200': { description: 'null' }, ...a1111Errors(['unauthorized', 'permission_denied']) } } },
  };
  return a1111Paths;
}
