/**
 * `npm run start:worker`: one worker process. SIGTERM (or SIGINT) stops taking jobs, lets the
 * running one finish within SHUTDOWN_GRACE_MS, and exits 0.
 */
import { stopWithLauncher } from '@sdq/contracts';
import { loadWorkerConfig } from './config';
import { createLogger } from './logger';
import { startWorker } from './worker';

// first: the launcher may go while this process is still starting
stopWithLauncher();
const config = loadWorkerConfig();
const logger = createLogger(config);

let worker: Awaited<ReturnType<typeof startWorker>>;
try {
  worker = await startWorker(config, logger);
} catch (err) {
  logger.fatal({ err }, `worker could not start: ${(err as Error).message}`);
  process.exit(1);
}

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, grace_ms: config.shutdownGraceMs }, 'stopping: no new jobs, finishing the running ones');
    worker.close().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, 'unclean stop');
        process.exit(1);
      },
    );
  });
}
