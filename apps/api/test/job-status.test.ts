// A job's status from its queue snapshot: a transition BullMQ is half-way through is not an end.
import { describe, expect, it } from 'vitest';
import { JobsService } from '../src/jobs.service';
import type { QueueJobSnapshot } from '../src/queue';
import type { JobRecord } from '../src/store';

const jobs = new JobsService({} as never);
const record = { id: 'j', account_id: 'a', engine: 'e', kind: 'text-to-image', created_at: 0, seq: 1 } as JobRecord;
const snapshot = (state: QueueJobSnapshot['state']) => ({ state, progress: null, result: null }) as unknown as QueueJobSnapshot;

describe('job status', () => {
  it('a job whose hash exists in no state list is still queued (its hold is kept), not failed', () => {
    // Read as failed, the reconciler and the end listener released the hold of a retried job that went on
    // to succeed: 1 job in 1,000 of the soak under load, charged nothing.
    expect(jobs.status(record, snapshot('unknown'))).toBe('queued');
  });
  it('a job gone from its queue is failed, or canceled when it was', () => {
    expect(jobs.status(record, undefined)).toBe('failed');
    expect(jobs.status({ ...record, canceled_at: 1 }, undefined)).toBe('canceled');
  });
  it('maps the states that are', () => {
    expect(jobs.status(record, snapshot('active'))).toBe('running');
    expect(jobs.status(record, snapshot('completed'))).toBe('succeeded');
    expect(jobs.status(record, snapshot('prioritized'))).toBe('queued');
  });
});
