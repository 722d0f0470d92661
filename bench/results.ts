import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { REPO } from '../test/harness/processes.js';

/**
 * The shape every benchmark writes to bench/results/<name>.json (docs/ARCHITECTURE.md, 'Performance targets'): the
 * machine, the parameters, the figures, the floor measured in the same run where one exists,
 * and the figures that stand against a target of the design. bench/summary.ts turns the
 * targets of every file into bench/RESULTS.md.
 */
export const RESULTS_DIR = join(REPO, 'bench', 'results');

export interface TargetFigure {
  /** What is measured, in the words of the design's table. */
  what: string;
  measured: number;
  unit: string;
  must?: number;
  aim?: number;
  /** Whether a smaller figure is the better one (latency, memory) or a larger (throughput). */
  better: 'lower' | 'higher';
}

export interface BenchResult {
  benchmark: string;
  parameters: Record<string, unknown>;
  figures: Record<string, unknown>;
  floor?: Record<string, unknown>;
  ratios?: Record<string, number>;
  targets?: Record<string, TargetFigure>;
}

export interface MachineFacts {
  cpus: number;
  cpuModel: string | undefined;
  memoryBytes: number;
  node: string;
  /** The 1-minute load average when the run ended: other work on the machine shows here. */
  loadAverage1m: number;
}

export function machineFacts(): MachineFacts {
  return { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryBytes: totalmem(), node: process.version, loadAverage1m: round(loadavg()[0] ?? 0, 2) };
}

/** Writes bench/results/<benchmark>.json with the date and the machine's facts. */
export function writeResult(result: BenchResult): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${result.benchmark}.json`);
  const { benchmark, ...rest } = result;
  writeFileSync(file, `${JSON.stringify({ benchmark, date: new Date().toISOString(), machine: machineFacts(), ...rest }, null, 2)}\n`);
  return file;
}

export function round(n: number, digits = 1): number {
  return Math.round(n * 10 ** digits) / 10 ** digits;
}

/** The value at quantile q (0..1) of the numbers, nearest rank. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** A process's resident memory and CPU time so far, from /proc. */
export function procStat(pid: number): { rssBytes: number; cpuSeconds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  // utime and stime are fields 14 and 15 of /proc/PID/stat (after the parenthesised command).
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rssBytes: rssKiB * 1024, cpuSeconds: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS };
}

/**
 * Samples a process's RSS every `everyMs` until stopped: its peak and its last value, and the
 * CPU it used meanwhile.
 */
export function sampleProcess(pid: number, everyMs = 250): { stop: () => { peakRssBytes: number; lastRssBytes: number; cpuSeconds: number; wallSeconds: number } } {
  const first = procStat(pid);
  const startedAt = Date.now();
  let peak = first.rssBytes;
  let last = first.rssBytes;
  const timer = setInterval(() => {
    try {
      last = procStat(pid).rssBytes;
      peak = Math.max(peak, last);
    } catch {
      // The process is gone; keep what was seen.
    }
  }, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      const end = procStat(pid);
      peak = Math.max(peak, end.rssBytes);
      return { peakRssBytes: peak, lastRssBytes: end.rssBytes, cpuSeconds: end.cpuSeconds - first.cpuSeconds, wallSeconds: (Date.now() - startedAt) / 1000 };
    },
  };
}

export const MB = 1e6;
export const MiB = 1024 * 1024;

/** Logs a fleet's progress every few seconds, so that a long run shows where it is. */
export function progressLog(total: number, everyMs = 5_000): (connected: number, joined: number) => void {
  let last = 0;
  return (connected, joined) => {
    if (Date.now() - last < everyMs) return;
    last = Date.now();
    console.log(`  ${joined}/${total} joined, ${connected}/${total} connected`);
  };
}
