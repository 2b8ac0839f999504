/**
 * The error catalogue: every error sdq answers with, its HTTP status and message template. The API's
 * error handler turns a ServiceError into `{"id","name","message"}`; a test checks that every name here
 * is documented in docs/errors.md. Names follow Stability's v1 API where Stability has one.
 */
export interface ErrorSpec {
  status: number;
  /** Message template; `{detail}` is replaced by the detail given when the error is raised. */
  message: string;
  /** One line for docs/errors.md and the OpenAPI document. */
  description: string;
}

export const ERROR_CATALOGUE = {
  bad_request: { status: 400, message: '{detail}', description: 'The request is malformed or a field is out of range.' },
  unauthorized: {
    status: 401,
    message: '{detail}',
    description: 'Missing, unknown or revoked API key (or admin token on admin endpoints).',
  },
  permission_denied: { status: 403, message: '{detail}', description: 'The credentials are valid but do not allow this.' },
  not_found: { status: 404, message: '{detail}', description: 'Unknown engine, job, route or artifact (another account\'s job is 404 too).' },
  invalid_samples: {
    status: 400,
    message: '{detail}',
    description: '`samples` out of range, or more than one sample asked with an image `Accept`.',
  },
  invalid_height_or_width: {
    status: 400,
    message: '{detail}',
    description: '`height`/`width` not a multiple of 64, under 128, or both given to upscale.',
  },
  invalid_pixel_count: { status: 400, message: '{detail}', description: "width x height is above the configured maximum (MAX_PIXELS), or one image of that size fits no live worker's memory bound (WORKER_MEMORY_LIMIT_MB)." },
  invalid_prompts: { status: 400, message: '{detail}', description: '`text_prompts` missing, empty or a text over 2000 characters.' },
  invalid_keyframes: { status: 400, message: '{detail}', description: "An animation's keyframes are missing, unsorted, repeated, do not start at frame 0, or name a frame beyond `frames`." },
  invalid_frames: { status: 400, message: '{detail}', description: "An animation's `frames` is below 2 or above MAX_ANIMATION_FRAMES." },
  unsupported_format: { status: 400, message: '{detail}', description: 'The animation format needs a tool the workers serving the engine lack (mp4: an ffmpeg binary with libx264, FFMPEG_PATH).' },
  content_filtered: { status: 400, message: '{detail}', description: "The safety checker flagged an image and the account's safety mode is `refuse`: the job failed, no image was kept, nothing was charged." },
  content_moderated: { status: 400, message: '{detail}', description: "A prompt matched a term of the operator's blocklist (PROMPT_BLOCKLIST_FILE). The term is not said; nothing was queued or held." },
  invalid_sampler: { status: 400, message: '{detail}', description: 'Unknown sampler name, or one the engine cannot use.' },
  invalid_lora: {
    status: 400,
    message: '{detail}',
    description: 'A LoRA named in `loras` or a `<lora:name:weight>` tag is not a LoRA file of LORA_DIR (the message lists them), is not a safetensors file, or matches none of the engine\'s layers (a LoRA for another family).',
  },
  invalid_file_size: { status: 400, message: '{detail}', description: 'An uploaded file is larger than the limit (MAX_UPLOAD_BYTES).' },
  invalid_mime_type: { status: 400, message: '{detail}', description: 'An upload is not a PNG, JPEG or WebP image, or the body is not JSON/multipart as the endpoint needs.' },
  invalid_image_dimensions: {
    status: 400,
    message: '{detail}',
    description: 'An image\'s size is unusable (not a multiple of 64, too small, or over MAX_PIXELS).',
  },
  invalid_init_image: {
    status: 400,
    message: '{detail}',
    description: '`init_image` (or upscale\'s `image`) has a valid header but data that does not decode: truncated or corrupt.',
  },
  invalid_mask_image: {
    status: 400,
    message: '{detail}',
    description: '`mask_image` missing, not the size of `init_image`, or data that does not decode.',
  },
  request_timeout: {
    status: 408,
    message: '{detail}',
    description: 'An upload sent nothing for UPLOAD_IDLE_TIMEOUT_MS (or the whole request took over HTTP_REQUEST_TIMEOUT_MS); the connection is closed.',
  },
  payload_too_large: { status: 413, message: '{detail}', description: 'A JSON body is over the endpoint\'s size limit.' },
  unsupported_media_type: {
    status: 415,
    message: '{detail}',
    description: 'A body in a charset other than UTF-8, or with a `Content-Encoding` sdq does not take (JSON: gzip, deflate, br; multipart: none).',
  },
  invalid_accept: { status: 406, message: '{detail}', description: 'The `Accept` header names no type sdq can answer with.' },
  invalid_webhook: {
    status: 400,
    message: '{detail}',
    description: '`webhook` is not an http(s) URL webhooks may call (a private, loopback or other refused address not in WEBHOOK_ALLOWED_HOSTS), or `webhook_events_filter` names an unknown event; nothing was queued or charged.',
  },
  invalid_idempotency_key: { status: 400, message: '{detail}', description: 'The `Idempotency-Key` header is empty or longer than 255 characters.' },
  insufficient_balance: {
    status: 402,
    message: '{detail}',
    description: 'The balance does not cover the request\'s cost (the message gives both); nothing was queued or charged.',
  },
  idempotency_key_in_use: {
    status: 409,
    message: '{detail}',
    description: 'A request with the same `Idempotency-Key` is still being accepted; retry shortly (`Retry-After`).',
  },
  idempotency_key_mismatch: {
    status: 422,
    message: '{detail}',
    description: 'The `Idempotency-Key` was already used (within 24 h) with a different request body or endpoint.',
  },
  rate_limited: {
    status: 429,
    message: '{detail}',
    description: 'Too many requests from this API key in the sliding window (default 150 per 10 s); wait `Retry-After` seconds.',
  },
  too_many_active_jobs: {
    status: 429,
    message: '{detail}',
    description: 'The account already has the most jobs queued or running at once (default 10); retry after one finishes (`Retry-After`).',
  },
  conflict: { status: 409, message: '{detail}', description: 'The job is already finished (cancel), or the request conflicts with the current state.' },
  canceled: { status: 409, message: '{detail}', description: 'The job was canceled before it finished (a synchronous request whose job was canceled).' },
  engine_unavailable: {
    status: 503,
    message: '{detail}',
    description: 'No live worker serves the engine (none started, or its folder failed to load on every worker); nothing was queued or charged. A job that waited UNSERVED_JOB_TIMEOUT with no worker for its engine fails with this name.',
  },
  service_unavailable: {
    status: 503,
    message: '{detail}',
    description: 'Redis (or the storage backend) cannot be reached; retry later.',
  },
  not_implemented: {
    status: 501,
    message: '{detail}',
    description: 'A Stability v2beta endpoint that needs a model sdq does not have (background removal, control, video, 3D); it is unsupported, not broken.',
  },
  internal_error: { status: 500, message: 'internal error (request id {detail})', description: 'A bug or an unexpected fault; the log has the details under the request id.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorName = keyof typeof ERROR_CATALOGUE;
export const ERROR_NAMES = Object.keys(ERROR_CATALOGUE) as ErrorName[];

/** The body of every error response. */
export interface ErrorBody {
  /** A fresh id per error (the request id), to find the log lines. */
  id: string;
  name: ErrorName;
  message: string;
  /** The request field the error is about (`steps`, `text_prompts[0].text`), when there is one. */
  field?: string;
}

/** The body of every error of a Stability v2beta route, in Stability's shape. */
export interface V2ErrorBody {
  id: string;
  /** The catalogue name, or Stability's own where it differs (`content_moderation`). */
  name: ErrorName | 'content_moderation';
  errors: string[];
  /** As in ErrorBody: the request field the error is about, when there is one. */
  field?: string;
}

export interface ServiceErrorOptions {
  /**
   * The request field the error is about, as its message names it first (`steps: ...` is `steps`;
   * `width x height: ...` is `width`). Said where the error is raised, so no reader parses messages:
   * the error bodies carry it (OpenAI's `param`) and the studio marks that input.
   */
  field?: string;
  /** Extra response headers (e.g. WWW-Authenticate, Retry-After). */
  headers?: Record<string, string>;
}

/** An error the service raises on purpose; the API's error handler answers it from the catalogue. */
export class ServiceError extends Error {
  readonly status: number;
  readonly field: string | undefined;
  readonly headers: Record<string, string>;
  constructor(
    readonly code: ErrorName,
    detail: string,
    options: ServiceErrorOptions = {},
  ) {
    super(ERROR_CATALOGUE[code].message.replace('{detail}', detail));
    this.name = 'ServiceError';
    this.status = ERROR_CATALOGUE[code].status;
    this.field = options.field;
    this.headers = options.headers ?? {};
  }
}

export function isErrorName(name: string): name is ErrorName {
  return Object.prototype.hasOwnProperty.call(ERROR_CATALOGUE, name);
}

/**
 * The pipeline's PipelineErrorCode values, mapped onto the catalogue. Kept as strings so contracts does
 * not depend on the pipeline package; a missing code falls back to internal_error.
 */
export const PIPELINE_ERROR_MAP = {
  invalid_height_or_width: 'invalid_height_or_width',
  invalid_samples: 'invalid_samples',
  invalid_prompts: 'invalid_prompts',
  invalid_steps: 'bad_request',
  invalid_cfg_scale: 'bad_request',
  invalid_seed: 'bad_request',
  invalid_sampler: 'invalid_sampler',
  invalid_image_strength: 'bad_request',
  invalid_image: 'invalid_init_image',
  invalid_image_dimensions: 'invalid_image_dimensions',
  invalid_mask_image: 'invalid_mask_image',
  invalid_output_format: 'invalid_accept',
  unsupported_mode: 'bad_request',
  // the API checks LoRA names, files and layers first; what reaches the pipeline is a file changed since
  invalid_lora: 'invalid_lora',
  invalid_embedding: 'bad_request',
  // A broken model folder or a missing execution provider is the operator's fault, not the client's.
  invalid_model: 'internal_error',
  provider_unavailable: 'service_unavailable',
  canceled: 'canceled',
  invalid_keyframes: 'invalid_keyframes',
  content_filtered: 'content_filtered',
} as const satisfies Record<string, ErrorName>;

export function errorNameForPipelineCode(code: string): ErrorName {
  return Object.hasOwn(PIPELINE_ERROR_MAP, code) ? PIPELINE_ERROR_MAP[code as keyof typeof PIPELINE_ERROR_MAP] : 'internal_error';
}

/**
 * How a worker fails a job so the API can tell the client why: BullMQ keeps only the error's message
 * (`failedReason`), so the catalogue name travels in it as `[name] message`. The worker throws
 * `new UnrecoverableError(formatFailedReason(name, message))` for input errors and cancellation, and a
 * plain Error (retried) for the rest; the API reads it back with parseFailedReason.
 */
export function formatFailedReason(name: ErrorName, message: string): string {
  return `[${name}] ${message}`;
}

export function parseFailedReason(reason: string | undefined): { name: ErrorName; message: string } {
  const match = /^\[([a-z_]+)\] ([\s\S]*)$/.exec(reason ?? '');
  if (match && isErrorName(match[1])) return { name: match[1], message: match[2] };
  // An unformatted reason is a runtime fault that exhausted its retries: say so without leaking internals.
  return { name: 'internal_error', message: 'the job failed after its retries' };
}
