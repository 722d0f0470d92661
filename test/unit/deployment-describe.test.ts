import { afterEach, beforeEach, describe as group, expect, it } from 'vitest';
import { describe } from '../../hub/cli/describe.js';
import { DeploymentController } from '../../hub/controllers/deployment.js';
import { ReplicaSetController } from '../../hub/controllers/replicaset.js';
import type { NewObject, StoredObject } from '../../hub/store/types.js';
import type { DeploymentSpec } from '../../shared/resources/deployment.js';
import { testHub, type TestHub } from './builders.js';

let hub: TestHub;
let deployments: DeploymentController;
let replicaSets: ReplicaSetController;

beforeEach(() => {
  hub = testHub();
  const ctx = { store: hub.store, events: hub.events, log: hub.log };
  deployments = new DeploymentController(ctx);
  replicaSets = new ReplicaSetController(ctx);
});
afterEach(() => hub.db.close());

function settle(): void {
  for (let i = 0; i < 20; i++) {
    deployments.reconcile('default/web');
    for (const rs of hub.store.list('ReplicaSet').items) replicaSets.reconcile(`default/${rs.metadata.name}`);
  }
}

type Described = Parameters<typeof describe>[0];

function show(): string {
  const d = hub.store.get('Deployment', 'default', 'web') as unknown as Described;
  return describe(d, hub.store.list('Event').items as never[], { replicaSets: hub.store.list('ReplicaSet').items as unknown as Described[] });
}

group('describe deployment', () => {
  it('shows replicas, strategy, conditions, the new and old ReplicaSets, and the events', () => {
    const spec: DeploymentSpec = {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      strategy: { rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'flotilla-test/busybox:1' }] } },
    };
    hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'default' }, spec } as NewObject);
    settle();
    const first = hub.store.list('ReplicaSet').items[0] as StoredObject;
    hub.store.mutate('Deployment', 'default', 'web', (d) => ({ ...d, spec: { ...spec, template: { ...spec.template, spec: { containers: [{ name: 'web', image: 'flotilla-test/busybox:2' }] } } } }));
    settle();
    const newRS = hub.store.list('ReplicaSet').items.find((rs) => rs.metadata.uid !== first.metadata.uid)!;
    const text = show();
    expect(text).toContain('Selector:         app=web');
    expect(text).toMatch(/Replicas:\s+2 desired \| 1 updated \| 3 total \| 0 available \| 3 unavailable/);
    expect(text).toMatch(/StrategyType:\s+RollingUpdate/);
    expect(text).toMatch(/RollingUpdateStrategy: 0 max unavailable, 1 max surge/);
    expect(text).toMatch(/Image:\s+flotilla-test\/busybox:2/);
    expect(text).toMatch(/Available\s+False\s+MinimumReplicasUnavailable/);
    expect(text).toMatch(/Progressing\s+True\s+ReplicaSetUpdated/);
    expect(text).toContain(`OldReplicaSets:   ${first.metadata.name} (2/2 replicas created)`);
    expect(text).toContain(`NewReplicaSet:    ${newRS.metadata.name} (1/1 replicas created)`);
    expect(text).toMatch(new RegExp(`Normal\\s+ScalingReplicaSet\\s+.*Scaled up replica set ${newRS.metadata.name} to 1`));
  });
});
