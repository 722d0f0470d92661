import { describe, expect, it } from 'vitest';
import { HEAP_GROWING_PERCENT, limitHeapGrowth } from '../../hub/heap.js';

// The hub limits how far V8 lets its heap grow past the live heap (hub/heap.ts), unless the
// operator started node with a factor of their own.

describe('limitHeapGrowth', () => {
  it('leaves a factor given on the command line or in NODE_OPTIONS alone', () => {
    expect(limitHeapGrowth(['--heap-growing-percent=50'], '')).toBe(false);
    expect(limitHeapGrowth([], '--max-old-space-size=4096 --heap_growing_percent=80')).toBe(false);
  });

  it('sets its own factor otherwise', () => {
    expect(HEAP_GROWING_PERCENT).toBeGreaterThan(0);
    expect(limitHeapGrowth([], '--max-old-space-size=4096')).toBe(true);
  });
});
