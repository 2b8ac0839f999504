/**
 * A job's charge, owned here: the only code that closes credit holds (CreditsService's settle and
 * release are called from nowhere else). Every process that learns how a job ended tells this module;
 * none decides on its own.
 *
 * The rule. A job's hold is taken when the job is accepted and closed once, by the first report of its end:
 * - succeeded: settled, its price charged (less its filtered images', when SAFETY_REFUND was on at submission);
 * - failed for good, canceled, never queued (`not_enqueued`), waited unserved (`engine_unavailable`) or
 *   gone from the queue (`job_gone`): released in full, nothing charged;
 * - queued or running (a failed attempt that will be retried is running): kept.
 * Reports come from any process, any number of times, in any order, and the first close wins (the credit
 * scripts close a hold once). So a cancel or reaper releases before it removes a job (a worker that
 * finishes it in between then settles nothing), and a settle that landed first makes them too late
 * (`already_settled`).
 *
 * Who reports: the worker when its job ends; the API and the delivery process when they hear or read an
 * end; the API's cancel, unserved reaper and failed submission; and the API's reconciler, for holds a
 * process that died never closed.
 */
import type { Logger } from 'pino';
import type { JobStatus } from '@sdq/contracts';
import type { CreditsService, Hold, ReleaseResult, SettleResult } from '@sdq/credits';

/** Why a hold was given back; it goes in the ledger entry. */
export type ReleaseReason = 'failed' | 'canceled' | 'not_enqueued' | 'engine_unavailable' | 'job_gone';

/** What becomes of an open hold, decided by someone who can see its job. */
export type HoldFate = { action: 'keep' } | { action: 'settle'; filtered: number } | { action: 'release'; reason: ReleaseReason };

/**
 * The rule, for a job whose status is known: `gone` is a job its queue no longer has; `filtered`, its
 * images the safety checker filtered (given back at settle when its hold was taken with SAFETY_REFUND).
 */
export function holdFate(status: JobStatus, gone = false, filtered = 0): HoldFate {
  if (status === 'succeeded') return { action: 'settle', filtered };
  if (status === 'canceled') return { action: 'release', reason: 'canceled' };
  if (status === 'failed') return { action: 'release', reason: gone ? 'job_gone' : 'failed' };
  return { action: 'keep' };
}

/** How many of a job's stored images the safety checker filtered. */
export function filteredIn(artifacts: readonly { finish_reason: string }[] | undefined): number {
  return artifacts?.filter((a) => a.finish_reason === 'CONTENT_FILTERED').length ?? 0;
}

export interface JobChargeDeps {
  credits: Pick<CreditsService, 'settle' | 'release' | 'openHolds'>;
  logger: Logger;
  /** Counts what this process settled, in credits (the worker's metric). */
  settled?: { inc(value: number): void };
  /** Clock, Unix ms. Default Date.now. */
  now?: () => number;
}

export class JobCharge {
  constructor(private readonly deps: JobChargeDeps) {}

  /** The job succeeded: charge its hold (less its filtered images, where the hold says so). */
  async succeeded(jobId: string, filtered = 0): Promise<SettleResult> {
    const result = await this.deps.credits.settle(jobId, { filtered });
    if (result.status === 'settled') {
      this.deps.settled?.inc(result.charged / 1_000_000);
      this.deps.logger.info({ job_id: jobId, charged: result.charged }, 'hold settled');
    }
    return result;
  }

  /** The job ended uncharged (or will never run): give its hold back. */
  async released(jobId: string, reason: ReleaseReason): Promise<ReleaseResult> {
    const result = await this.deps.credits.release(jobId, reason);
    if (result.status === 'released') this.deps.logger.info({ job_id: jobId, amount: result.amount, reason }, 'hold released');
    return result;
  }

  /** Applies a fate decided by holdFate (keep does nothing). */
  async apply(jobId: string, fate: HoldFate): Promise<SettleResult | ReleaseResult | undefined> {
    if (fate.action === 'settle') return this.succeeded(jobId, fate.filtered);
    if (fate.action === 'release') return this.released(jobId, fate.reason);
    return undefined;
  }

  /**
   * The reconciler: closes the open holds older than `graceMs` on what `fate` (someone who can see the
   * job) decides, for the ends nobody reported (the process that saw the job end died first).
   */
  async reconcile(
    fate: (hold: Hold) => Promise<HoldFate>,
    opts: { graceMs?: number; limit?: number } = {},
  ): Promise<{ checked: number; settled: string[]; released: string[] }> {
    const now = this.deps.now?.() ?? Date.now();
    const holds = await this.deps.credits.openHolds({ olderThan: now - (opts.graceMs ?? 5 * 60_000), limit: opts.limit });
    const settled: string[] = [];
    const released: string[] = [];
    for (const hold of holds) {
      const result = await this.apply(hold.job_id, await fate(hold));
      if (result?.status === 'settled') settled.push(hold.job_id);
      if (result?.status === 'released') released.push(hold.job_id);
    }
    return { checked: holds.length, settled, released };
  }
}
