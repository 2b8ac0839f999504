/**
 * The worker's Prometheus metrics (prom-client), served at /metrics on its health port: job durations
 * and queue waits per engine, seconds per denoising step, jobs per batch, jobs by outcome, engine loads and unloads, credits settled, and the
 * process's own (CPU, memory, event loop). One registry per worker, so several in one process (tests)
 * never clash.
 */
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly jobDuration = new Histogram({
    name: 'sdq_job_duration_seconds',
    help: 'Time a worker spent running a job, by engine, kind and outcome',
    labelNames: ['engine', 'kind', 'outcome'],
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: 'sdq_job_queue_wait_seconds',
    help: 'Time a job waited in its queue before a worker started it, by engine',
    labelNames: ['engine'],
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900],
    registers: [this.registry],
  });
  readonly stepSeconds = new Histogram({
    name: 'sdq_denoising_step_seconds',
    help: 'Seconds per denoising step (model call), by engine',
    labelNames: ['engine'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly batchJobs = new Histogram({
    name: 'sdq_worker_batch_jobs',
    help: 'Jobs per denoising batch, by engine (1 = run alone; WORKER_BATCH_SIZE)',
    labelNames: ['engine'],
    buckets: [1, 2, 3, 4, 6, 8, 12, 16, 32, 64],
    registers: [this.registry],
  });
  readonly jobs = new Counter({ name: 'sdq_worker_jobs_total', help: 'Jobs this worker ran, by engine and outcome', labelNames: ['engine', 'outcome'], registers: [this.registry] });
  readonly engineLoads = new Counter({ name: 'sdq_worker_engine_loads_total', help: 'Engines this worker loaded, by engine and why (preload, job, added)', labelNames: ['engine', 'reason'], registers: [this.registry] });
  readonly engineUnloads = new Counter({ name: 'sdq_worker_engine_unloads_total', help: 'Engines this worker unloaded, by engine and why (evicted, removed)', labelNames: ['engine', 'reason'], registers: [this.registry] });
  readonly engineLoadSeconds = new Histogram({
    name: 'sdq_worker_engine_load_seconds',
    help: 'Seconds to load an engine (its graphs, and its memory model measured), by engine',
    labelNames: ['engine'],
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });
  readonly creditsSettled = new Counter({ name: 'sdq_credits_settled_total', help: 'Credits charged for jobs this worker completed', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'sdq_worker_' });
  }
}
