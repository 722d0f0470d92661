import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets the hub's heap grow past what survived the last full collection before it
 * collects again: 1 + HEAP_GROWING_PERCENT / 100. V8's own choice for a busy process is up to
 * about twice the live heap; the hub's live heap at 10,000 devices × 5 pods is about 300 MB, and
 * its resident memory is the heap plus some 150 MB, so the default let it reach 880-950 MB at
 * rest against the design's 600 MB. At 30 % it stays near 575 MB, for more frequent (mostly
 * concurrent) collections.
 */
export const HEAP_GROWING_PERCENT = 30;

/**
 * Sets the heap growing factor for this process unless node was started with one
 * (`--heap-growing-percent` on its command line or in NODE_OPTIONS); true when it set it.
 */
export function limitHeapGrowth(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)].some((a) => /^--heap[-_]growing[-_]percent\b/.test(a));
  if (given) return false;
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  return true;
}
