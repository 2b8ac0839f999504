/**
 * The worker reports its jobs' ends to the charge (@sdq/jobs' charge.ts, which has the rule) the moment
 * BullMQ says so: completed is a success, a final failure (last attempt, unrecoverable, canceled) is
 * released. The API and its reconciler report the same ends; the first report closes the hold.
 */
import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { parseFailedReason } from '@sdq/contracts';
import { filteredIn, type JobCharge } from '@sdq/jobs/charge';

export class HoldCloser {
  constructor(
    private readonly charge: Pick<JobCharge, 'succeeded' | 'released'>,
    private readonly logger: Logger,
  ) {}

  /** BullMQ's `completed`: the job's result is recorded, so it is charged (its filtered images said). */
  completed(job: Job): void {
    const artifacts = (job.returnvalue as { artifacts?: { finish_reason: string }[] } | undefined)?.artifacts;
    this.close(job.id, (id) => this.charge.succeeded(id, filteredIn(artifacts)));
  }

  /** BullMQ's `failed`: only a final failure has finishedOn; an attempt that will be retried keeps its hold. */
  failed(job: Job | undefined): void {
    if (!job?.finishedOn) return;
    const reason = parseFailedReason(job.failedReason).name === 'canceled' ? 'canceled' : 'failed';
    this.close(job.id, (id) => this.charge.released(id, reason));
  }

  private close(jobId: string | undefined, op: (jobId: string) => Promise<{ status: string }>): void {
    if (!jobId) return;
    op(jobId).then(
      (result) => this.logger.debug({ job_id: jobId, hold: result.status }, 'hold closed'),
      (err) => this.logger.warn({ job_id: jobId, err: (err as Error).message }, 'could not close the hold; the API will'),
    );
  }
}
