/**
 * Cancellation as the API asks for it (see @sdq/contracts queues.ts): a message on the cancel channel
 * for a job that is running now, and a flag key for a job that a worker picks up afterwards. Each
 * running job holds an AbortController here; the message aborts it, and the pipeline stops within one
 * step.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { cancelChannel, cancelFlagKey } from '@sdq/contracts';

/** Why a job's signal was aborted. */
export type AbortReason = 'canceled' | 'shutdown';

export class CancelWatcher {
  private readonly running = new Map<string, AbortController>();
  private readonly channel: string;

  constructor(
    /** A connection of its own: a subscribed connection can run no other command. */
    private readonly subscriber: Redis,
    /** For the flag lookups. */
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly logger: Logger,
  ) {
    this.channel = cancelChannel(prefix);
    subscriber.on('message', (channel: string, jobId: string) => {
      if (channel !== this.channel) return;
      const controller = this.running.get(jobId);
      if (controller && !controller.signal.aborted) {
        logger.info({ job_id: jobId }, 'cancel requested: stopping the job');
        controller.abort('canceled' satisfies AbortReason);
      }
    });
  }

  async start(): Promise<void> {
    // ioredis re-subscribes by itself after a reconnect.
    await this.subscriber.subscribe(this.channel);
  }

  /**
   * Tracks a job about to run. Registered before the flag is read, so a cancel that arrives between
   * the two is not lost: either the message finds the controller or the flag is already set.
   */
  async begin(jobId: string): Promise<{ signal: AbortSignal; canceled: boolean; end(): void }> {
    const controller = new AbortController();
    this.running.set(jobId, controller);
    const canceled = (await this.redis.exists(cancelFlagKey(this.prefix, jobId))) === 1;
    return {
      signal: controller.signal,
      canceled,
      end: () => {
        if (this.running.get(jobId) === controller) this.running.delete(jobId);
      },
    };
  }

  /** Aborts every running job for shutdown (the jobs go back to the queue, see queue.ts). */
  abortAll(reason: AbortReason): void {
    for (const controller of this.running.values()) if (!controller.signal.aborted) controller.abort(reason);
  }

  async close(): Promise<void> {
    this.subscriber.disconnect();
  }
}
