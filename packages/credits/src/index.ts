export * from './amounts';
export * from './prices';
export * from './keys';
export * from './credits.service';
