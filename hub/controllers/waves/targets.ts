import { matches, selectorFromMap } from '../../../shared/labels/selector.js';
import type { PodTemplate } from '../../../shared/resources/daemonset.js';
import type { PlanNode, PlannedWave } from '../../../shared/rollout/plan.js';
import type { WaveNode } from './view.js';

/**
 * The devices a DaemonSet's template targets: every node its nodeSelector matches, Ready or not
 * (membership of a wave does not depend on who is online at the start), sorted by name.
 */
export function targetsOf(template: PodTemplate, nodes: ReadonlyMap<string, WaveNode>): PlanNode[] {
  const selector = selectorFromMap(template.spec.nodeSelector ?? {});
  const targets: PlanNode[] = [];
  for (const [name, node] of nodes) if (matches(selector, node.labels)) targets.push({ name, uid: node.uid, labels: node.labels });
  return targets.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The wave index of each planned device. */
export function waveIndexOf(waves: readonly PlannedWave[]): Map<string, number> {
  const index = new Map<string, number>();
  waves.forEach((w, i) => {
    for (const n of w.nodes) index.set(n, i);
  });
  return index;
}
