/** `npm run start:webhooks`: the webhook delivery process (webhooks-process.ts). */
import { loadConfig } from './config';
import { createLogger } from './logger';
import { startWebhookProcess } from './webhooks-process';

const config = loadConfig();
const logger = createLogger(config, undefined, 'sdq-webhooks');
const running = await startWebhookProcess(config, logger);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: finishing the deliveries in flight');
    running.close().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  });
}
