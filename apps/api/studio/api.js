// @ts-check
/**
 * The studio's only way to the service: the public API, with the key in the Authorization header (never
 * in a URL). An error answer becomes an ApiError carrying the catalogue name, the message, the field the
 * body names (`field`), and Retry-After.
 */

export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} name the catalogue name (`insufficient_balance`, `invalid_height_or_width`, ...)
   * @param {string} message
   * @param {number | undefined} retryAfter seconds
   * @param {string | undefined} [field] the request field the error is about (`steps`, `text_prompts[0].text`)
   */
  constructor(status, name, message, retryAfter, field) {
    super(message);
    this.status = status;
    this.name = name;
    this.retryAfter = retryAfter;
    // the form's inputs are the top-level fields: text_prompts[0].text is the prompt box
    this.field = typeof field === 'string' ? /^[A-Za-z0-9_]*/.exec(field)?.[0] || undefined : undefined;
  }
}

export class Api {
  /** @param {string} key */
  constructor(key) {
    this.key = key;
  }

  /**
   * @param {string} path
   * @param {RequestInit & { json?: unknown }} [init]
   * @returns {Promise<any>}
   */
  async call(path, init = {}) {
    const headers = new Headers(init.headers);
    headers.set('authorization', `Bearer ${this.key}`);
    let body = init.body;
    if (init.json !== undefined) {
      headers.set('content-type', 'application/json');
      body = JSON.stringify(init.json);
    }
    if (!headers.has('accept')) headers.set('accept', 'application/json');
    let res;
    try {
      res = await fetch(path, { ...init, headers, body });
    } catch {
      throw new ApiError(0, 'network_error', 'The service did not answer: is it running?', undefined);
    }
    const text = await res.text();
    let parsed;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    if (!res.ok) {
      const retry = Number(res.headers.get('retry-after'));
      throw new ApiError(res.status, parsed?.name ?? 'error', parsed?.message ?? `HTTP ${res.status}`, Number.isFinite(retry) && retry > 0 ? retry : undefined, parsed?.field);
    }
    return parsed;
  }

  balance() {
    return this.call('/v1/user/balance');
  }

  engines() {
    return this.call('/v1/engines/list');
  }

  /** The LoRA files of LORA_DIR, each with the engines it fits. */
  loras() {
    return this.call('/v1/loras');
  }

  /** @param {number} limit @param {string | null} [cursor] */
  jobs(limit, cursor) {
    return this.call(`/v1/jobs?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
  }

  /** @param {string} id */
  job(id) {
    return this.call(`/v1/jobs/${encodeURIComponent(id)}`);
  }

  /** @param {string} id */
  cancel(id) {
    return this.call(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
  }

  /**
   * Submits a generation, answered at once with the job (Prefer: respond-async), or prices it (dryRun).
   * @param {string} engine
   * @param {'text-to-image' | 'image-to-image' | 'image-to-image/masking' | 'image-to-image/upscale' | 'animation'} mode
   * @param {Record<string, unknown> | FormData} body JSON for text-to-image, FormData for the rest
   * @param {{ dryRun?: boolean }} [opts]
   */
  generate(engine, mode, body, opts = {}) {
    const path = `/v1/generation/${encodeURIComponent(engine)}/${mode}${opts.dryRun ? '?dry_run=true' : ''}`;
    const headers = { prefer: 'respond-async' };
    if (body instanceof FormData) return this.call(path, { method: 'POST', headers, body });
    return this.call(path, { method: 'POST', headers, json: body });
  }

  /**
   * Follows a job's Server-Sent Events. EventSource cannot send an Authorization header, so the stream
   * is read with fetch. Resolves with the final job object (or undefined when stopped).
   * @param {string} id
   * @param {(event: string, data: any) => void} onEvent
   * @param {AbortSignal} signal
   */
  async follow(id, onEvent, signal) {
    const res = await fetch(`/v1/jobs/${encodeURIComponent(id)}/events`, { headers: { authorization: `Bearer ${this.key}`, accept: 'text/event-stream' }, signal });
    if (!res.ok || !res.body) throw new ApiError(res.status, 'error', `the job's events: HTTP ${res.status}`, undefined);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let final;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (!event) continue;
        const parsed = data ? JSON.parse(data) : undefined;
        if (event === 'completed') final = parsed;
        onEvent(event, parsed);
      }
    }
    return final;
  }
}
