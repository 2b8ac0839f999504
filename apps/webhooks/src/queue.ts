/**
 * The delivery process's one BullMQ module: every registered engine's events and job reads (@sdq/jobs'
 * EngineQueues, as the API has them), and the webhook delivery queue that @sdq/webhooks adds to.
 */
import { Queue } from 'bullmq';
import { EngineQueues, type EngineQueuesOptions } from '@sdq/jobs';
import { WEBHOOK_QUEUE } from '@sdq/webhooks';

export class DeliveryQueues extends EngineQueues {
  readonly deliveries: Queue;

  constructor(opts: EngineQueuesOptions) {
    super(opts);
    this.deliveries = new Queue(this.queueName(WEBHOOK_QUEUE), { prefix: opts.prefix, connection: this.failFastConnection() });
    this.deliveries.on('error', (err) => opts.logger.debug({ err: err.message }, 'webhook queue connection error'));
  }

  /** Watches the engines registered since the last look; resolves once their event streams are connected. */
  async refreshEngines(): Promise<string[]> {
    const added = this.watch(await this.knownEngines());
    if (added.length) await this.eventsReady();
    return added;
  }

  async close(): Promise<void> {
    await this.deliveries.close();
    await super.close();
  }
}
