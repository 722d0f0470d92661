import type { Logger } from 'pino';
import { DEFAULT_TOOLS, deleteInterface, show, syncConfig, type WireguardImplementation, type WireguardTools } from '../../shared/net/wireguard.js';
import type { Topics } from '../../shared/protocol/topics.js';
import type { MessageBus } from '../broker/bus.js';
import type { HubConfig } from '../config.js';
import { WorkQueue } from '../controllers/queue.js';
import type { Family } from '../metrics/prometheus.js';
import { HubStartError, inDataDir } from '../startup.js';
import type { ObjectStore } from '../store/objects.js';
import { loadOrCreateRelayKey, type RelayKey } from './relay-key.js';
import { observeEndpoints, RelayCounters, type ObservedEndpoint } from './relay-observe.js';
import { peerSignature, planPeers, relayAnnouncement, wireguardPeers, type RelayPeer } from './relay-plan.js';
import { bringUpRelay, removeRelay } from './relay-setup.js';

/**
 * The hub's WireGuard relay (docs/ARCHITECTURE.md, 'The relay'): a peer of every device, which
 * forwards between devices that cannot reach each other directly. Its peers follow the Nodes,
 * level-triggered: a change of a node's pod CIDR or key marks the peer set dirty, and one
 * `wg syncconf` applies every change of a burst. Every few seconds it reads its interface back:
 * the endpoints devices' packets come from (relay-observed endpoints, for the peer messages),
 * its figures for /metrics, and whether the interface is still there as it should be.
 *
 * Stopping the hub leaves the interface up: a wireguard-go relay goes on forwarding while the
 * hub restarts, and the next start finds it and carries on.
 */
export interface RelayOptions {
  config: Pick<HubConfig, 'relay' | 'relayPort' | 'relayInterface' | 'relayEndpoint' | 'clusterCIDR'>;
  dataDir: string;
  store: ObjectStore;
  bus: MessageBus;
  topics: Topics;
  log: Logger;
  tools?: WireguardTools;
  /** How often the interface is read back (default 5 s). */
  pollIntervalMs?: number;
}

const PEERS_KEY = 'peers';
/** A burst of Node changes within this is applied with one `wg syncconf`. */
const COALESCE_MS = 200;
export const RELAY_POLL_MS = 5_000;

export class Relay {
  private up = false;
  private implementation: WireguardImplementation | undefined;
  private key: RelayKey | undefined;
  private readonly tools: WireguardTools;
  private readonly queue: WorkQueue;
  private unwatch: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The peer set as last applied (its JSON), and what each node's entry was made from. */
  private applied = '';
  private peers: RelayPeer[] = [];
  private readonly signatures = new Map<string, string>();
  private nodeOfKey = new Map<string, string>();
  /** Set when the interface went missing or drifted: the next pass makes it again before syncing. */
  private repair = false;
  private observed = new Map<string, ObservedEndpoint>();
  private readonly listeners = new Set<(node: string) => void>();
  private readonly counters = new RelayCounters();
  private polling = false;

  private constructor(private readonly opts: RelayOptions) {
    this.tools = opts.tools ?? DEFAULT_TOOLS;
    this.queue = new WorkQueue('relay', () => this.reconcile(), opts.log);
  }

  /**
   * Starts the relay as --relay says. `auto` turns it off, with a warning naming what is
   * missing, where the hub cannot make the interface; `on` makes that a start-up error; `off`
   * removes an interface an earlier run left. Either way the retained announcement says
   * whether devices have a relay.
   */
  static async start(opts: RelayOptions): Promise<Relay> {
    const relay = new Relay(opts);
    await relay.begin();
    return relay;
  }

  private async begin(): Promise<void> {
    const { config, log } = this.opts;
    const iface = config.relayInterface;
    if (config.relay === 'off') {
      const removed = await removeRelay(iface, this.tools).catch((err: unknown) => {
        log.warn({ err, interface: iface }, 'could not remove the relay interface of an earlier run');
        return undefined;
      });
      if (removed) log.info({ interface: iface, implementation: removed }, 'relay off (--relay off): removed the relay interface an earlier run left');
      await this.announce();
      return;
    }
    this.key = inDataDir(this.opts.dataDir, () => loadOrCreateRelayKey(this.opts.dataDir));
    let made: Awaited<ReturnType<typeof bringUpRelay>> | undefined;
    try {
      made = await bringUpRelay(iface, config.clusterCIDR, this.tools);
      await this.reconcile();
    } catch (err) {
      this.stop();
      // An interface this start made and could not configure is not left behind.
      if (made?.created) await deleteInterface(iface, this.tools).catch(() => undefined);
      const why = (err as Error).message;
      if (config.relay === 'on') throw new HubStartError('--relay', `--relay on: cannot run the relay on interface ${iface}: ${why}`, { cause: err });
      log.warn({ interface: iface, reason: why }, `the relay is off: this hub cannot make its WireGuard interface (${why}); devices that cannot reach each other directly have no path. Pass --relay off to say so, or --relay on to require it`);
      await this.announce();
      return;
    }
    this.implementation = made.implementation;
    // Watched from here on; a change between the first pass's list and now is caught by one more pass.
    this.watchNodes();
    this.queue.add(PEERS_KEY);
    this.up = true;
    await this.announce();
    await this.poll();
    this.timer = setInterval(() => void this.poll(), this.opts.pollIntervalMs ?? RELAY_POLL_MS);
    this.timer.unref();
    log.info({ interface: iface, implementation: this.implementation, port: config.relayPort, publicKey: this.key.publicKey, peers: this.peers.length }, 'relay up');
  }

  /** The endpoint the relay last saw the node's WireGuard packets come from (its NAT's mapping toward the hub). */
  observedEndpoint(node: string): ObservedEndpoint | undefined {
    return this.observed.get(node);
  }

  /** Calls `listener(node)` whenever a node's observed endpoint appears, moves or goes. */
  onObservedChange(listener: (node: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get running(): boolean {
    return this.up;
  }

  /** Leaves the interface in place (see the class comment). */
  stop(): void {
    if (this.up) this.opts.log.info({ interface: this.opts.config.relayInterface, implementation: this.implementation }, 'relay left running: its interface forwards between devices while the hub is away');
    this.unwatch?.();
    this.unwatch = undefined;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.queue.stop();
    this.up = false;
  }

  private watchNodes(): void {
    this.unwatch = this.opts.store.watch({ kind: 'Node' }, (e) => {
      const name = e.object.metadata.name;
      const signature = e.type === 'DELETED' ? undefined : peerSignature(e.object);
      // Status reports change a node every few seconds; only its key, CIDR or overlay matter here.
      if (signature === this.signatures.get(name)) return;
      this.queue.addWithin(PEERS_KEY, COALESCE_MS);
    });
  }

  /** Makes the interface's peers the plan's: every Node's current state, whatever woke it. */
  private async reconcile(): Promise<void> {
    const { config, store, log } = this.opts;
    if (this.repair) {
      await bringUpRelay(config.relayInterface, config.clusterCIDR, this.tools);
      this.applied = '';
      this.repair = false;
    }
    const nodes = store.list('Node').items;
    const plan = planPeers(nodes, this.key!.publicKey);
    const text = JSON.stringify(plan.peers);
    this.signatures.clear();
    for (const node of nodes) this.signatures.set(node.metadata.name, peerSignature(node));
    if (text === this.applied) return;
    await syncConfig(config.relayInterface, this.key!.privateKey, config.relayPort, wireguardPeers(plan.peers), this.tools);
    for (const r of plan.refused) log.warn({ node: r.node, reason: r.reason }, 'node left out of the relay');
    this.applied = text;
    this.peers = plan.peers;
    this.nodeOfKey = new Map(plan.peers.map((p) => [p.publicKey, p.node]));
    log.info({ peers: plan.peers.length, refused: plan.refused.length }, 'relay peers applied');
  }

  /** Reads the interface back: observed endpoints, figures, and drift (the interface gone, or its peers not the plan's). */
  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const state = await show(this.opts.config.relayInterface, this.tools).catch(() => undefined);
      if (!state) {
        if (!this.repair) this.opts.log.warn({ interface: this.opts.config.relayInterface }, 'the relay interface is gone: making it again');
        this.repair = true;
        this.queue.add(PEERS_KEY);
        return;
      }
      this.counters.update(state, Date.now());
      const configured = new Set(state.peers.map((p) => `${p.publicKey} ${p.allowedIPs.join(',')}`));
      if (configured.size !== this.peers.length || this.peers.some((p) => !configured.has(`${p.publicKey} ${p.podCIDR}`))) {
        this.applied = '';
        this.queue.add(PEERS_KEY);
      }
      const { endpoints, changed } = observeEndpoints(this.observed, state, this.nodeOfKey);
      this.observed = endpoints;
      for (const node of changed) {
        const endpoint = endpoints.get(node);
        // Debug: at start every device's endpoint appears at once.
        this.opts.log.debug({ node, endpoint: endpoint ? `${endpoint.address}:${endpoint.port}` : null }, 'relay-observed endpoint');
        for (const listener of this.listeners) {
          try {
            listener(node);
          } catch (err) {
            this.opts.log.error({ err, node }, 'relay-observed endpoint listener failed');
          }
        }
      }
    } finally {
      this.polling = false;
    }
  }

  /** The retained announcement on network/relay; an empty retained payload when there is no relay. */
  private async announce(): Promise<void> {
    const { config, bus, topics } = this.opts;
    const payload = this.key && this.implementation ? Buffer.from(JSON.stringify(relayAnnouncement(this.key.publicKey, config.relayPort, config.clusterCIDR, config.relayEndpoint))) : Buffer.alloc(0);
    await bus.publish(topics.relay(), payload, { qos: 1, retain: true });
  }

  families(): Family[] {
    const c = this.counters;
    return [
      { name: 'flotilla_relay_up', help: "1 while the hub's WireGuard relay runs, else 0 (--relay off, the hub cannot make the interface, or it is making it again: see its log).", type: 'gauge', samples: [{ value: this.up && !this.repair ? 1 : 0 }] },
      { name: 'flotilla_relay_peers', help: 'Devices configured as peers of the relay.', type: 'gauge', samples: [{ value: this.up ? c.peers : 0 }] },
      { name: 'flotilla_relay_peers_connected', help: 'Relay peers whose last handshake is under 3 minutes old.', type: 'gauge', samples: [{ value: this.up ? c.connected : 0 }] },
      { name: 'flotilla_relay_rx_bytes_total', help: 'Bytes the relay received from devices (all relayed traffic: the hub has no pods).', type: 'counter', samples: [{ value: c.rxBytes }] },
      { name: 'flotilla_relay_tx_bytes_total', help: 'Bytes the relay sent to devices.', type: 'counter', samples: [{ value: c.txBytes }] },
      { name: 'flotilla_relay_handshakes_total', help: 'WireGuard handshakes the relay completed with devices (changes of a peer\'s latest handshake seen).', type: 'counter', samples: [{ value: c.handshakes }] },
    ];
  }
}
