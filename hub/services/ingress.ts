import type { Logger } from 'pino';
import type { DesiredIngress, IngressCertificate } from '../../shared/protocol/ingress.js';
import { INGRESS_NODE_LABEL, type IngressSpec, type IngressStatus } from '../../shared/resources/ingress.js';
import type { NodeStatus } from '../../shared/resources/node.js';
import type { EventRecorder } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject } from '../store/types.js';

/**
 * The hub's side of Ingress (docs/ARCHITECTURE.md, 'Ingress'): which nodes are ingress devices,
 * what their desired set's `ingress` section holds, and each Ingress's
 * status.loadBalancer.ingress. A TLS Secret travels only to ingress devices, and only when an
 * Ingress of its namespace names it.
 */

export function isIngressNode(node: StoredObject | undefined): boolean {
  return node?.metadata.labels?.[INGRESS_NODE_LABEL] === 'true';
}

/** The address an ingress device is reached at: its InternalIP, else its ExternalIP. */
function ingressAddress(node: StoredObject): string | undefined {
  const addresses = (node.status as NodeStatus | undefined)?.addresses ?? [];
  return addresses.find((a) => a.type === 'InternalIP')?.address ?? addresses.find((a) => a.type === 'ExternalIP')?.address;
}

/**
 * The `ingress` section every ingress device is sent: every Ingress (by namespace and name) and
 * the kubernetes.io/tls Secrets their `tls` entries name. A Secret that is missing, of another
 * type or without both keys is left out and logged: the hosts it was for get the default
 * certificate on the device.
 */
export function buildIngressSection(store: ObjectStore, log?: Logger): DesiredIngress {
  return readIngresses(store, log).section;
}

function readIngresses(store: ObjectStore, log?: Logger): { section: DesiredIngress; named: Set<string> } {
  const ingresses = store
    .list('Ingress')
    .items.filter((i) => !i.metadata.deletionTimestamp)
    .map((i) => ({ namespace: i.metadata.namespace ?? 'default', name: i.metadata.name, spec: i.spec as IngressSpec }))
    .sort((a, b) => (a.namespace === b.namespace ? a.name.localeCompare(b.name) : a.namespace.localeCompare(b.namespace)));
  const wanted = new Set<string>();
  for (const i of ingresses) for (const t of i.spec.tls ?? []) if (t.secretName) wanted.add(`${i.namespace}/${t.secretName}`);
  const certificates: IngressCertificate[] = [];
  for (const key of [...wanted].sort()) {
    const [namespace, name] = key.split('/') as [string, string];
    const secret = store.get('Secret', namespace, name);
    const problem = secretProblem(secret);
    if (problem) {
      log?.warn({ secret: key }, `an Ingress names a Secret that ${problem}; left out`);
      continue;
    }
    const data = secret!.data as Record<string, string>;
    certificates.push({ namespace, name, cert: data['tls.crt']!, key: data['tls.key']!, resourceVersion: secret!.metadata.resourceVersion });
  }
  return { section: { ingresses, certificates }, named: wanted };
}

/** Why a Secret cannot serve an Ingress's TLS, or undefined when it can. */
function secretProblem(secret: StoredObject | undefined): string | undefined {
  if (!secret) return 'does not exist';
  const data = secret.data as Record<string, string> | undefined;
  if (secret.type !== 'kubernetes.io/tls') return `is of type ${String(secret.type ?? 'Opaque')}, not kubernetes.io/tls`;
  if (!data?.['tls.crt'] || !data['tls.key']) return 'lacks tls.crt or tls.key';
  return undefined;
}

/**
 * For the dispatcher (hub/dispatch/desired.ts): the section of an ingress device, computed once
 * per change of the Ingresses or their Secrets; a change marks only the ingress devices dirty.
 */
export class IngressDispatch {
  private section: DesiredIngress | undefined;
  /** The Secrets (namespace/name) the Ingresses name now. */
  private named = new Set<string>();
  /** Each Ingress's spec as last seen, so that a status write is told from a change. */
  private readonly specs = new Map<string, string>();

  constructor(
    private readonly store: ObjectStore,
    private readonly log?: Logger,
  ) {}

  /** The node's `ingress` section: undefined unless it is an ingress device. */
  sectionFor(node: StoredObject): DesiredIngress | undefined {
    if (!isIngressNode(node)) return undefined;
    if (!this.section) {
      const read = readIngresses(this.store, this.log);
      this.section = read.section;
      this.named = read.named;
    }
    return this.section;
  }

  /** Watches Ingresses and Secrets; `dirty` gets the ingress devices whose set changes. */
  watch(dirty: (nodes: string[]) => void): (() => void)[] {
    const ingressNodes = () => this.store.list('Node', { filter: isIngressNode }).items.map((n) => n.metadata.name);
    const changed = () => {
      this.section = undefined;
      const nodes = ingressNodes();
      if (nodes.length) dirty(nodes);
    };
    return [
      this.store.watch({ kind: 'Ingress' }, (e) => {
        // A status write (the addresses below) changes no desired set: only a spec, a creation or a deletion does.
        const key = `${e.object.metadata.namespace ?? 'default'}/${e.object.metadata.name}`;
        const spec = JSON.stringify(e.object.spec);
        if (e.type === 'MODIFIED' && this.specs.get(key) === spec) return;
        if (e.type === 'DELETED') this.specs.delete(key);
        else this.specs.set(key, spec);
        changed();
      }),
      this.store.watch({ kind: 'Secret' }, (e) => {
        if (this.section !== undefined && this.named.has(`${e.object.metadata.namespace ?? 'default'}/${e.object.metadata.name}`)) changed();
      }),
    ];
  }
}

/**
 * Keeps each Ingress's status.loadBalancer.ingress: the addresses of the ingress devices, in
 * name order, as a cloud load balancer's address is written there. Runs on any change of an
 * Ingress, of a Secret, or of a Node's ingress label or address; writes only what differs. A
 * `tls` entry whose Secret cannot serve (missing, of another type, without both keys) is told
 * in a Warning event on the Ingress (TLSSecretUnusable), once for each new finding.
 */
export class IngressStatusWriter {
  private unwatch: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private nodeInputs = new Map<string, string>();
  /** The TLS problems last told of each Ingress (namespace/name). */
  private readonly told = new Map<string, string>();

  constructor(
    private readonly store: ObjectStore,
    private readonly log: Logger,
    private readonly events?: EventRecorder,
  ) {}

  start(): void {
    this.unwatch.push(
      this.store.watch({ kind: 'Node' }, (e) => {
        const inputs = e.type === 'DELETED' ? '' : JSON.stringify([isIngressNode(e.object), ingressAddress(e.object)]);
        if (this.nodeInputs.get(e.object.metadata.name) === inputs) return;
        this.nodeInputs.set(e.object.metadata.name, inputs);
        this.soon();
      }),
      this.store.watch({ kind: 'Ingress' }, (e) => {
        if (e.type !== 'DELETED') this.soon();
        else this.told.delete(`${e.object.metadata.namespace ?? 'default'}/${e.object.metadata.name}`);
      }),
      this.store.watch({ kind: 'Secret' }, () => this.soon()),
    );
    this.soon();
  }

  stop(): void {
    for (const u of this.unwatch) u();
    this.unwatch = [];
    if (this.timer) clearTimeout(this.timer);
  }

  private soon(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      try {
        this.sync();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'ingress status not written; trying again');
        this.soon();
      }
    }, 100);
    this.timer.unref();
  }

  /** The load balancer addresses now. */
  addresses(): { ip: string }[] {
    return this.store
      .list('Node', { filter: isIngressNode })
      .items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
      .flatMap((n) => {
        const ip = ingressAddress(n);
        return ip ? [{ ip }] : [];
      });
  }

  sync(): void {
    const ingress = this.addresses();
    const wanted = JSON.stringify(ingress);
    this.store.transaction(() => {
      for (const obj of this.store.list('Ingress').items) {
        this.tellTlsProblems(obj);
        const status = (obj.status as IngressStatus | undefined) ?? {};
        if (JSON.stringify(status.loadBalancer?.ingress ?? []) === wanted) continue;
        this.store.updateStatus('Ingress', obj.metadata.namespace, obj.metadata.name, { ...status, loadBalancer: ingress.length ? { ingress } : {} });
      }
    });
  }

  private tellTlsProblems(obj: StoredObject): void {
    const namespace = obj.metadata.namespace ?? 'default';
    const problems: string[] = [];
    for (const t of (obj.spec as IngressSpec).tls ?? []) {
      if (!t.secretName) continue;
      const problem = secretProblem(this.store.get('Secret', namespace, t.secretName));
      if (problem) problems.push(`Secret ${namespace}/${t.secretName} ${problem}: ${(t.hosts ?? []).join(', ') || 'its hosts'} get the default certificate`);
    }
    const key = `${namespace}/${obj.metadata.name}`;
    const text = JSON.stringify(problems);
    if (this.told.get(key) === text) return;
    this.told.set(key, text);
    for (const message of problems) this.events?.warning(obj, 'TLSSecretUnusable', message);
  }
}
