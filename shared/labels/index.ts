export * from './validation.js';
export * from './selector.js';
