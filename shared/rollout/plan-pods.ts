import type { Wave } from '../resources/waves.js';
import { pauseOf, type PlannedWave } from './plan.js';

/**
 * The waves of a Deployment's rollout, decided once when it starts: a Deployment's pods are
 * placed by the scheduler, so its waves count pods (replicas), not devices. Each wave takes its
 * percent (rounded up) or count of the pods no earlier wave took, an exponential wave successive
 * waves of start, start×factor, … pods; what no wave took forms a last wave, `rest`. Pure: the
 * preview and the hub call it with the same replicas and get the same waves. Selector waves are
 * refused by validation for Deployments; one that reaches here takes every remaining pod.
 */
export function planPodWaves(waves: Wave[], replicas: number): PlannedWave[] {
  let remaining = replicas;
  const planned: PlannedWave[] = [];
  const take = (name: string, size: number, pause: PlannedWave['pause']) => {
    const n = Math.min(size, remaining);
    planned.push({ name, nodes: [], replicas: n, ...(pause !== undefined ? { pause } : {}) });
    remaining -= n;
  };
  waves.forEach((w, i) => {
    const name = w.name ?? `wave-${i + 1}`;
    const pause = pauseOf(w);
    if (w.exponential) {
      let size = w.exponential.start;
      let step = 1;
      do {
        take(`${name}-${step}`, Math.ceil(size), pause);
        size *= w.exponential.factor;
        step++;
      } while (remaining > 0);
      return;
    }
    take(name, w.percent !== undefined ? Math.ceil((w.percent * remaining) / 100) : (w.count ?? remaining), pause);
  });
  if (remaining > 0) take('rest', remaining, undefined);
  return planned;
}
