export * from './amounts';
export * from './prices';
