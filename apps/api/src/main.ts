/** `npm run start:api`: the API process. */
import { stopWithLauncher } from '@sdq/contracts';
import { startServer } from './app';
import { ConfigError, loadConfig } from './config';
import { createLogger } from './logger';

// first: the launcher may go while this process is still starting
stopWithLauncher();
const config = loadConfig();
const logger = createLogger(config);
// A start-up refusal that is the operator's to fix (an alias naming no engine) is one line, not a stack.
const server = await startServer(config, { logger }).catch((err: unknown) => {
  if (!(err instanceof ConfigError)) throw err;
  console.error(err.message);
  process.exit(1);
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    logger.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  });
}
