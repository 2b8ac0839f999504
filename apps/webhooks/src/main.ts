/** `npm run start:webhooks`: the webhook delivery process (delivery-process.ts). */
import { stopWithLauncher } from '@sdq/contracts';
import { ConfigError, loadConfig } from './config';
import { startDeliveryProcess } from './delivery-process';
import { createLogger } from './logger';

// first: the launcher may go while this process is still starting
stopWithLauncher();
const config = loadConfig();
const logger = createLogger(config);
// A refusal that is the operator's to fix (a port in use) is one line, not a stack.
const running = await startDeliveryProcess(config, logger).catch((err: unknown) => {
  if (!(err instanceof ConfigError)) throw err;
  console.error(err.message);
  process.exit(1);
});

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
