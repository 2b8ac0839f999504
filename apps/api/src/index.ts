export { createApp, startServer, loadEngines, type AppDeps, type RunningServer } from './app';
export { parseConfig, loadConfig, type Config } from './config';
