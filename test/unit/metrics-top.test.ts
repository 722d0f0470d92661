import { describe, expect, it } from 'vitest';
import { cpuText, memoryText, sparkline } from '../../hub/cli/top.js';

// What `flotilla top` and `describe` print of usage: kubectl's units, and a sparkline of the last hour.

describe('usage as printed', () => {
  it('writes CPU in millicores and memory in Mi, as kubectl top does', () => {
    expect(cpuText(0.25)).toBe('250m');
    expect(cpuText(1.9996)).toBe('2000m');
    expect(cpuText(undefined)).toBe('<unknown>');
    expect(memoryText(40 * 1048576 + 1000)).toBe('40Mi');
  });

  it('draws a sparkline between the values\' min and max', () => {
    expect(sparkline([0, 1, 2, 3, 4, 5, 6, 7])).toBe('▁▂▃▄▅▆▇█');
    expect(sparkline([5, 5, 5])).toBe('▁▁▁');
    expect(sparkline([10, 0])).toBe('█▁');
    expect(sparkline([])).toBe('');
  });
});
