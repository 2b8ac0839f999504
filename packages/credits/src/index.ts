export * from './amounts';
export * from './prices';
export * from './keys';
export * from './credits.service';
export * from './idempotency';
export * from './rate-limit';
