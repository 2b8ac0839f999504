export { startWorker, type RunningWorker } from './worker';
export { parseWorkerConfig, loadWorkerConfig, type WorkerConfig, ConfigError } from './config';
export { createLogger } from './logger';
export { HANDLERS, JobFailure, type JobHandlers } from './handlers';
