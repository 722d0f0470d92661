import { scaledValue } from '../../../shared/resources/workload.js';
import type { WavesStrategy } from '../../../shared/resources/waves.js';
import type { WaveDevice } from './gate.js';

/** How many devices of a wave may be updating at once: maxUnavailable of the wave's size, rounded down, at least 1. */
export function waveUnavailable(strategy: WavesStrategy, waveSize: number): number {
  return Math.max(1, scaledValue(strategy.maxUnavailable, waveSize, false, '25%'));
}

export interface ReleasePlan {
  nodes: string[];
  /** When the rate limit lets more go (ms), when it is what holds them back. */
  nextAt?: number;
}

const MINUTE_MS = 60_000;

/**
 * Which devices of the wave in progress to release now, in the wave's order: those `pending`
 * (online, not released), as long as fewer than maxUnavailable of the wave are updating (released,
 * not yet Ready for minReadySeconds: updating, locked, or gone offline) and fewer than
 * maxPerMinute devices of the rollout were released in the last minute (`recentReleases`: the
 * release times, ms, of the whole rollout). Pure.
 */
export function planRelease(devices: WaveDevice[], strategy: WavesStrategy, recentReleases: number[], now: number): ReleasePlan {
  const unavailable = devices.filter((d) => d.a.released && (d.a.state === 'updating' || d.a.state === 'locked' || d.a.state === 'offline')).length;
  let slots = waveUnavailable(strategy, devices.length) - unavailable;
  let nextAt: number | undefined;
  if (strategy.maxPerMinute !== undefined) {
    const window = recentReleases.filter((t) => t > now - MINUTE_MS).sort((a, b) => a - b);
    const rateSlots = strategy.maxPerMinute - window.length;
    if (rateSlots < slots) {
      slots = rateSlots;
      // The oldest release in the window leaves it first.
      if (window.length > 0) nextAt = window[0]! + MINUTE_MS;
    }
  }
  const nodes: string[] = [];
  for (const d of devices) {
    if (nodes.length >= slots) break;
    if (d.a.state === 'pending') nodes.push(d.node);
  }
  const held = devices.some((d) => d.a.state === 'pending') && nodes.length < devices.filter((d) => d.a.state === 'pending').length;
  return { nodes, ...(held && nextAt !== undefined ? { nextAt } : {}) };
}
