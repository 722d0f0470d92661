import { createHash } from 'node:crypto';
import { matches, parseSelector } from '../labels/selector.js';
import { durationSeconds, type Wave } from '../resources/waves.js';

/** What the planner needs of a targeted device. */
export interface PlanNode {
  name: string;
  uid: string;
  labels: Record<string, string>;
}

/** One wave as planned: its devices, and what happens after it passes its gate. */
export interface PlannedWave {
  name: string;
  nodes: string[];
  /** For a Deployment (whose waves count pods, not devices): how many of its pods the wave moves; `nodes` is then empty. */
  replicas?: number;
  /** Seconds to wait after the wave passed; 'resume' to wait for `rollout resume`; absent: go on. */
  pause?: number | 'resume';
}

/** A device's place in the order of every rollout: a stable hash of its uid, so re-runs pick the same canaries. */
export function nodeRank(uid: string): string {
  return createHash('sha256').update(uid).digest('hex');
}

export function pauseOf(w: Wave): PlannedWave['pause'] {
  if (w.pause === undefined) return undefined;
  if (typeof w.pause === 'string') return durationSeconds(w.pause);
  return w.pause.duration !== undefined ? durationSeconds(w.pause.duration) : 'resume';
}

/**
 * Which devices fall in which wave, decided once per rollout: the targets in the order of their
 * rank, each wave taking what its selector matches among those no earlier wave took, limited by
 * its percent (of those, rounded up) or count. Devices no wave took form a last wave, `rest`, so
 * that a rollout always moves every target. Pure: `rollout status --dry-run` and the hub call it
 * with the same targets and get the same waves.
 */
export function planWaves(waves: Wave[], targets: PlanNode[]): PlannedWave[] {
  let remaining = [...targets].map((n) => ({ n, rank: nodeRank(n.uid) })).sort((a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : a.n.name < b.n.name ? -1 : 1));
  const planned: PlannedWave[] = [];
  const take = (name: string, chosen: Set<string>, pause: PlannedWave['pause']) => {
    planned.push({ name, nodes: remaining.filter((r) => chosen.has(r.n.name)).map((r) => r.n.name), ...(pause !== undefined ? { pause } : {}) });
    remaining = remaining.filter((r) => !chosen.has(r.n.name));
  };
  waves.forEach((w, i) => {
    const name = w.name ?? `wave-${i + 1}`;
    const pause = pauseOf(w);
    if (w.exponential) {
      let size = w.exponential.start;
      let step = 1;
      do {
        take(`${name}-${step}`, new Set(remaining.slice(0, Math.ceil(size)).map((r) => r.n.name)), pause);
        size *= w.exponential.factor;
        step++;
      } while (remaining.length > 0);
      return;
    }
    const selector = w.selector !== undefined ? parseSelector(w.selector) : undefined;
    const eligible = selector ? remaining.filter((r) => matches(selector, r.n.labels)) : remaining;
    const size = w.percent !== undefined ? Math.ceil((w.percent * eligible.length) / 100) : w.count !== undefined ? Math.min(w.count, eligible.length) : eligible.length;
    take(name, new Set(eligible.slice(0, size).map((r) => r.n.name)), pause);
  });
  if (remaining.length > 0) take('rest', new Set(remaining.map((r) => r.n.name)), undefined);
  return planned;
}
