import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ResourceService } from '../../hub/api/resources.js';
import { CliError } from '../../hub/cli/errors.js';
import { daemonSetProgress, deploymentProgress, historyTable, rolloutCommand, sortedRevisions, undoTarget, type DaemonSetObj, type DeploymentObj, type ReplicaSetObj } from '../../hub/cli/rollout.js';
import { scaleCommand } from '../../hub/cli/scale.js';
import { DeploymentController } from '../../hub/controllers/deployment.js';
import { ReplicaSetController } from '../../hub/controllers/replicaset.js';
import type { StoredObject } from '../../hub/store/types.js';
import type { DeploymentSpec } from '../../shared/resources/deployment.js';
import type { PodSpec, PodStatus } from '../../shared/resources/pod.js';
import { createNode, testHub, type TestHub } from './builders.js';

const V1 = 'flotilla-test/busybox:1';
const V2 = 'flotilla-test/busybox:2';

let hub: TestHub;
let resources: ResourceService;
let deployments: DeploymentController;
let replicaSets: ReplicaSetController;

beforeEach(() => {
  hub = testHub();
  const ctx = { store: hub.store, events: hub.events, log: hub.log };
  resources = new ResourceService(hub.store, hub.log);
  deployments = new DeploymentController(ctx);
  replicaSets = new ReplicaSetController(ctx);
  createNode(hub.store, { name: 'edge-1' });
  hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Namespace', metadata: { name: 'default' }, spec: {} });
});
afterEach(() => {
  deployments.stop();
  replicaSets.stop();
  hub.db.close();
});

function manifest(image: string, cause: string): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', annotations: { 'kubernetes.io/change-cause': cause } },
    spec: { replicas: 2, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image }] } } },
  };
}

/** Both controllers until quiet, every pod bound and Ready: each rollout runs to its end. */
function rollOut(): void {
  for (let i = 0; i < 100; i++) {
    const before = hub.store.currentResourceVersion();
    deployments.reconcile('default/web');
    for (const rs of hub.store.list('ReplicaSet').items) replicaSets.reconcile(`default/${rs.metadata.name}`);
    for (const pod of hub.store.list('Pod').items) {
      if ((pod.status as PodStatus).conditions) continue;
      hub.store.update({ ...pod, spec: { ...(pod.spec as PodSpec), nodeName: 'edge-1' } });
      hub.store.updateStatus('Pod', 'default', pod.metadata.name, { phase: 'Running', conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: new Date().toISOString() }] } satisfies PodStatus);
    }
    if (hub.store.currentResourceVersion() === before) return;
  }
  throw new Error('did not settle');
}

function apply(image: string, cause: string): void {
  resources.apply([{ source: 'test', value: manifest(image, cause) }]);
  rollOut();
}

function current(): { d: DeploymentObj; revisions: ReplicaSetObj[] } {
  const d = hub.store.get('Deployment', 'default', 'web') as unknown as DeploymentObj;
  return { d, revisions: sortedRevisions(d, hub.store.list('ReplicaSet').items as unknown as ReplicaSetObj[]) };
}

const images = () => hub.store.list('Pod').items.map((p: StoredObject) => (p.spec as PodSpec).containers[0]!.image);

describe('rollout history and undo', () => {
  it('lists each revision with its change cause', () => {
    apply(V1, 'run busybox 1');
    apply(V2, 'move to busybox 2');
    expect(historyTable(current().revisions)).toBe('REVISION   CHANGE-CAUSE\n1          run busybox 1\n2          move to busybox 2');
  });

  it('undo writes the previous template and change cause back, and the controllers roll it out as revision 3', () => {
    apply(V1, 'run busybox 1');
    apply(V2, 'move to busybox 2');
    const { d, revisions } = current();
    const target = undoTarget(d, revisions, 0);
    expect(target.revision).toBe(1);
    expect((target.body!.spec as DeploymentSpec).template.spec.containers[0]!.image).toBe(V1);
    resources.replace('deployments', 'default', 'web', { source: 'undo', value: target.body });
    rollOut();
    expect(images()).toEqual([V1, V1]);
    expect(historyTable(current().revisions)).toBe('REVISION   CHANGE-CAUSE\n2          move to busybox 2\n3          run busybox 1');
    expect(current().d.metadata.annotations?.['kubernetes.io/change-cause']).toBe('run busybox 1');
  });

  it('undo to the revision that is already current is skipped; an unknown revision, a paused Deployment and a stale one are refused', () => {
    apply(V1, 'one');
    apply(V2, 'two');
    const { d, revisions } = current();
    expect(undoTarget(d, revisions, 2)).toEqual({ revision: 2 });
    expect(() => undoTarget(d, revisions, 9)).toThrow('unable to find the specified revision 9 in history');
    expect(() => undoTarget({ ...d, spec: { ...d.spec, paused: true } }, revisions, 0)).toThrow(/cannot roll back a paused deployment/);
    const target = undoTarget(d, revisions, 1);
    resources.apply([{ source: 'test', value: { ...manifest(V2, 'two'), spec: { ...(manifest(V2, 'two').spec as object), replicas: 3 } } }]);
    // Someone changed the Deployment since it was read: the replace fails rather than undo their change.
    expect(() => resources.replace('deployments', 'default', 'web', { source: 'undo', value: target.body })).toThrow(/^Operation cannot be fulfilled on deployments "web"/);
  });
});

describe('rollout status lines', () => {
  const deployment = (status: DeploymentObj['status'], generation = 1): DeploymentObj => ({
    apiVersion: 'flotilla/v1',
    kind: 'Deployment',
    metadata: { name: 'web', uid: 'u', resourceVersion: '1', generation },
    spec: { replicas: 3, selector: { matchLabels: { app: 'web' } }, template: { spec: { containers: [{ name: 'web', image: V1 }] } } },
    status,
  });

  it("follows kubectl's wording, step by step", () => {
    expect(deploymentProgress(deployment({ observedGeneration: 1 }, 2))).toEqual({ message: 'Waiting for deployment spec update to be observed...', done: false });
    expect(deploymentProgress(deployment({ observedGeneration: 2, updatedReplicas: 1, replicas: 4 }, 2)).message).toBe('Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...');
    expect(deploymentProgress(deployment({ observedGeneration: 1, updatedReplicas: 3, replicas: 4 })).message).toBe('Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...');
    expect(deploymentProgress(deployment({ observedGeneration: 1, updatedReplicas: 3, replicas: 3, availableReplicas: 1 })).message).toBe('Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas are available...');
    expect(deploymentProgress(deployment({ observedGeneration: 1, updatedReplicas: 3, replicas: 3, availableReplicas: 3 }))).toEqual({ message: 'deployment "web" successfully rolled out', done: true });
  });

  it('fails (exit 1) once the progress deadline is exceeded', () => {
    const stuck = deployment({ observedGeneration: 1, updatedReplicas: 1, conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded' }] });
    expect(() => deploymentProgress(stuck)).toThrow(new CliError('deployment "web" exceeded its progress deadline'));
  });

  it('tells desired nodes from updated and available pods for a DaemonSet', () => {
    const ds = (s: Partial<NonNullable<DaemonSetObj['status']>>): DaemonSetObj => ({
      metadata: { name: 'agent', uid: 'u', resourceVersion: '1', generation: 1 },
      spec: { selector: { matchLabels: { app: 'a' } }, template: { spec: { containers: [{ name: 'a', image: V1 }] } } },
      status: { desiredNumberScheduled: 3, currentNumberScheduled: 3, numberReady: 0, updatedNumberScheduled: 3, numberMisscheduled: 0, observedGeneration: 1, ...s },
    });
    expect(daemonSetProgress(ds({ updatedNumberScheduled: 2 })).message).toBe('Waiting for daemon set "agent" rollout to finish: 2 out of 3 new pods have been updated...');
    expect(daemonSetProgress(ds({ numberReady: 1 })).message).toBe('Waiting for daemon set "agent" rollout to finish: 1 of 3 updated pods are available...');
    expect(daemonSetProgress(ds({ numberReady: 3 }))).toEqual({ message: 'daemon set "agent" successfully rolled out', done: true });
  });
});

describe('usage errors (exit 2)', () => {
  const usage = async (run: Promise<void>, message: string) => {
    const err = await run.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(2);
    expect((err as CliError).message).toBe(message);
  };

  it('names what rollout supports for each verb', async () => {
    await usage(rolloutCommand('status', 'pod/web', undefined, {}, () => {}), 'rollout status is not supported for pods (use deployment/NAME or daemonset/NAME)');
    await usage(rolloutCommand('abort', 'replicaset/web', undefined, {}, () => {}), 'rollout abort is not supported for replicasets (use deployment/NAME or daemonset/NAME)');
    await usage(rolloutCommand('history', 'gadget/web', undefined, {}, () => {}), 'rollout history: unknown resource type "gadget" (use deployment/NAME or daemonset/NAME)');
    await usage(rolloutCommand('pause', 'deployment', undefined, {}, () => {}), 'rollout pause needs one deployment: deployment/NAME');
  });

  it('scales only deployments and replica sets, to a whole number', async () => {
    await usage(scaleCommand('daemonset/agent', undefined, { replicas: '2' }, () => {}), 'scale: cannot scale "daemonset" (use deployment/NAME or replicaset/NAME)');
    await usage(scaleCommand('deployment/web', undefined, { replicas: '-1' }, () => {}), "--replicas must be a whole number of 0 or more, not '-1'");
  });
});
