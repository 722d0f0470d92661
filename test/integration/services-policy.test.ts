import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apply, podRunning } from '../harness/fleet.js';
import { agentOf, startLabAgent } from '../harness/lab-flotilla.js';
import { NFT, mustRunIn, runIn } from '../harness/netns.js';
import { echoPodManifest, execInPod, overlayNode, remoteAddrSeenBy, startOverlayLab, waitReach, type OverlayLab } from '../harness/overlay.js';
import { TEST_IMAGE } from '../harness/images.js';
import { cli, stopAll, waitFor } from '../harness/processes.js';

// NetworkPolicy enforced by the devices' kernels, in the overlay's lab: two devices, a `db`
// pod and two clients on device a, two clients on device b; every pod runs the echo server
// (it answers with the address a request came from). A namespace default-deny blocks; an allow
// rule by podSelector lets the `web` pods in, from the same device (over the pod bridge) and
// from the other (over WireGuard), and no one else; an egress ipBlock with except blocks the
// excepted range and lets the rest through; and all of it stays with the hub stopped, and
// after an agent restart with the hub stopped.

let o: OverlayLab;
const ip: Record<string, string> = {};
const PODS = [
  { name: 'db', node: 'a', app: 'db' },
  { name: 'web-a', node: 'a', app: 'web' },
  { name: 'other-a', node: 'a', app: 'other' },
  { name: 'web-b', node: 'b', app: 'web' },
  { name: 'other-b', node: 'b', app: 'other' },
];

/** The echo pod with an `app` label. */
function labelled(name: string, node: string, app: string): string {
  return echoPodManifest(name, node).replace(`metadata: {name: ${name}}`, `metadata: {name: ${name}, labels: {app: ${app}}}`);
}

/** Whether pod `from` gets an answer from `to`, and the address `to` saw (a short timeout: a dropped SYN is not answered). */
async function reach(from: string, to: string): Promise<string | undefined> {
  const node = PODS.find((p) => p.name === from)!.node;
  return remoteAddrSeenBy(o.devices[node]!, from, ip[to]!, 2);
}

async function waitBlocked(from: string, to: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(`${from} to be kept from ${to}`, async () => (await reach(from, to)) === undefined, timeoutMs, 200);
}

async function waitAllowed(from: string, to: string, timeoutMs = 20_000): Promise<void> {
  const seen = await waitFor(`${from} to reach ${to}`, () => reach(from, to), timeoutMs, 200);
  // The receiver sees the sender's own pod IP: what a policy's peers are matched against.
  expect(seen, `${to} saw ${from} as`).toBe(ip[from]);
}

beforeAll(async () => {
  o = await startOverlayLab('policy', { devices: [{ name: 'a' }, { name: 'b' }] });
  await Promise.all(PODS.map(async (p) => {
    apply(o.hub, labelled(p.name, p.node, p.app));
    ip[p.name] = await waitFor(`pod ${p.name} running with a pod IP`, () => podRunning(o.hub, p.name)?.status?.podIP, 90_000, 250);
  }));
  // Before any policy every pod reaches db, across the overlay too.
  await waitReach(o.devices.b!, 'web-b', ip.db!, 45_000);
  await waitReach(o.devices.b!, 'other-b', ip.db!, 45_000);
}, 300_000);

afterAll(async () => {
  await stopAll();
  await o?.lab.teardown();
});

describe('NetworkPolicy in the devices\' kernels', () => {
  it('a namespace default-deny blocks every pod, from the same device and from another', async () => {
    apply(o.hub, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`);
    expect(cli(o.hub, ['get', 'networkpolicy']).stdout).toMatch(/^NAME\s+POD-SELECTOR\s+AGE\ndefault-deny\s+<none>\s+/);
    await waitBlocked('web-a', 'db');
    await waitBlocked('web-b', 'db');
    await waitBlocked('other-b', 'web-a');
    // The table of device a holds its own pods only.
    const listing = await mustRunIn(o.devices.a!.ns, [NFT, 'list', 'map', 'inet', 'flotilla-policy', 'ingress']);
    for (const p of PODS) expect(listing.includes(`${ip[p.name]} : jump`), `${p.name} in a's ingress map`).toBe(p.node === 'a');
  });

  it('an allow rule by podSelector lets only that source in, over the bridge and over the overlay', async () => {
    apply(o.hub, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{protocol: TCP, port: 8080}]
`);
    await waitAllowed('web-a', 'db');
    await waitAllowed('web-b', 'db');
    expect(await reach('other-a', 'db')).toBeUndefined();
    expect(await reach('other-b', 'db')).toBeUndefined();
    // The default-deny still holds for every other pod.
    expect(await reach('web-b', 'web-a')).toBeUndefined();
  });

  it('an egress ipBlock with except blocks the excepted range and lets the rest through; unselected pods are untouched', async () => {
    const aCIDR = overlayNode(o.hub, 'a').spec!.podCIDR!;
    expect(cli(o.hub, ['delete', 'networkpolicy', 'default-deny']).code).toBe(0);
    expect(cli(o.hub, ['delete', 'networkpolicy', 'db-from-web']).code).toBe(0);
    await waitAllowed('other-b', 'db');
    apply(o.hub, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-egress}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 10.42.0.0/16, except: [${aCIDR}]}}]
`);
    await waitBlocked('web-b', 'db');
    await waitAllowed('web-b', 'other-b');
    expect(await reach('web-b', 'web-a')).toBeUndefined();
    // web-a is selected too: its own device's range is the excepted one, b's is not.
    expect(await reach('web-a', 'other-a')).toBeUndefined();
    await waitAllowed('web-a', 'other-b');
    // Replies to what the others start always pass: other-b is not selected and reaches web-b.
    await waitAllowed('other-b', 'web-b');
    await waitAllowed('other-a', 'db');
  });

  it('is in force before a new pod\'s first process runs', async () => {
    apply(o.hub, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: probe-no-egress}
spec:
  podSelector: {matchLabels: {app: probe}}
  policyTypes: [Egress]
`);
    // The pod's first act is a request to db, which every unselected pod reaches.
    const request = `printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${ip.db} 8080 | grep -q 200 && echo reached > /tmp/first || echo blocked > /tmp/first; exec sleep 3600`;
    // The same pod unselected (its label differs) shows that the request itself succeeds at once.
    for (const [name, app] of [['probe', 'probe'], ['control', 'control']]) {
      apply(o.hub, `apiVersion: v1
kind: Pod
metadata: {name: ${name}, labels: {app: ${app}}}
spec:
  nodeName: a
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: ${TEST_IMAGE}
      command: ["/bin/sh", "-c", ${JSON.stringify(request)}]
`);
    }
    const firstOf = (pod: string) => waitFor(`${pod}'s first request to end`, async () => {
      const r = await execInPod(o.devices.a!, pod, ['cat', '/tmp/first']).catch(() => undefined);
      return r?.code === 0 ? r.stdout.trim() : undefined;
    }, 90_000, 500);
    expect(await firstOf('control')).toBe('reached');
    expect(await firstOf('probe')).toBe('blocked');
    await waitAllowed('other-a', 'db');
  });

  it('stays enforced with the hub stopped, and after an agent restart with the hub stopped', async () => {
    await o.hub.stop();
    expect(await reach('web-b', 'db')).toBeUndefined();
    await waitAllowed('web-b', 'other-b');
    // The agent of b stops, its table is removed by hand, and the agent comes back without a hub:
    // it writes the table again from the desired set on its disk.
    await agentOf(o.devices.b!).stop();
    await mustRunIn(o.devices.b!.ns, [NFT, 'delete', 'table', 'inet', 'flotilla-policy']);
    await waitAllowed('web-b', 'db');
    startLabAgent(o.lab, o.hub, o.devices.b!);
    await waitFor('b\'s agent to write its policy table again', async () => (await runIn(o.devices.b!.ns, [NFT, 'list', 'table', 'inet', 'flotilla-policy'])).code === 0, 30_000, 200);
    await waitBlocked('web-b', 'db');
    await waitAllowed('web-b', 'other-b');
    await waitAllowed('other-b', 'db');
  });
});
