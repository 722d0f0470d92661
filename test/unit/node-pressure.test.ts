import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fsUsage, memoryAvailableBytes, pressureConditions } from '../../agent/node/pressure.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

function condition(list: ReturnType<typeof pressureConditions>, type: string) {
  return list.find((c) => c.type === type)!;
}

describe('node pressure conditions', () => {
  it('reads MemAvailable from /proc/meminfo text', () => {
    expect(memoryAvailableBytes('MemTotal:  1000 kB\nMemAvailable:     204800 kB\n')).toBe(200 * MiB);
    expect(memoryAvailableBytes('MemTotal: 1000 kB\n')).toBeUndefined();
  });

  it('reports MemoryPressure below the kubelet default of 100Mi available', () => {
    expect(condition(pressureConditions(99 * MiB, []), 'MemoryPressure')).toMatchObject({ status: 'True', reason: 'NodeHasInsufficientMemory' });
    expect(condition(pressureConditions(101 * MiB, []), 'MemoryPressure')).toMatchObject({ status: 'False', reason: 'NodeHasSufficientMemory' });
    expect(condition(pressureConditions(undefined, []), 'MemoryPressure').status).toBe('Unknown');
  });

  it('reports DiskPressure when the fullest file system has under 10% free, naming it', () => {
    const roomy = { path: '/var/lib/flotilla', sizeBytes: 100 * GiB, availableBytes: 50 * GiB };
    const full = { path: '/var/lib/docker', sizeBytes: 100 * GiB, availableBytes: 9 * GiB };
    const c = condition(pressureConditions(GiB, [roomy, full]), 'DiskPressure');
    expect(c).toMatchObject({ status: 'True', reason: 'NodeHasDiskPressure' });
    expect(c.message).toContain('/var/lib/docker');
    expect(condition(pressureConditions(GiB, [roomy]), 'DiskPressure').status).toBe('False');
    expect(condition(pressureConditions(GiB, [undefined]), 'DiskPressure').status).toBe('Unknown');
  });

  it('measures a real file system, and nothing for a path that does not exist', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flt-fs-'));
    try {
      const usage = fsUsage(dir)!;
      expect(usage.sizeBytes).toBeGreaterThan(0);
      expect(usage.availableBytes).toBeLessThanOrEqual(usage.sizeBytes);
      expect(fsUsage(join(dir, 'missing'))).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
