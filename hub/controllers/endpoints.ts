import { matches, selectorFromMap, type Selector } from '../../shared/labels/selector.js';
import type { PodSpec } from '../../shared/resources/pod.js';
import { MANAGED_BY_LABEL, SERVICE_NAME_LABEL, type ServiceSpec } from '../../shared/resources/service.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import type { WatchOptions } from '../store/watch.js';
import { Controller, type ControllerContext } from './controller.js';
import { buildSlices, buildSubsets, countAddresses, nodeAddress, nodeSite, type EndpointSliceDraft, type EndpointSubset } from './endpoints-build.js';
import { objectKey, splitKey } from './queue.js';

/**
 * Kubernetes' endpoints controller: for every Service with a selector, an Endpoints object of
 * the same name and namespace that lists the pods the selector picks (ready ones in
 * `addresses`, the others in `notReadyAddresses`) with the ports they are reached on, and
 * beside it the Service's EndpointSlices (labelled kubernetes.io/service-name), whose
 * endpoints carry their conditions, node and zone; see endpoints-build.ts for how an address
 * and port are chosen. A
 * Service without a selector gets no Endpoints (Endpoints are the hub's to write here), and
 * deleting a Service deletes its Endpoints and slices.
 *
 * Woken by Services, by the pods a Service selects now or listed last time (a pod whose labels
 * change leaves), by a node whose address or site changes, and by its own Endpoints and slices
 * (one deleted or edited by hand is put back).
 */
export class EndpointsController extends Controller {
  /** The selector of every Service that has one, by namespace, then name. */
  private readonly selectors = new Map<string, Map<string, Selector>>();
  /** Which Services listed each pod (ns/name) last time. */
  private readonly listedPod = new Map<string, Set<string>>();
  /** Which Services listed a pod on each node last time, and the node's address then. */
  private readonly listedOnNode = new Map<string, Set<string>>();
  private readonly nodeAddresses = new Map<string, string | undefined>();
  /** The pods and nodes each Service listed last time: the reverse of the two indexes above. */
  private readonly members = new Map<string, { pods: string[]; nodes: string[] }>();
  /** The counts last announced in an event, per Service key. */
  private readonly announced = new Map<string, string>();

  constructor(ctx: ControllerContext) {
    super('endpoints', ctx);
  }

  protected triggers(): [WatchOptions, (e: WatchEvent) => Iterable<string> | string | undefined][] {
    return [
      [{ kind: 'Service' }, (e) => this.rememberService(e.object, e.type === 'DELETED')],
      [{ kind: 'Endpoints' }, (e) => objectKey(e.object.metadata.namespace, e.object.metadata.name)],
      [{ kind: 'EndpointSlice' }, (e) => (e.object.metadata.labels?.[SERVICE_NAME_LABEL] ? objectKey(e.object.metadata.namespace, e.object.metadata.labels[SERVICE_NAME_LABEL]) : undefined)],
      [{ kind: 'Pod' }, (e) => this.servicesOfPod(e.object)],
      [
        { kind: 'Node' },
        (e) => {
          const name = e.object.metadata.name;
          const address = e.type === 'DELETED' ? undefined : nodeInputs(e.object);
          if (this.nodeAddresses.has(name) && this.nodeAddresses.get(name) === address) return undefined;
          this.nodeAddresses.set(name, address);
          return this.listedOnNode.get(name);
        },
      ],
    ];
  }

  protected initialKeys(): Iterable<string> {
    const keys = new Set<string>();
    for (const svc of this.store.list('Service').items) keys.add(this.rememberService(svc, false));
    // Endpoints whose Service is gone (deleted while the hub was down) are cleaned up too.
    for (const ep of this.store.list('Endpoints').items) keys.add(objectKey(ep.metadata.namespace, ep.metadata.name));
    for (const slice of this.store.list('EndpointSlice').items) {
      const service = slice.metadata.labels?.[SERVICE_NAME_LABEL];
      if (service) keys.add(objectKey(slice.metadata.namespace, service));
    }
    return keys;
  }

  private rememberService(svc: StoredObject, deleted: boolean): string {
    const ns = svc.metadata.namespace ?? 'default';
    const selector = (svc.spec as ServiceSpec | undefined)?.selector;
    const inNs = this.selectors.get(ns) ?? new Map<string, Selector>();
    if (deleted || !selector || Object.keys(selector).length === 0) inNs.delete(svc.metadata.name);
    else inNs.set(svc.metadata.name, selectorFromMap(selector));
    this.selectors.set(ns, inNs);
    return objectKey(ns, svc.metadata.name);
  }

  private servicesOfPod(pod: StoredObject): Set<string> {
    const ns = pod.metadata.namespace ?? 'default';
    const keys = new Set(this.listedPod.get(objectKey(ns, pod.metadata.name)) ?? []);
    for (const [name, selector] of this.selectors.get(ns) ?? []) {
      if (matches(selector, pod.metadata.labels)) keys.add(objectKey(ns, name));
    }
    return keys;
  }

  reconcile(key: string): void {
    const { namespace, name } = splitKey(key);
    const svc = this.store.get('Service', namespace, name);
    const selector = (svc?.spec as ServiceSpec | undefined)?.selector;
    if (!svc || !selector || Object.keys(selector).length === 0) {
      this.forget(key);
      this.announced.delete(key);
      if (this.store.get('Endpoints', namespace, name)) {
        this.store.delete('Endpoints', namespace, name);
        this.log.debug({ service: key }, 'deleted the Endpoints of a Service that is gone or has no selector');
      }
      this.writeSlices(namespace, name, undefined, []);
      return;
    }
    const pods = this.store.list('Pod', { namespace, selector: selectorFromMap(selector) }).items;
    const nodes = new Map<string, StoredObject | undefined>();
    const nodeOf = (n: string) => {
      if (!nodes.has(n)) nodes.set(n, this.store.get('Node', '', n));
      return nodes.get(n);
    };
    const subsets = buildSubsets(svc, pods, nodeOf);
    this.write(svc, subsets);
    this.writeSlices(namespace, name, svc, buildSlices(svc, pods, nodeOf));
    this.remember(key, pods, nodes);
    this.announce(svc, key, subsets);
  }

  private write(svc: StoredObject, subsets: EndpointSubset[]): void {
    const namespace = svc.metadata.namespace ?? 'default';
    const name = svc.metadata.name;
    const labels = svc.metadata.labels;
    const existing = this.store.get('Endpoints', namespace, name);
    if (!existing) {
      this.store.create({ apiVersion: 'flotilla/v1', kind: 'Endpoints', metadata: { name, namespace, ...(labels ? { labels } : {}) }, ...(subsets.length ? { subsets } : {}) });
      return;
    }
    // The store writes nothing when the result is identical.
    this.store.mutate('Endpoints', namespace, name, (cur) => {
      const next: StoredObject = { ...cur, metadata: { ...cur.metadata } };
      if (labels) next.metadata.labels = labels;
      else delete next.metadata.labels;
      if (subsets.length) next.subsets = subsets;
      else delete next.subsets;
      return next;
    });
  }

  /** The Service's slices made what `drafts` says; slices of it that are not drafted are deleted. */
  private writeSlices(namespace: string, name: string, svc: StoredObject | undefined, drafts: EndpointSliceDraft[]): void {
    const existing = this.store.list('EndpointSlice', { namespace, selector: selectorFromMap({ [SERVICE_NAME_LABEL]: name }) }).items;
    const wanted = new Set(drafts.map((d) => d.name));
    for (const slice of existing) if (!wanted.has(slice.metadata.name)) this.store.delete('EndpointSlice', namespace, slice.metadata.name);
    if (!svc) return;
    const labels = { ...(svc.metadata.labels ?? {}), [SERVICE_NAME_LABEL]: name, [MANAGED_BY_LABEL]: 'endpointslice-controller.flotilla.io' };
    const ownerReferences = [{ apiVersion: 'v1', kind: 'Service', name, uid: svc.metadata.uid, controller: true }];
    for (const draft of drafts) {
      if (!existing.some((s) => s.metadata.name === draft.name)) {
        this.store.create({ apiVersion: 'flotilla/v1', kind: 'EndpointSlice', metadata: { name: draft.name, namespace, labels, ownerReferences }, ...draft.fields } as unknown as StoredObject);
        continue;
      }
      // The store writes nothing when the result is identical.
      this.store.mutate('EndpointSlice', namespace, draft.name, (cur) => {
        const { endpoints: _e, ports: _p, addressType: _a, ...rest } = cur as StoredObject & Record<string, unknown>;
        return { ...rest, metadata: { ...cur.metadata, labels, ownerReferences }, ...draft.fields } as unknown as StoredObject;
      });
    }
  }

  private remember(key: string, pods: StoredObject[], nodes: Map<string, StoredObject | undefined>): void {
    this.forget(key);
    const podKeys = pods.map((p) => objectKey(p.metadata.namespace, p.metadata.name));
    const nodeNames = [...new Set(pods.map((p) => (p.spec as PodSpec).nodeName).filter((n): n is string => Boolean(n)))];
    for (const podKey of podKeys) this.listedPod.set(podKey, (this.listedPod.get(podKey) ?? new Set()).add(key));
    for (const node of nodeNames) this.listedOnNode.set(node, (this.listedOnNode.get(node) ?? new Set()).add(key));
    this.members.set(key, { pods: podKeys, nodes: nodeNames });
    for (const [n, node] of nodes) this.nodeAddresses.set(n, nodeInputs(node));
  }

  private forget(key: string): void {
    const last = this.members.get(key);
    if (!last) return;
    this.members.delete(key);
    const drop = (index: Map<string, Set<string>>, k: string) => {
      const keys = index.get(k);
      keys?.delete(key);
      if (keys?.size === 0) index.delete(k);
    };
    for (const p of last.pods) drop(this.listedPod, p);
    for (const n of last.nodes) drop(this.listedOnNode, n);
  }

  /** An event on the Service when the number of ready or not-ready endpoints changes. */
  private announce(svc: StoredObject, key: string, subsets: EndpointSubset[]): void {
    const { ready, notReady } = countAddresses(subsets);
    const message = `Endpoints now list ${ready} ready and ${notReady} not-ready address(es)`;
    if (this.announced.get(key) === message) return;
    this.announced.set(key, message);
    this.events.normal(svc, 'EndpointsUpdated', message);
  }
}

/** What of a node its Services' endpoints depend on: its address and its site. */
function nodeInputs(node: StoredObject | undefined): string | undefined {
  const address = nodeAddress(node);
  const site = nodeSite(node);
  return address === undefined && site === undefined ? undefined : `${address ?? ''} ${site ?? ''}`;
}
