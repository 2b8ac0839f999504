/**
 * The worker closes a job's credit hold the moment it sees the job end: completed -> settle, failed for
 * good (last attempt, unrecoverable, canceled) -> release in full. Closing is once per hold (Lua in
 * @sdq/credits), so the API, which closes it too when it hears the end, and the API's reconciler, which
 * catches whatever a killed process missed, can never charge twice.
 */
import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { parseFailedReason } from '@sdq/contracts';
import type { CreditsService } from '@sdq/credits';

export class HoldCloser {
  constructor(
    private readonly credits: CreditsService,
    private readonly logger: Logger,
    private readonly settled?: { inc(value: number): void },
  ) {}

  /** BullMQ's `completed`: the job's result is recorded, so it is charged. */
  completed(job: Job): void {
    this.close(job.id, async () => {
      const result = await this.credits.settle(job.id!);
      // counted where it was settled: the API's close of the same hold finds it already settled
      if (result.status === 'settled') this.settled?.inc(result.charged / 1_000_000);
      return result;
    });
  }

  /** BullMQ's `failed`: only a final failure has finishedOn; an attempt that will be retried keeps its hold. */
  failed(job: Job | undefined): void {
    if (!job?.finishedOn) return;
    const reason = parseFailedReason(job.failedReason).name === 'canceled' ? 'canceled' : 'failed';
    this.close(job.id, () => this.credits.release(job.id!, reason));
  }

  private close(jobId: string | undefined, op: () => Promise<{ status: string }>): void {
    if (!jobId) return;
    op().then(
      (result) => this.logger.debug({ job_id: jobId, hold: result.status }, 'hold closed'),
      (err) => this.logger.warn({ job_id: jobId, err: (err as Error).message }, 'could not close the hold; the API will'),
    );
  }
}
