import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Dispatcher } from '../../hub/dispatch/desired.js';
import { compilePolicies, type PolicyObject, type PolicyPod } from '../../hub/services/policy-compile.js';
import { PolicyCompiler } from '../../hub/services/policy.js';
import { decodePayload, desiredStateSchema } from '../../shared/protocol/messages.js';
import { desiredPoliciesSchema, type DesiredPolicies } from '../../shared/protocol/policy.js';
import { Topics } from '../../shared/protocol/topics.js';
import type { NetworkPolicySpec } from '../../shared/resources/networkpolicy.js';
import { container, createNode, podObject, testHub, type TestHub } from './builders.js';
import { RetainingBus } from '../harness/memory-bus.js';

// The hub's compile of NetworkPolicies into each node's `policies` section, and which nodes a
// change reaches.

function pod(uid: string, o: { ns?: string; labels?: Record<string, string>; node?: string; ip?: string; ports?: Record<string, number> }): PolicyPod {
  return { uid, namespace: o.ns ?? 'default', labels: o.labels ?? {}, ...(o.node ? { node: o.node } : {}), ...(o.ip ? { ip: o.ip } : {}), ports: new Map(Object.entries(o.ports ?? {})) };
}

function np(name: string, spec: NetworkPolicySpec, namespace = 'default'): PolicyObject {
  return { namespace, name, spec };
}

function compile(policies: PolicyObject[], pods: PolicyPod[], namespaces: Record<string, Record<string, string>> = {}): Map<string, DesiredPolicies> {
  const out = compilePolicies({ policies, pods, namespaces: new Map(Object.entries(namespaces)) });
  for (const value of out.values()) expect(desiredPoliciesSchema.safeParse(value).success).toBe(true);
  return out;
}

/** The profile of a pod, with its rules' set ids replaced by the sets' contents. */
function profileOf(compiled: DesiredPolicies | undefined, uid: string): unknown {
  if (!compiled) return undefined;
  const id = compiled.pods[uid];
  if (!id) return undefined;
  const expand = (rules: { peers?: string; ports?: unknown }[] | undefined) => rules?.map((r) => ({ ...(r.peers ? { peers: compiled.sets[r.peers] } : {}), ...(r.ports ? { ports: r.ports } : {}) }));
  const p = compiled.profiles[id]!;
  return { ...(p.ingress ? { ingress: expand(p.ingress) } : {}), ...(p.egress ? { egress: expand(p.egress) } : {}) };
}

const FLEET = [
  pod('db-a', { labels: { app: 'db' }, node: 'a', ip: '10.42.1.2', ports: { 'pg/TCP': 5432 } }),
  pod('db-b', { labels: { app: 'db' }, node: 'b', ip: '10.42.2.2', ports: { 'pg/TCP': 6432 } }),
  pod('web-a', { labels: { app: 'web' }, node: 'a', ip: '10.42.1.3' }),
  pod('web-c', { labels: { app: 'web' }, node: 'c', ip: '10.42.3.3' }),
  pod('web-new', { labels: { app: 'web' }, node: 'c' }),
  pod('other-ns', { ns: 'ops', labels: { app: 'web' }, node: 'c', ip: '10.42.3.9' }),
];

describe('compilePolicies', () => {
  it('a namespace default-deny isolates every pod of the namespace, on its own node, and nothing else', () => {
    const out = compile([np('deny', { podSelector: {}, policyTypes: ['Ingress'] })], FLEET);
    expect([...out.keys()].sort()).toEqual(['a', 'b', 'c']);
    expect(profileOf(out.get('a'), 'db-a')).toEqual({ ingress: [] });
    expect(Object.keys(out.get('c')!.pods).sort()).toEqual(['web-c', 'web-new']);
    expect(out.get('c')!.pods['other-ns']).toBeUndefined();
  });

  it('an allow rule by podSelector names the IPs of the matching pods fleet-wide, and only pods with an IP', () => {
    const out = compile([np('db', { podSelector: { matchLabels: { app: 'db' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }], ports: [{ port: 'pg' }] }] })], FLEET);
    expect([...out.keys()].sort()).toEqual(['a', 'b']);
    // The named port is resolved against each protected pod: two profiles, one set.
    expect(profileOf(out.get('a'), 'db-a')).toEqual({ ingress: [{ peers: { ips: ['10.42.1.3', '10.42.3.3'] }, ports: [{ protocol: 'TCP', port: 5432 }] }] });
    expect(profileOf(out.get('b'), 'db-b')).toEqual({ ingress: [{ peers: { ips: ['10.42.1.3', '10.42.3.3'] }, ports: [{ protocol: 'TCP', port: 6432 }] }] });
    expect(Object.keys(out.get('a')!.sets)).toEqual(['default/db/i0']);
  });

  it('namespaceSelector alone picks every pod of those namespaces; with a podSelector, only the pods of both', () => {
    const namespaces = { ops: { team: 'ops' }, default: {} };
    const only = compile([np('db', { podSelector: { matchLabels: { app: 'db' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'ops' } } }] }] })], FLEET, namespaces);
    expect(profileOf(only.get('a'), 'db-a')).toEqual({ ingress: [{ peers: { ips: ['10.42.3.9'] } }] });
    const byName = compile([np('db', { podSelector: { matchLabels: { app: 'db' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'default' } }, podSelector: { matchLabels: { app: 'web' } } }] }] })], FLEET, namespaces);
    expect(profileOf(byName.get('a'), 'db-a')).toEqual({ ingress: [{ peers: { ips: ['10.42.1.3', '10.42.3.3'] } }] });
  });

  it('rules of several policies add up; egress ipBlocks keep their except; an unselected pod is absent', () => {
    const out = compile(
      [
        np('a-egress', { podSelector: { matchLabels: { app: 'web' } }, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '10.42.0.0/16', except: ['10.42.2.0/24'] } }] }] }),
        np('b-dns', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ protocol: 'UDP', port: 53 }] }] }),
      ],
      FLEET,
    );
    expect(profileOf(out.get('a'), 'web-a')).toEqual({ egress: [{ peers: { blocks: [{ cidr: '10.42.0.0/16', except: ['10.42.2.0/24'] }] } }, { ports: [{ protocol: 'UDP', port: 53 }] }] });
    expect(profileOf(out.get('a'), 'db-a')).toEqual({ egress: [{ ports: [{ protocol: 'UDP', port: 53 }] }] });
  });

  it('an egress named port resolves against each destination pod', () => {
    const out = compile([np('web', { podSelector: { matchLabels: { app: 'web' } }, policyTypes: ['Egress'], egress: [{ to: [{ podSelector: { matchLabels: { app: 'db' } } }], ports: [{ port: 'pg' }, { port: 80 }] }] })], FLEET);
    expect(profileOf(out.get('a'), 'web-a')).toEqual({
      egress: [
        { peers: { ips: ['10.42.1.2', '10.42.2.2'] }, ports: [{ protocol: 'TCP', port: 80 }] },
        { peers: { ips: ['10.42.1.2'] }, ports: [{ protocol: 'TCP', port: 5432 }] },
        { peers: { ips: ['10.42.2.2'] }, ports: [{ protocol: 'TCP', port: 6432 }] },
      ],
    });
  });

  it('a rule whose every port is a name the pod lacks allows nothing', () => {
    const out = compile([np('web', { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ ports: [{ port: 'nope' }] }] })], FLEET);
    expect(profileOf(out.get('a'), 'web-a')).toEqual({ ingress: [] });
  });
});

/** A bus that keeps the retained desired set of each topic. */

describe('PolicyCompiler with the dispatcher', () => {
  const topics = new Topics();
  let hub: TestHub;
  let bus: RetainingBus;
  let compiler: PolicyCompiler;
  let dispatcher: Dispatcher | undefined;
  let changed: string[][];

  beforeEach(() => {
    hub = testHub();
    bus = new RetainingBus();
    dispatcher = undefined;
    changed = [];
    hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Namespace', metadata: { name: 'default' }, spec: {} });
    for (const name of ['a', 'b', 'c']) createNode(hub.store, { name });
    const place = (name: string, node: string, labels: Record<string, string>, ip?: string) => {
      hub.store.create(podObject({ name, nodeName: node, labels, containers: [container({ name: 'app', image: 'busybox:1', ports: [{ name: 'http', containerPort: 8080 }] })] }));
      if (ip) hub.store.updateStatus('Pod', 'default', name, { phase: 'Running', podIP: ip });
    };
    place('db-a', 'a', { app: 'db' }, '10.42.1.2');
    place('web-b', 'b', { app: 'web' }, '10.42.2.2');
    place('other-c', 'c', { app: 'other' }, '10.42.3.2');
    hub.store.create({ apiVersion: 'flotilla/v1', kind: 'NetworkPolicy', metadata: { name: 'db', namespace: 'default' }, spec: { podSelector: { matchLabels: { app: 'db' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'web' } } }], ports: [{ port: 'http' }] }] } });
    compiler = new PolicyCompiler(hub.store, hub.log, (nodes) => {
      changed.push([...nodes].sort());
      for (const node of nodes) dispatcher?.queue.add(node);
    });
    compiler.start();
    dispatcher = new Dispatcher(hub.db, hub.store, bus, topics, hub.log, undefined, undefined, compiler);
    dispatcher.start();
  });
  afterEach(() => {
    compiler.stop();
    dispatcher?.stop();
    hub.db.close();
  });

  async function settle(): Promise<void> {
    compiler.recompile();
    await new Promise((r) => setTimeout(r, 30));
  }

  function policiesOf(node: string): DesiredPolicies | undefined {
    const payload = bus.retained.get(topics.desired(node));
    if (!payload) return undefined;
    const decoded = decodePayload(desiredStateSchema, payload);
    if (!decoded.ok) throw new Error('bad desired set');
    return decoded.value.policies as DesiredPolicies | undefined;
  }

  it('sends each node only the policy of its own pods, with peers and ports resolved', async () => {
    await settle();
    expect(policiesOf('a')).toEqual({ sets: { 'default/db/i0': { ips: ['10.42.2.2'] } }, profiles: { [Object.values(policiesOf('a')!.pods)[0]!]: { ingress: [{ peers: 'default/db/i0', ports: [{ protocol: 'TCP', port: 8080 }] }] } }, pods: { [hub.store.get('Pod', 'default', 'db-a')!.metadata.uid]: expect.any(String) } });
    expect(policiesOf('b')).toBeUndefined();
    expect(policiesOf('c')).toBeUndefined();
  });

  it("a peer's new IP changes only the nodes whose policies name it; other pods' status reports change nothing", async () => {
    await settle();
    const revs = () => ['a', 'b', 'c'].map((n) => dispatcher!.revision(n));
    const before = revs();
    changed.length = 0;
    // A status report that changes no IP: no compile result changes.
    hub.store.updateStatus('Pod', 'default', 'other-c', { phase: 'Running', podIP: '10.42.3.2', conditions: [{ type: 'Ready', status: 'True' }] });
    await settle();
    expect(changed).toEqual([]);
    // A new web pod on c gets an IP: a's policy names it, so a alone gets a new revision.
    hub.store.create(podObject({ name: 'web-c', nodeName: 'c', labels: { app: 'web' } }));
    await settle();
    expect(changed).toEqual([]);
    hub.store.updateStatus('Pod', 'default', 'web-c', { phase: 'Running', podIP: '10.42.3.7' });
    await settle();
    expect(changed).toEqual([['a']]);
    const after = revs();
    // c's desired set changed for its own new pod (before the IP), never for the policy.
    expect(after[0]).toBe(before[0]! + 1);
    expect(after[1]).toBe(before[1]);
    expect(policiesOf('a')!.sets['default/db/i0']).toEqual({ ips: ['10.42.2.2', '10.42.3.7'] });
  });

  it("never sends a node a pod a policy selects before that pod's policy: the desired set waits for the compile", async () => {
    await settle();
    bus.history.length = 0;
    // A new db pod on b: the policy selects it. Left to the compile's own timer, as in the hub.
    hub.store.create(podObject({ name: 'db-b', nodeName: 'b', labels: { app: 'db' } }));
    const uid = hub.store.get('Pod', 'default', 'db-b')!.metadata.uid;
    const sets = () =>
      bus.history
        .filter((m) => m.topic === topics.desired('b'))
        .map((m) => {
          const d = decodePayload(desiredStateSchema, m.payload);
          if (!d.ok) throw new Error('bad desired set');
          return d.value;
        });
    await vi.waitFor(() => expect(sets().some((d) => d.pods.some((p) => p.uid === uid))).toBe(true), { timeout: 2_000 });
    for (const d of sets().filter((x) => x.pods.some((p) => p.uid === uid))) expect((d.policies as DesiredPolicies | undefined)?.pods[uid]).toBeDefined();
  });

  it('deleting the policy clears the section of the nodes that had one', async () => {
    await settle();
    changed.length = 0;
    hub.store.delete('NetworkPolicy', 'default', 'db');
    await settle();
    expect(changed).toEqual([['a']]);
    expect(policiesOf('a')).toBeUndefined();
  });
});
