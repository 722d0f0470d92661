import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import { encodePayload } from '../../shared/protocol/messages.js';
import type { NodeNetworkReport, PeerAnnouncement } from '../../shared/protocol/network.js';
import type { Topics } from '../../shared/protocol/topics.js';
import type { NodeSpec, NodeStatus } from '../../shared/resources/node.js';
import type { MessageBus } from '../broker/bus.js';
import { WorkQueue } from '../controllers/queue.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject } from '../store/types.js';
import { ENDPOINTS_ANNOTATION } from './annotations.js';
import { peerContent, type PeerContent } from './peer-announcement.js';
import { PeerTable, type PeerRow } from './tables.js';

export interface PeerPublisherOptions {
  db: Database;
  store: ObjectStore;
  bus: MessageBus;
  topics: Topics;
  log: Logger;
  /**
   * The broker keeps retained messages over a hub restart (an external broker): the publisher
   * then reads what it retains under network/peers/+ once at start, to clear peers of nodes
   * deleted meanwhile. The embedded broker's retained messages go with the hub's process.
   */
  retainedOutlivesHub?: boolean;
  /** The IPAM's record of a node's pod CIDR, over spec.podCIDR (see Dispatcher). */
  podCIDROf?: (node: string) => string | undefined;
  /** Where the hub's relay sees a device's WireGuard packets come from (hub/network/relay.ts); absent without a relay. */
  observedEndpoint?: (node: string) => { address: string; port: number } | undefined;
}

export type OverlayState = 'ready' | 'unavailable' | 'disabled';

/**
 * Publishes one retained message per peer of the overlay on `network/peers/{node}` (QoS 1): a
 * node with a pod CIDR whose agent reported a WireGuard public key. A device joining, leaving or
 * moving costs every other device that one message. A message is published again only when its
 * content changes, with a higher generation; a node deleted, or whose overlay is off, gets an
 * empty retained payload, which clears the topic.
 *
 * The last message of each peer is kept in a table: a restarted hub republishes every peer with
 * the generation devices already have (the embedded broker keeps retained messages in memory
 * only), keeps a device's last hub-observed address until the device connects again, and clears
 * what it published for nodes deleted while it was down.
 */
export class PeerPublisher {
  readonly queue: WorkQueue;
  private readonly table: PeerTable;
  private readonly rows = new Map<string, PeerRow>();
  /** Peers published (or cleared) since this hub started. */
  private readonly published = new Set<string>();
  /** What of each node decides its message, as last seen by the watch. */
  private readonly inputs = new Map<string, string>();
  private readonly states = new Map<string, OverlayState>();
  /** Retained messages found for nodes that do not exist (an external broker keeps them over a hub restart). */
  private readonly stale = new Set<string>();
  private unwatch: (() => void) | undefined;

  constructor(private readonly opts: PeerPublisherOptions) {
    this.table = new PeerTable(opts.db);
    this.queue = new WorkQueue('peers', (node) => this.reconcile(node), opts.log);
  }

  async start(): Promise<void> {
    for (const row of this.table.rows()) this.rows.set(row.node, row);
    const { store, bus, topics } = this.opts;
    bus.onDeviceConnected?.((node) => this.refresh(node));
    // What the broker retains from before this start: a peer of no node is cleared. (The
    // subscription stays with the hub's session; its own publications come back to it, and are
    // of nodes that exist.)
    if (this.opts.retainedOutlivesHub) {
      await bus.subscribe(topics.allPeers(), (topic, payload) => {
        const node = topics.parsePeerTopic(topic);
        if (node === undefined || payload.length === 0 || store.has('Node', '', node)) return;
        this.stale.add(node);
        this.queue.add(node);
      });
    }
    const nodes = store.list('Node');
    this.unwatch = store.watch({ kind: 'Node', fromResourceVersion: nodes.resourceVersion }, (e) => {
      const name = e.object.metadata.name;
      if (e.type === 'DELETED') {
        this.inputs.delete(name);
        this.states.delete(name);
        this.queue.add(name);
        return;
      }
      if (this.observe(e.object)) this.queue.add(name);
    });
    for (const node of nodes.items) {
      this.observe(node);
      this.queue.add(node.metadata.name);
    }
    for (const node of this.rows.keys()) this.queue.add(node);
  }

  stop(): void {
    this.unwatch?.();
    this.unwatch = undefined;
    this.queue.stop();
  }

  /** Looks at a node's peer again: its device connected, or the relay saw it elsewhere. */
  refresh(node: string): void {
    this.queue.add(node);
  }

  /** Nodes by the state of their overlay, for /metrics (nodes whose agent reports none are not counted). */
  overlayCounts(): Record<OverlayState, number> {
    const counts: Record<OverlayState, number> = { ready: 0, unavailable: 0, disabled: 0 };
    for (const state of this.states.values()) counts[state]++;
    return counts;
  }

  /** Notes what the node's message depends on; true when that changed. */
  private observe(node: StoredObject): boolean {
    const name = node.metadata.name;
    const overlay = (node.status as NodeStatus | undefined)?.overlay;
    if (overlay) this.states.set(name, overlay.overlay === 'none' ? 'disabled' : overlay.ready ? 'ready' : 'unavailable');
    else this.states.delete(name);
    const key = JSON.stringify([(node.spec as NodeSpec | undefined)?.podCIDR, overlay?.overlay, overlay?.publicKey, overlay?.port, overlay?.advertiseAddress, overlay?.addresses]);
    if (this.inputs.get(name) === key) return false;
    this.inputs.set(name, key);
    return true;
  }

  /** The message the node's peer should carry now; undefined when it is no peer. */
  private contentOf(name: string, node: StoredObject | undefined): PeerContent | undefined {
    if (!node) return undefined;
    const previous = this.rows.get(name);
    const before = previous?.message ? (JSON.parse(previous.message) as PeerContent) : undefined;
    // A device not connected now keeps the address it last connected from.
    const hubObserved = this.opts.bus.remoteAddress?.(name) ?? before?.publicAddress;
    return peerContent({
      node: name,
      podCIDR: this.opts.podCIDROf?.(name) ?? (node.spec as NodeSpec | undefined)?.podCIDR,
      overlay: (node.status as NodeStatus | undefined)?.overlay as NodeNetworkReport | undefined,
      ...(hubObserved ? { hubObserved } : {}),
      relayObserved: this.opts.observedEndpoint?.(name),
    });
  }

  async reconcile(name: string): Promise<void> {
    const { store, bus, topics, log } = this.opts;
    const node = store.get('Node', '', name);
    const content = this.contentOf(name, node);
    const previous = this.rows.get(name);
    const topic = topics.peer(name);
    if (!content) {
      const clear = (previous !== undefined && (previous.message !== '' || !this.published.has(name))) || this.stale.has(name);
      if (clear) {
        // An empty retained payload clears the topic [MQTT-3.3.1-10]: devices drop the peer.
        await bus.publish(topic, Buffer.alloc(0), { qos: 1, retain: true });
        log.info({ node: name, deleted: !node }, 'peer cleared');
      }
      this.stale.delete(name);
      if (!node) {
        this.table.delete(name);
        this.rows.delete(name);
      } else {
        if (previous && previous.message !== '') {
          const row = { ...previous, message: '' };
          this.table.write(row);
          this.rows.set(name, row);
        }
        this.annotate(name, undefined);
      }
      this.published.add(name);
      return;
    }
    const text = JSON.stringify(content);
    if (previous?.message === text && this.published.has(name)) return;
    const generation = previous?.message === text ? previous.generation : nextGeneration(previous?.generation);
    const row: PeerRow = { node: name, generation, message: text };
    this.table.write(row);
    this.rows.set(name, row);
    this.published.delete(name);
    const message: PeerAnnouncement = { ...content, generation };
    await bus.publish(topic, encodePayload(message), { qos: 1, retain: true });
    this.published.add(name);
    this.annotate(name, content);
    log.debug({ node: name, generation, endpoints: content.endpoints.length }, 'peer published');
  }

  /** The endpoints as published, on the node for `flotilla describe node` (as flannel notes a node's public IP). */
  private annotate(name: string, content: PeerContent | undefined): void {
    const text = content ? endpointsAnnotation(content) : undefined;
    this.opts.store.mutate('Node', '', name, (cur) => {
      const annotations = { ...(cur.metadata.annotations ?? {}) };
      if (annotations[ENDPOINTS_ANNOTATION] === text) return undefined;
      if (text === undefined) delete annotations[ENDPOINTS_ANNOTATION];
      else annotations[ENDPOINTS_ANNOTATION] = text;
      return { ...cur, metadata: { ...cur.metadata, annotations } };
    });
  }
}

export function endpointsAnnotation(content: PeerContent): string {
  return content.endpoints.map((e) => `${e.address}:${e.port} ${e.source}`).join(', ') || '<none>';
}

/**
 * A generation above the last, and never below the clock's seconds: a node deleted and joined
 * again under its name (its row gone), or a hub whose table was lost, still counts up from what
 * devices have seen.
 */
export function nextGeneration(last: number | undefined): number {
  return Math.max((last ?? 0) + 1, Math.floor(Date.now() / 1000));
}
