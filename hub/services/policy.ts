import type { Logger } from 'pino';
import { createHash } from 'node:crypto';
import type { DesiredPolicies, PolicyPeerSet } from '../../shared/protocol/policy.js';
import type { NetworkPolicySpec } from '../../shared/resources/networkpolicy.js';
import type { PodSpec } from '../../shared/resources/pod.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import { compilePolicies, type PolicyObject, type PolicyPod } from './policy-compile.js';

/** How long a burst of changes (a rollout's pods getting IPs) is gathered before one compile. */
const SETTLE_MS = 20;

/**
 * Keeps every node's compiled network policy (docs/ARCHITECTURE.md, 'Network policy'): the
 * fleet's NetworkPolicies, Namespaces and pods in memory (rebuilt from the store at start), a
 * compile after each burst of changes that matter (a pod's labels, node, IP or named ports, a
 * namespace's labels, a policy), and the nodes whose compiled form changed handed to the
 * dispatcher. A pod's IP appearing thus changes only the nodes whose policies name it as a
 * peer; a status report that changes none of that costs nothing.
 */
export class PolicyCompiler {
  private readonly policies = new Map<string, PolicyObject>();
  private readonly namespaces = new Map<string, Record<string, string>>();
  private readonly pods = new Map<string, { view: PolicyPod; fingerprint: string }>();
  private compiled = new Map<string, { value: DesiredPolicies; fingerprint: string }>();
  private unwatch: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lastCompileMs = 0;
  /** Nodes that gained a pod, or whose pod changed labels, since the last compile: their selection may be stale. */
  private readonly dirty = new Set<string>();
  /** Nodes whose desired set waits for the next compile (pendingFor said so). */
  private readonly deferred = new Set<string>();

  constructor(
    private readonly store: ObjectStore,
    private readonly log: Logger,
    /** Told the nodes whose compiled policy changed. */
    private readonly onNodesChanged: (nodes: readonly string[]) => void,
  ) {}

  /** Lists, compiles once (so the first desired sets carry the policy), then watches. */
  start(): void {
    const watchFrom = (kind: string, apply: (e: WatchEvent) => boolean) => {
      const list = this.store.list(kind);
      for (const object of list.items) apply({ type: 'ADDED', object });
      this.unwatch.push(this.store.watch({ kind, fromResourceVersion: list.resourceVersion }, (e) => apply(e) && this.schedule()));
    };
    watchFrom('NetworkPolicy', (e) => this.onPolicy(e));
    watchFrom('Namespace', (e) => this.onNamespace(e));
    watchFrom('Pod', (e) => this.onPod(e));
    this.recompile();
  }

  stop(): void {
    for (const u of this.unwatch) u();
    this.unwatch = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * Whether the node's desired set must wait for the compile that is due: a pod bound to it, or
   * relabelled, since the last compile may be selected by a policy, and sent before its policy
   * it could start its first process unprotected. The wait is one burst (20 ms, or twice a long
   * compile); the node is handed to onNodesChanged when the compile is done.
   */
  pendingFor(node: string): boolean {
    if (!this.timer || this.policies.size === 0 || !this.dirty.has(node)) return false;
    this.deferred.add(node);
    return true;
  }

  /** The node's compiled policy; undefined when no policy selects any of its pods. */
  forNode(node: string): DesiredPolicies | undefined {
    return this.compiled.get(node)?.value;
  }

  /** Compiles now and reports the nodes whose policy changed (the timer's work; tests call it directly). */
  recompile(): string[] {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const started = Date.now();
    const next = new Map<string, { value: DesiredPolicies; fingerprint: string }>();
    if (this.policies.size > 0) {
      const result = compilePolicies({ policies: [...this.policies.values()], pods: [...this.pods.values()].map((p) => p.view), namespaces: this.namespaces });
      const prints = sectionFingerprints(result);
      for (const [node, value] of result) next.set(node, { value, fingerprint: prints.get(node)! });
    }
    const changed: string[] = [];
    for (const [node, c] of next) if (this.compiled.get(node)?.fingerprint !== c.fingerprint) changed.push(node);
    for (const node of this.compiled.keys()) if (!next.has(node)) changed.push(node);
    this.compiled = next;
    this.lastCompileMs = Date.now() - started;
    if (changed.length > 0) this.log.debug({ nodes: changed.length, ms: this.lastCompileMs }, 'network policy compiled');
    const waiting = this.releaseDeferred().filter((n) => !changed.includes(n));
    if (changed.length + waiting.length > 0) this.onNodesChanged([...changed, ...waiting]);
    return changed;
  }

  private schedule(): void {
    if (this.timer) return;
    // A fleet-wide compile that takes long waits longer between bursts: at most a third of the time compiling.
    this.timer = setTimeout(() => {
      try {
        this.recompile();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'network policy compile failed');
        // The nodes that waited for it get their desired sets with the last compiled policy.
        const waiting = this.releaseDeferred();
        if (waiting.length > 0) this.onNodesChanged(waiting);
      }
    }, Math.max(SETTLE_MS, 2 * this.lastCompileMs));
  }

  private releaseDeferred(): string[] {
    const waiting = [...this.deferred];
    this.deferred.clear();
    this.dirty.clear();
    return waiting;
  }

  private onPolicy(e: WatchEvent): boolean {
    const key = `${e.object.metadata.namespace}/${e.object.metadata.name}`;
    if (e.type === 'DELETED') return this.policies.delete(key);
    this.policies.set(key, { namespace: e.object.metadata.namespace ?? 'default', name: e.object.metadata.name, spec: e.object.spec as NetworkPolicySpec });
    return true;
  }

  private onNamespace(e: WatchEvent): boolean {
    const name = e.object.metadata.name;
    if (e.type === 'DELETED') return this.namespaces.delete(name);
    const labels = e.object.metadata.labels ?? {};
    if (JSON.stringify(this.namespaces.get(name)) === JSON.stringify(labels)) return false;
    this.namespaces.set(name, labels);
    return true;
  }

  /** Most pod writes are status reports: only labels, node, IP, named ports or the end of the pod matter here. */
  private onPod(e: WatchEvent): boolean {
    const key = `${e.object.metadata.namespace}/${e.object.metadata.name}`;
    const view = e.type === 'DELETED' ? undefined : podView(e.object);
    if (!view) return this.pods.delete(key);
    const fingerprint = JSON.stringify([view.uid, view.labels, view.node, view.ip, [...view.ports]]);
    const known = this.pods.get(key);
    if (known?.fingerprint === fingerprint) return false;
    // A pod new on its node, or relabelled there: whether a policy selects it is known at the next compile.
    if (view.node && (known?.view.uid !== view.uid || known.view.node !== view.node || JSON.stringify(known.view.labels) !== JSON.stringify(view.labels))) this.dirty.add(view.node);
    this.pods.set(key, { view, fingerprint });
    return true;
  }
}

/**
 * A pod as policy sees it; undefined for pods outside policy (hostNetwork, finished). A pod
 * being deleted still runs for its grace period, protected and a peer as before.
 */
function podView(pod: StoredObject): PolicyPod | undefined {
  const spec = pod.spec as PodSpec | undefined;
  const status = pod.status as { phase?: string; podIP?: string } | undefined;
  if (!spec || spec.hostNetwork || status?.phase === 'Succeeded' || status?.phase === 'Failed') return undefined;
  const ports = new Map<string, number>();
  for (const c of spec.containers) for (const p of c.ports ?? []) if (p.name) ports.set(`${p.name}/${p.protocol ?? 'TCP'}`, p.containerPort);
  return {
    uid: pod.metadata.uid,
    namespace: pod.metadata.namespace ?? 'default',
    labels: pod.metadata.labels ?? {},
    ...(spec.nodeName ? { node: spec.nodeName } : {}),
    ...(status?.podIP ? { ip: status.podIP } : {}),
    ports,
  };
}

/**
 * What tells one node's section from another: its profiles and pods, and a digest of each set
 * it names. A set (thousands of IPs, shared by many nodes) is digested once, not once per node.
 */
export function sectionFingerprints(sections: ReadonlyMap<string, DesiredPolicies>): Map<string, string> {
  const digests = new Map<PolicyPeerSet, string>();
  const digest = (set: PolicyPeerSet): string => {
    let d = digests.get(set);
    if (d === undefined) digests.set(set, (d = createHash('sha1').update(JSON.stringify(set)).digest('base64')));
    return d;
  };
  const out = new Map<string, string>();
  for (const [node, value] of sections) out.set(node, JSON.stringify([value.profiles, value.pods, Object.entries(value.sets).map(([id, set]) => [id, digest(set)])]));
  return out;
}
