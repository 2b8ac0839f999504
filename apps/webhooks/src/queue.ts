/**
 * The delivery process's one BullMQ module: job reads on any engine's queue (@sdq/jobs' EngineQueues, as
 * the API has them, each queue opened when a job of its engine is first read: the job events come from
 * the job event stream, not from per-engine listeners), and the webhook delivery queue that
 * @sdq/webhooks adds to.
 */
import { Queue } from 'bullmq';
import { EngineQueues, type EngineQueuesOptions } from '@sdq/jobs';
import { WEBHOOK_QUEUE } from '@sdq/webhooks';

export class DeliveryQueues extends EngineQueues {
  readonly deliveries: Queue;

  constructor(opts: Omit<EngineQueuesOptions, 'engines'>) {
    super({ ...opts, engines: [] });
    this.deliveries = new Queue(this.queueName(WEBHOOK_QUEUE), { prefix: opts.prefix, connection: this.failFastConnection() });
    this.deliveries.on('error', (err) => opts.logger.debug({ err: err.message }, 'webhook queue connection error'));
  }

  /** Any engine's queue: a record names its engine, which needs no listener to be read (queueNameForEngine refuses an id that cannot name one). */
  protected override queue(engine: string): Queue {
    return this.openQueue(engine);
  }

  async close(): Promise<void> {
    await this.deliveries.close();
    await super.close();
  }
}
