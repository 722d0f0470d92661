import type { DeploymentSpec } from '../../../shared/resources/deployment.js';
import type { PodTemplate } from '../../../shared/resources/daemonset.js';
import { ROLLOUT_KIND, type RolloutStatus } from '../../../shared/resources/rollout.js';
import { WAVES, wavesStrategy, type WavesStrategy } from '../../../shared/resources/waves.js';
import type { PlannedWave } from '../../../shared/rollout/plan.js';
import type { NewObject, StoredObject } from '../../store/types.js';
import { rolloutSpecFor } from './records.js';

/** The label that ties a Rollout record to its Deployment (records are listed by it). */
export const ROLLOUT_DEPLOYMENT_LABEL = 'flotilla.io/deployment';

/**
 * A Deployment's record is named `deployment.<name>.<revision>`: a DaemonSet's record ends in
 * `-<revision>`, so the two never take each other's name in a namespace.
 */
export function deploymentRolloutName(deployment: string, revision: number): string {
  return `deployment.${deployment}.${revision}`;
}

/** The Waves strategy of a Deployment, with its defaults; undefined for another type. */
export function deploymentWavesStrategy(spec: DeploymentSpec): WavesStrategy | undefined {
  const s = spec.strategy;
  if (s?.type !== WAVES) return undefined;
  return wavesStrategy(s);
}

export interface NewDeploymentRollout {
  d: StoredObject;
  revision: number;
  from?: { revision: number; hash: string; template: PodTemplate };
  to: { hash: string; template: PodTemplate };
  strategy: WavesStrategy;
  /** Planned waves (pod counts); none when nothing is rolled from. */
  waves: PlannedWave[];
  now: number;
  /** Why it is Succeeded at once, when it is. */
  doneAtOnce?: string;
}

/** The record of a Deployment's new rollout, written once when it starts. */
export function newDeploymentRolloutRecord(r: NewDeploymentRollout): NewObject {
  const now = new Date(r.now).toISOString();
  const spec = rolloutSpecFor('Deployment', r.d, r);
  const status: RolloutStatus =
    r.doneAtOnce !== undefined
      ? { phase: 'Succeeded', wave: 0, waves: [], failedNodes: [], startedAt: now, finishedAt: now, message: r.doneAtOnce }
      : {
          phase: 'Progressing',
          wave: 0,
          waves: r.waves.map((w, i) => ({ name: w.name, phase: i === 0 ? 'Progressing' : 'Pending', ...(i === 0 ? { startedAt: now } : {}), total: w.replicas ?? 0, released: 0, updated: 0, ready: 0, failed: 0, waiting: w.replicas ?? 0, skipped: 0 })),
          failedNodes: [],
          startedAt: now,
        };
  return {
    apiVersion: 'flotilla/v1',
    kind: ROLLOUT_KIND,
    metadata: {
      name: deploymentRolloutName(r.d.metadata.name, r.revision),
      namespace: r.d.metadata.namespace ?? 'default',
      labels: { [ROLLOUT_DEPLOYMENT_LABEL]: r.d.metadata.name },
      ownerReferences: [{ apiVersion: 'flotilla/v1', kind: 'Deployment', name: r.d.metadata.name, uid: r.d.metadata.uid, controller: true }],
    },
    spec,
    status,
  };
}
