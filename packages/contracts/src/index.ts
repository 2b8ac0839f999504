export * from './queues';
export * from './errors';
export * from './requests';
export * from './jobs';
export * from './storage';
export * from './env';
export * from './credits';
export * from './webhooks';
