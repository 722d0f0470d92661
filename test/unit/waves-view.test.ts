import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WavesView } from '../../hub/controllers/waves/view.js';
import { REVISION_HASH_LABEL } from '../../hub/controllers/daemonset-index.js';
import type { StoredObject } from '../../hub/store/types.js';
import { createNode, daemonSetObject, podObject, testHub, type TestHub } from './builders.js';

// The rollout controller's view keeps the pods of the DaemonSets it tracks (those of type
// Waves) and no others: a fleet of other DaemonSets costs it nothing.

let hub: TestHub;
let view: WavesView;
const pokes: string[] = [];

beforeEach(() => {
  hub = testHub();
  view = new WavesView();
  pokes.length = 0;
  createNode(hub.store, { name: 'edge-1' });
  view.start(hub.store, (key) => pokes.push(key), () => {});
});
afterEach(() => {
  view.stop();
  hub.db.close();
});

function ownedPod(ds: StoredObject, node: string, hash: string): void {
  const pod = podObject({ name: `${ds.metadata.name}-${node}`, nodeName: node, labels: { app: ds.metadata.name, [REVISION_HASH_LABEL]: hash } });
  pod.metadata.ownerReferences = [{ apiVersion: 'flotilla/v1', kind: 'DaemonSet', name: ds.metadata.name, uid: ds.metadata.uid, controller: true }];
  hub.store.create(pod);
}

describe('WavesView', () => {
  it('keeps no pods of a DaemonSet it does not track, and lists them when it starts to', () => {
    const ds = hub.store.create(daemonSetObject({ name: 'reader' }));
    ownedPod(ds, 'edge-1', 'aaa');
    expect(view.podOn('default/reader', 'edge-1')).toBeUndefined();
    expect(pokes).toEqual([]);
    view.track('default/reader', ds);
    expect(view.podOn('default/reader', 'edge-1')?.hash).toBe('aaa');
    // From then on, the watch keeps it current and says so.
    hub.store.mutate('Pod', 'default', 'reader-edge-1', (cur) => ({ ...cur, metadata: { ...cur.metadata, labels: { ...cur.metadata.labels, [REVISION_HASH_LABEL]: 'bbb' } } }));
    expect(view.podOn('default/reader', 'edge-1')?.hash).toBe('bbb');
    expect(pokes).toEqual(['default/reader']);
  });

  it('forgets the pods of a DaemonSet it stops tracking', () => {
    const ds = hub.store.create(daemonSetObject({ name: 'reader' }));
    ownedPod(ds, 'edge-1', 'aaa');
    view.track('default/reader', ds);
    view.untrack('default/reader');
    expect(view.podOn('default/reader', 'edge-1')).toBeUndefined();
    hub.store.delete('Pod', 'default', 'reader-edge-1');
    expect(pokes).toEqual([]);
  });
});
