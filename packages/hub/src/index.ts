export * from './names';
export * from './pull';
