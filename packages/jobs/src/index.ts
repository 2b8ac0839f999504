export * from './records';
export * from './engine-queues';
export * from './job-view';
export * from './charge';
export * from './job-events';
