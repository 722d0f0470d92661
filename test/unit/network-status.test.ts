import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StatusIngest } from '../../hub/dispatch/status.js';
import { EventRecorder } from '../../hub/events/recorder.js';
import { PROTOCOL_VERSION, type StatusReport } from '../../shared/protocol/messages.js';
import type { NodeNetworkReport } from '../../shared/protocol/network.js';
import { Topics } from '../../shared/protocol/topics.js';
import { nodeCondition, type NodeStatus } from '../../shared/resources/node.js';
import { createNode, idleBus, testHub, type TestHub } from './builders.js';

// The agent's overlay report becomes status.overlay and NetworkUnavailable; its byte counts
// and handshake times, which move on every report, do not make every report a write.

const topics = new Topics();
const KEY = 'mDh0VwDbbY0+hHUWzXuuvd+aCCJ3PRjqHSNYzs0ObVs=';

let hub: TestHub;
let ingest: StatusIngest;

beforeEach(async () => {
  hub = testHub();
  ingest = new StatusIngest(hub.store, idleBus, topics, new EventRecorder(hub.store, 'flotilla-hub', hub.log), hub.log);
  await ingest.start();
  createNode(hub.store, { name: 'edge-1' });
  hub.store.mutate('Node', '', 'edge-1', (cur) => ({ ...cur, spec: { podCIDR: '10.42.0.0/24', podCIDRs: ['10.42.0.0/24'] } }));
});
afterEach(() => {
  ingest.stop();
  hub.db.close();
});

function network(fields: Partial<NodeNetworkReport> = {}, rx = 100): NodeNetworkReport {
  return {
    overlay: 'wireguard',
    ready: true,
    publicKey: KEY,
    port: 51820,
    implementation: 'wireguard-go',
    interface: 'flotilla-wg',
    podCIDR: '10.42.0.0/24',
    peers: [{ node: 'edge-2', path: 'direct', endpoint: '192.0.2.2:51820', latestHandshake: new Date(Date.now() - rx).toISOString(), rxBytes: rx, txBytes: rx * 2 }],
    ...fields,
  };
}

function send(net: NodeNetworkReport | undefined): void {
  const r = {
    v: PROTOCOL_VERSION,
    ts: new Date().toISOString(),
    observedRev: 1,
    node: { info: { hostname: 'edge-1', operatingSystem: 'linux', kernelVersion: '6', architecture: 'amd64', agentVersion: '0.1.0' }, capacity: { cpu: '4', memory: '1000Ki', pods: '110' }, engineReady: true, conditions: [], ...(net ? { network: net } : {}) },
    pods: [],
  } as StatusReport;
  ingest.onStatus(topics.node('edge-1', 'status'), Buffer.from(JSON.stringify(r)));
}

const status = () => hub.store.get('Node', '', 'edge-1')!.status as NodeStatus;
const condition = () => nodeCondition(status(), 'NetworkUnavailable');

describe('the overlay in node status', () => {
  it('stores the report as status.overlay and derives NetworkUnavailable=False WireGuardUp', () => {
    send(network());
    expect(status().overlay).toMatchObject({ overlay: 'wireguard', publicKey: KEY, peers: [{ node: 'edge-2', rxBytes: 100 }] });
    expect(condition()).toMatchObject({ status: 'False', reason: 'WireGuardUp', message: 'WireGuard is up (wireguard-go on flotilla-wg).' });
  });

  it('takes the agent\'s reason when the overlay is down, and OverlayDisabled with --overlay none', () => {
    send(network({ ready: false, reason: 'PodCIDROverlaps', message: 'the pod CIDR 10.42.0.0/24 overlaps the route 10.0.0.0/8 dev eth0' }));
    expect(condition()).toMatchObject({ status: 'True', reason: 'PodCIDROverlaps', message: expect.stringContaining('10.0.0.0/8 dev eth0') });
    send({ overlay: 'none', ready: false });
    expect(condition()).toMatchObject({ status: 'False', reason: 'OverlayDisabled' });
  });

  it('does not write the node for every report whose figures alone moved', () => {
    send(network({}, 100));
    const rv = hub.store.get('Node', '', 'edge-1')!.metadata.resourceVersion;
    for (let i = 1; i <= 20; i++) send(network({}, 100 + i * 1000));
    expect(hub.store.get('Node', '', 'edge-1')!.metadata.resourceVersion).toBe(rv);
    // A real change (a peer relayed now) is written at once.
    send(network({ peers: [{ node: 'edge-2', path: 'relay', rxBytes: 5, txBytes: 5 }] }));
    expect(status().overlay?.peers?.[0]?.path).toBe('relay');
  });

  it('leaves the IPAM\'s CIDRNotAvailable while the node has no pod CIDR', () => {
    hub.store.mutate('Node', '', 'edge-1', (cur) => ({ ...cur, spec: {}, status: { ...(cur.status as NodeStatus), conditions: [{ type: 'NetworkUnavailable', status: 'True', reason: 'CIDRNotAvailable', message: 'no free pod CIDR' }] } }));
    send(network({ ready: false, reason: 'NoPodCIDR', message: 'waiting for a pod CIDR' }));
    expect(condition()).toMatchObject({ status: 'True', reason: 'CIDRNotAvailable' });
    expect(status().overlay?.reason).toBe('NoPodCIDR');
  });
});

describe('an agent that stops reporting an overlay', () => {
  it('leaves no overlay and no NetworkUnavailable of its own behind', () => {
    send(network());
    expect(status().overlay).toBeDefined();
    send(undefined);
    expect(status().overlay).toBeUndefined();
    expect(condition()).toBeUndefined();
  });
});
