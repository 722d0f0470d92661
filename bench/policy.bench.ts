import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, expect, it } from 'vitest';
import { PolicyEnforcer } from '../agent/network/policy/enforcer.js';
import { kernelPolicyPlane } from '../agent/network/policy/kernel.js';
import { compilePolicies, type PolicyObject, type PolicyPod } from '../hub/services/policy-compile.js';
import { sectionFingerprints } from '../hub/services/policy.js';
import type { DesiredPolicies } from '../shared/protocol/policy.js';
import { IP, NFT, addNetns, delNetnsSync } from '../test/harness/netns.js';
import { median, quantile, round, writeResult } from './results.js';

// Network policy at scale (docs/ARCHITECTURE.md, 'Network policy'), both halves:
//  * the hub's compile of 100 policies over 10,000 pods on 1,000 nodes, and how many nodes one
//    peer's new IP reaches (only those whose policies name it);
//  * a device's table in the kernel (real nft, in a namespace of its own): 250 of its pods
//    isolated, peer sets of 10,000 pod IPs and ipBlocks; the whole table written, then one
//    peer's IP added and removed as the incremental transaction it is. The floor, measured in
//    the same run, is an nft transaction that adds one element and nothing else: what spawning
//    nft costs. The ratio full / incremental is what an incremental change saves.

const NODES = 1_000;
const PODS_PER_NODE = 10;
const POLICIES = 100;
const LOCAL_PODS = 250;
const PEERS = 10_000;
const RUNS = 15;
const log = pino({ level: 'silent' });
const ns = `flt-bench-policy-${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), 'flotilla-policy-bench-'));

afterAll(() => {
  delNetnsSync(ns);
  rmSync(dir, { recursive: true, force: true });
});

function ipOf(i: number): string {
  return `10.42.${Math.floor(i / 250)}.${(i % 250) + 2}`;
}

function fleetPods(): PolicyPod[] {
  const pods: PolicyPod[] = [];
  for (let n = 0; n < NODES; n++) {
    for (let p = 0; p < PODS_PER_NODE; p++) {
      const i = n * PODS_PER_NODE + p;
      pods.push({ uid: `pod-${i}`, namespace: `ns-${i % 20}`, labels: { app: `app-${i % 50}`, tier: p % 2 ? 'web' : 'db' }, node: `edge-${n}`, ip: ipOf(i), ports: new Map([['http/TCP', 8080]]) });
    }
  }
  return pods;
}

function fleetPolicies(): PolicyObject[] {
  return Array.from({ length: POLICIES }, (_, i) => ({
    namespace: `ns-${i % 20}`,
    name: `p-${i}`,
    spec: {
      podSelector: { matchLabels: { app: `app-${i % 50}` } },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [{ from: [{ podSelector: { matchLabels: { tier: 'web' } } }, { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': `ns-${(i + 1) % 20}` } } }], ports: [{ port: 'http' }] }],
      egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.42.0.0/16'] } }] }, { to: [{ podSelector: {} }], ports: [{ protocol: 'UDP', port: 53 }] }],
    },
  }));
}

/** A device's section: LOCAL_PODS pods over four profiles, peer sets splitting PEERS pod IPs, and an ipBlock. */
function deviceSection(extraPeer?: string): DesiredPolicies {
  const sets: DesiredPolicies['sets'] = {};
  for (let s = 0; s < 4; s++) sets[`ns/p${s}/i0`] = { ips: Array.from({ length: PEERS / 4 }, (_, k) => ipOf(s * (PEERS / 4) + k)) };
  if (extraPeer) sets['ns/p0/i0']!.ips!.push(extraPeer);
  sets['ns/egress/e0'] = { blocks: [{ cidr: '10.0.0.0/8', except: ['10.42.0.0/16', '10.99.0.0/16'] }] };
  const profiles: DesiredPolicies['profiles'] = {};
  for (let s = 0; s < 4; s++) profiles[`prof-${s}`] = { ingress: [{ peers: `ns/p${s}/i0`, ports: [{ protocol: 'TCP', port: 8080 }] }], egress: [{ peers: 'ns/egress/e0' }, { ports: [{ protocol: 'UDP', port: 53 }] }] };
  const pods: DesiredPolicies['pods'] = {};
  for (let i = 0; i < LOCAL_PODS; i++) pods[`local-${i}`] = `prof-${i % 4}`;
  return { sets, profiles, pods };
}

it('compiles the fleet\'s policies on the hub, and a peer\'s new IP reaches only the nodes that name it', () => {
  const pods = fleetPods();
  const policies = fleetPolicies();
  const namespaces = new Map(Array.from({ length: 20 }, (_, i) => [`ns-${i}`, {}]));
  // A compile as the hub's PolicyCompiler makes one after a burst: every node's section, and what tells them apart.
  const times: number[] = [];
  let before = new Map<string, DesiredPolicies>();
  let beforePrints = new Map<string, string>();
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    before = compilePolicies({ policies, pods, namespaces });
    beforePrints = sectionFingerprints(before);
    times.push(performance.now() - t);
  }
  // A new pod in ns-3 with tier=web gets its IP: it is a peer of the policies of ns-2 (its
  // namespace is named by them) and of every policy whose ingress picks tier=web pods in ns-3.
  const newcomer: PolicyPod = { uid: 'newcomer', namespace: 'ns-3', labels: { app: 'app-none', tier: 'web' }, node: 'edge-0', ip: '10.43.0.9', ports: new Map() };
  const after = compilePolicies({ policies, pods: [...pods, newcomer], namespaces });
  const afterPrints = sectionFingerprints(after);
  const changed = [...after.keys()].filter((n) => afterPrints.get(n) !== beforePrints.get(n));
  // The fingerprints agree with the sections themselves.
  expect(changed).toEqual([...after.keys()].filter((n) => JSON.stringify(after.get(n)) !== JSON.stringify(before.get(n))));
  const bytes = changed.map((n) => JSON.stringify(after.get(n)).length);
  const figures = { compileMs: round(median(times)), nodesWithPolicy: before.size, nodesChangedByOnePeer: changed.length, sectionBytesMedian: median(bytes) };
  expect(changed.length).toBeGreaterThan(0);
  expect(changed.length).toBeLessThan(before.size);
  writeResult({ benchmark: 'policy-hub', parameters: { nodes: NODES, pods: NODES * PODS_PER_NODE, policies: POLICIES }, figures });
});

it('writes a device\'s table whole, and changes one peer as a small transaction', async () => {
  await addNetns(ns);
  // The enforcer's own plane, with nft run inside the bench's namespace.
  const wrapper = join(dir, 'nft');
  writeFileSync(wrapper, `#!/bin/sh\nexec ${IP} netns exec ${ns} ${NFT} "$@"\n`);
  chmodSync(wrapper, 0o700);
  const plane = kernelPolicyPlane(wrapper, join(dir, 'no-bridge-sysctl'));
  const ips = new Map(Array.from({ length: LOCAL_PODS }, (_, i) => [`local-${i}`, `10.99.0.${i + 2}`]));
  const full: number[] = [];
  for (let r = 0; r < 5; r++) {
    const enforcer = new PolicyEnforcer(plane, log, () => undefined);
    const t = performance.now();
    await enforcer.sync(deviceSection(), ips);
    full.push(performance.now() - t);
  }
  const enforcer = new PolicyEnforcer(plane, log, () => undefined);
  await enforcer.sync(deviceSection(), ips);
  const incremental: number[] = [];
  const nftOnly: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t = performance.now();
    await enforcer.sync(deviceSection(r % 2 === 0 ? '10.43.7.7' : undefined), ips);
    incremental.push(performance.now() - t);
    nftOnly.push(enforcer.stats.lastMs);
  }
  expect(enforcer.stats).toMatchObject({ failures: 0, full: 1 });
  // The floor: one nft transaction of one element, through the same wrapper.
  await plane.apply('add table inet flotilla-bench-floor\nadd set inet flotilla-bench-floor s { type ipv4_addr; }\n');
  const floor: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t = performance.now();
    await plane.apply(`${r % 2 === 0 ? 'add' : 'delete'} element inet flotilla-bench-floor s { 10.43.7.7 }\n`);
    floor.push(performance.now() - t);
  }
  // incrementalMs is the whole pass (reading the section, the model, the script, nft); incrementalNftMs the nft run alone.
  const figures = { fullSyncMs: round(median(full)), incrementalMs: round(median(incremental)), incrementalP90Ms: round(quantile(incremental, 0.9)), incrementalNftMs: round(median(nftOnly)) };
  const floorFigures = { oneElementNftMs: round(median(floor)) };
  writeResult({
    benchmark: 'policy-device',
    parameters: { localPods: LOCAL_PODS, peerIPs: PEERS, runs: RUNS },
    figures,
    floor: floorFigures,
    ratios: { incrementalVsFloor: round(figures.incrementalMs / floorFigures.oneElementNftMs, 2), fullVsIncremental: round(figures.fullSyncMs / figures.incrementalMs, 1) },
  });
}, 120_000);

