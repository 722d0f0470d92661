import { readFileSync, statfsSync } from 'node:fs';

/**
 * DiskPressure and MemoryPressure, with the kubelet's default hard-eviction thresholds:
 * memory.available < 100Mi, nodefs.available < 10% (here: the file systems of the agent's state
 * directory and of the engine's data root, whichever is fuller).
 */
export const MEMORY_AVAILABLE_MIN_BYTES = 100 * 1024 * 1024;
export const DISK_AVAILABLE_MIN_RATIO = 0.1;

export interface PressureCondition {
  type: 'DiskPressure' | 'MemoryPressure';
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

export interface FsUsage {
  path: string;
  sizeBytes: number;
  availableBytes: number;
}

/** MemAvailable from /proc/meminfo, in bytes; undefined where the kernel does not say. */
export function memoryAvailableBytes(meminfo = readText('/proc/meminfo')): number | undefined {
  const kib = meminfo ? /^MemAvailable:\s+(\d+) kB/m.exec(meminfo)?.[1] : undefined;
  return kib === undefined ? undefined : Number(kib) * 1024;
}

export function fsUsage(path: string): FsUsage | undefined {
  try {
    const s = statfsSync(path);
    return { path, sizeBytes: s.blocks * s.bsize, availableBytes: s.bavail * s.bsize };
  } catch {
    return undefined;
  }
}

export function pressureConditions(memAvailable: number | undefined, disks: readonly (FsUsage | undefined)[]): PressureCondition[] {
  const out: PressureCondition[] = [];
  // Messages carry figures only under pressure: a status is re-sent only when it changes.
  if (memAvailable === undefined) out.push({ type: 'MemoryPressure', status: 'Unknown', reason: 'NodeStatusUnknown', message: 'available memory is not known' });
  else if (memAvailable < MEMORY_AVAILABLE_MIN_BYTES) {
    out.push({ type: 'MemoryPressure', status: 'True', reason: 'NodeHasInsufficientMemory', message: `${mib(memAvailable)} MiB available, below ${mib(MEMORY_AVAILABLE_MIN_BYTES)} MiB` });
  } else out.push({ type: 'MemoryPressure', status: 'False', reason: 'NodeHasSufficientMemory', message: 'enough memory available' });
  const known = disks.filter((d): d is FsUsage => d !== undefined && d.sizeBytes > 0);
  if (known.length === 0) out.push({ type: 'DiskPressure', status: 'Unknown', reason: 'NodeStatusUnknown', message: 'disk usage is not known' });
  else {
    const worst = known.reduce((a, b) => (b.availableBytes / b.sizeBytes < a.availableBytes / a.sizeBytes ? b : a));
    const ratio = worst.availableBytes / worst.sizeBytes;
    const detail = `${(ratio * 100).toFixed(1)}% free on the file system of ${worst.path}`;
    if (ratio < DISK_AVAILABLE_MIN_RATIO) out.push({ type: 'DiskPressure', status: 'True', reason: 'NodeHasDiskPressure', message: `${detail}, below ${DISK_AVAILABLE_MIN_RATIO * 100}%` });
    else out.push({ type: 'DiskPressure', status: 'False', reason: 'NodeHasNoDiskPressure', message: 'enough disk space' });
  }
  return out;
}

function mib(bytes: number): number {
  return Math.round(bytes / 1048576);
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}
