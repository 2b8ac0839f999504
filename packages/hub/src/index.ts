export * from './names';
export * from './pull';
export * from './remove';
