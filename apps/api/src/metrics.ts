/**
 * The API's Prometheus metrics (prom-client) at GET /metrics: HTTP requests by route and status, jobs
 * by engine queue and state with the age of the oldest waiting one (read from BullMQ at each scrape),
 * credits reserved, and the process's own. The delivery process serves its deliveries by outcome on its
 * health port. One registry per app, so several in one process (tests) never clash.
 */
import type { RequestHandler } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { JobQueue } from './queue';

/** The BullMQ states counted per engine queue. */
const STATES = ['waiting', 'prioritized', 'active', 'delayed', 'completed', 'failed'] as const;

export class ApiMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'sdq_http_requests_total', help: 'HTTP requests by route template, method and status', labelNames: ['route', 'method', 'status'], registers: [this.registry] });
  readonly latency = new Histogram({
    name: 'sdq_http_request_duration_seconds',
    help: 'HTTP request duration by route template and method',
    labelNames: ['route', 'method'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120],
    registers: [this.registry],
  });
  readonly creditsReserved = new Counter({ name: 'sdq_credits_reserved_total', help: 'Credits held for accepted jobs', registers: [this.registry] });

  constructor(queue: JobQueue | undefined, engines: () => string[]) {
    collectDefaultMetrics({ register: this.registry, prefix: 'sdq_api_' });
    new Gauge({
      name: 'sdq_queue_jobs',
      help: 'Jobs in each engine queue by BullMQ state (waiting + prioritized is what autoscaling watches)',
      labelNames: ['engine', 'state'],
      registers: [this.registry],
      async collect() {
        if (!queue) return;
        for (const engine of engines()) {
          const counts = await queue.counts(engine, [...STATES]);
          for (const state of STATES) this.set({ engine, state }, counts[state] ?? 0);
        }
      },
    });
    new Gauge({
      name: 'sdq_queue_oldest_waiting_seconds',
      help: 'Age of the oldest job waiting (or prioritized) in each engine queue; 0 when none waits',
      labelNames: ['engine'],
      registers: [this.registry],
      async collect() {
        if (!queue) return;
        for (const engine of engines()) {
          const oldest = await queue.oldestWaiting(engine);
          this.set({ engine }, oldest === undefined ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
        }
      },
    });
  }

  /** Counts every request under its route template (`/v1/jobs/{id}`, never the id itself). */
  middleware(): RequestHandler {
    return (req, res, next) => {
      const stop = this.latency.startTimer();
      res.once('finish', () => {
        const template = req.route?.path ? `${req.baseUrl}${String(req.route.path)}`.replace(/:(\w+)/g, '{$1}') : 'unmatched';
        const labels = { route: template, method: req.method };
        stop(labels);
        this.requests.inc({ ...labels, status: String(res.statusCode) });
      });
      next();
    };
  }
}
