/**
 * Batching for a serving process: generate() calls that arrive together and share a batchKey (same
 * size, steps, guidance scale and scheduler) are denoised as one batch, up to maxImages images, which
 * raises images per second (more so on a GPU) without changing any image. Calls run one batch at a time
 * per pipeline; the first call to find it idle waits windowMs for company. A call canceled while it
 * waits leaves at once; one canceled in a batch is rejected at the next step.
 */
import { PipelineError } from './errors';
import type { DiffusionPipeline } from './pipeline';
import type { GenerateRequest, GenerateResult } from './types';

export interface BatcherOptions {
  /** Images per batch at most (a request with more runs alone). */
  maxImages: number;
  /** How long a call that finds the pipeline idle waits for others, in ms. */
  windowMs: number;
  /** Told each batch's size in requests (metrics). */
  onBatch?: (requests: number, images: number) => void;
}

interface Pending {
  req: GenerateRequest;
  batch?: { key: string; images: number; fit: number };
  resolve(result: GenerateResult): void;
  reject(err: unknown): void;
  leave(): void;
}

export class GenerationBatcher {
  private readonly pending: Pending[] = [];
  private running = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pipeline: Pick<DiffusionPipeline, 'batchKey' | 'generateBatch'>,
    private readonly opts: BatcherOptions,
  ) {}

  generate(req: GenerateRequest): Promise<GenerateResult> {
    return new Promise((resolve, reject) => {
      if (req.signal?.aborted) return reject(new PipelineError('canceled', 'generation canceled before it started'));
      const onAbort = () => {
        const at = this.pending.indexOf(entry);
        if (at < 0) return; // in a batch already: the pipeline sees the signal
        this.pending.splice(at, 1);
        reject(new PipelineError('canceled', 'generation canceled before it started'));
      };
      const entry: Pending = {
        req,
        batch: this.opts.maxImages > 1 ? this.pipeline.batchKey(req) : undefined,
        resolve,
        reject,
        leave: () => req.signal?.removeEventListener('abort', onAbort),
      };
      req.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.push(entry);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running || this.timer) return;
    // a full batch need not wait
    const next = this.take(false);
    const full = this.imagesOf(next) >= Math.min(this.opts.maxImages, next[0]?.batch?.fit ?? Number.POSITIVE_INFINITY);
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        void this.drain();
      },
      full ? 0 : this.opts.windowMs,
    );
  }

  private imagesOf(entries: Pending[]): number {
    return entries.reduce((n, e) => n + (e.batch?.images ?? 1), 0);
  }

  /** The first pending call and those that can join it, up to maxImages; removed from pending when `remove`. */
  private take(remove: boolean): Pending[] {
    const [head] = this.pending;
    if (!head) return [];
    const batch = [head];
    let images = head.batch?.images ?? 1;
    if (head.batch) {
      // never past the memory bound: jobs join only while their images fit one run beside the others'
      const most = Math.min(this.opts.maxImages, head.batch.fit);
      for (const other of this.pending.slice(1)) {
        if (other.batch?.key !== head.batch.key || images + other.batch.images > most) continue;
        batch.push(other);
        images += other.batch.images;
      }
    }
    if (remove) for (const entry of batch) this.pending.splice(this.pending.indexOf(entry), 1);
    return batch;
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.pending.length) {
        const batch = this.take(true);
        for (const entry of batch) entry.leave();
        this.opts.onBatch?.(batch.length, this.imagesOf(batch));
        try {
          const settled = await this.pipeline.generateBatch(batch.map((e) => e.req));
          settled.forEach((result, i) => (result.status === 'fulfilled' ? batch[i].resolve(result.value) : batch[i].reject(result.reason)));
        } catch (err) {
          for (const entry of batch) entry.reject(err);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
