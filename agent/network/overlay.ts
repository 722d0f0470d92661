import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { MAX_NODE_MESSAGE_LENGTH, MAX_REASON_LENGTH, truncate } from '../../shared/protocol/bounds.js';
import { MAX_PEERS_PER_REPORT, type DesiredNetwork, type NodeNetworkReport } from '../../shared/protocol/network.js';
import type { ContainerRuntime, EngineInfo, RuntimeContainer } from '../runtime/runtime.js';
import type { Waiting } from '../reconcile/status.js';
import { NetStepError } from './execute.js';
import { KEY_FILE, loadOrCreateKey, type WireguardKey } from './key.js';
import { PathSelector, type PathInput, type PathPlan } from './paths.js';
import { PeerBook } from './peers.js';
import { kernelNetPlane, type NetPlane } from './plane.js';
import { ownAddresses, planNetwork, type NetPlan, type ObservedNetwork } from './plan.js';

export interface OverlayConfig {
  overlay: 'wireguard' | 'none';
  interface: string;
  port: number;
  advertiseAddress?: string;
  stateDir: string;
}

/** The result of a pass, for the pod planner: the network pods join, or why they wait. */
export interface OverlayPass {
  podNetwork?: string;
  /** Pods without a running sandbox wait with this (the kubelet's NetworkNotReady). */
  waiting?: Waiting;
}

/** After a failed step nothing is tried for this long, doubling up to the cap: a device without WireGuard is not asked on every pass. */
const RETRY_INITIAL_MS = 10_000;
const RETRY_MAX_MS = 300_000;
/** How soon a network left in use is looked at again (its pods are being moved). */
const REMOVAL_RECHECK_MS = 3_000;
/** At most this many observe → plan → execute rounds per pass; the next pass goes on. */
const MAX_ROUNDS = 3;

/**
 * The device's side of the overlay (docs/ARCHITECTURE.md, 'The pod network'): at the start of
 * each reconcile it observes the data plane, asks the path selector for the peer set, plans and
 * runs the steps, and says which engine network pods join. What it cannot do (no WireGuard, a
 * CIDR that overlaps the device's own routes) is reported as NetworkUnavailable, never thrown:
 * the agent runs on, and pods that are running are left alone.
 */
export class Overlay {
  readonly book: PeerBook;
  private readonly paths = new PathSelector();
  private readonly plane: NetPlane;
  private key: WireguardKey | undefined;
  private failure: { until: number; delayMs: number; reason: string; message: string } | undefined;
  private last: { plan: NetPlan; observed: ObservedNetwork; paths?: PathPlan; network?: DesiredNetwork } | undefined;
  /** Each entry's latest handshake as last seen, and how many handshakes were seen complete since the agent started. */
  private readonly handshakeSeen = new Map<string, number>();
  private handshakes = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** With --overlay none: whether what the overlay made may still be there, to remove. */
  private cleanup = false;

  constructor(
    readonly config: OverlayConfig,
    private readonly runtime: ContainerRuntime,
    private readonly self: { readonly node: string; relayHost: () => string | undefined },
    private readonly log: Logger,
    private readonly trigger: () => void,
    plane?: NetPlane,
  ) {
    this.plane = plane ?? kernelNetPlane(runtime);
    this.book = new PeerBook({ stateDir: config.stateDir, log, onChange: () => this.trigger() });
  }

  get on(): boolean {
    return this.config.overlay === 'wireguard';
  }

  /** Whether a pass has anything to do: the overlay is on, or what it made before may still be there. */
  get active(): boolean {
    return this.on || this.cleanup;
  }

  /** Reads (or makes) the key and the cached peer set; with the overlay off, nothing. */
  start(): void {
    // A key in the state directory says this agent ran the overlay: only then is there anything
    // of it to remove. An agent that never had it never looks (nor runs `ip` and `nft`).
    this.cleanup = !this.on && [KEY_FILE, `${KEY_FILE}.bak`].some((f) => existsSync(join(this.config.stateDir, f)));
    if (!this.on) return;
    this.key = loadOrCreateKey(this.config.stateDir, (message) => this.log.warn(message));
    this.book.restore();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.on) this.book.stop();
  }

  /** One pass; `containers` are this node's, for the networks still in use. */
  async pass(network: DesiredNetwork | undefined, containers: readonly RuntimeContainer[], engine: EngineInfo | undefined): Promise<OverlayPass> {
    if (!this.active) return {};
    let observed: ObservedNetwork | undefined;
    let plan: NetPlan | undefined;
    let paths: PathPlan | undefined;
    const now = Date.now();
    try {
      for (let round = 0; round < MAX_ROUNDS && !this.stopped; round++) {
        observed = await this.plane.observe({ interface: this.config.interface, node: this.self.node, runtime: this.runtime, containers });
        // The path selector is asked once a pass (it keeps trials and timers of its own); the
        // later rounds only check that its peer set is in place.
        if (round === 0 && this.on) paths = this.paths.plan(this.pathInput(observed, now));
        plan = planNetwork(observed, {
          overlay: this.config.overlay,
          node: this.self.node,
          interface: this.config.interface,
          port: this.config.port,
          privateKey: this.key?.privateKey ?? '',
          publicKey: this.key?.publicKey ?? '',
          ...(network ? { network } : {}),
          peers: paths?.wgPeers ?? [],
          ...(round === 0 && paths?.startHandshake.length ? { startHandshake: paths.startHandshake } : {}),
          routedGateway: routedGateway(engine),
        });
        if (plan.steps.length === 0) {
          this.failure = undefined;
          break;
        }
        if (this.failure && this.failure.until > now) break;
        if (!(await this.runSteps(plan, now))) break;
      }
    } catch (err) {
      // Observing failed (no `ip`, an engine that went away): reported, retried on the next pass.
      this.fail('NetworkUnavailable', `cannot read the device's network: ${(err as Error).message}`, now);
    }
    // With the overlay off, once nothing of it is left the passes stop looking.
    if (!this.on && plan && plan.steps.length === 0 && plan.waitingRemovals.length === 0 && !this.failure) {
      this.cleanup = false;
      this.log.info('nothing of the overlay is left on this device');
    }
    if (observed) this.countHandshakes(observed);
    if (plan && observed) this.last = { plan, observed, ...(paths ? { paths } : {}), ...(network ? { network } : {}) };
    this.schedule(plan, paths, now);
    this.logStatus();
    if (!this.on) return {};
    const ready = plan?.ready && !this.failure;
    if (ready && plan?.podNetwork) return { podNetwork: plan.podNetwork };
    const why = this.failure ?? { reason: plan?.reason ?? 'NetworkUnavailable', message: plan?.message ?? 'the pod network is not set up yet' };
    return { waiting: { reason: 'NetworkNotReady', message: `network is not ready: ${why.reason}: ${why.message}` } };
  }

  private pathInput(observed: ObservedNetwork, now: number): PathInput {
    const relay = this.book.relay();
    const relayHost = this.self.relayHost();
    return { self: { node: this.self.node }, peers: this.book.peers(), ...(relay ? { relay } : {}), ...(relayHost ? { relayHost } : {}), observed: observed.wg?.peers ?? [], now };
  }

  /** Runs the plan's steps in order; the first failure stops them, and nothing is tried again during its back-off. */
  private async runSteps(plan: NetPlan, now: number): Promise<boolean> {
    for (const step of plan.steps) {
      if (this.stopped) return false;
      try {
        await this.plane.run(step);
        this.log.info({ action: step.action, ...describeStep(step) }, 'network step');
      } catch (err) {
        const action = err instanceof NetStepError ? err.action : step.action;
        const message = (err as Error).message;
        this.log.error({ action, err: message }, 'network step failed');
        // The device cannot make the interface (no kernel module, no wireguard-go, no permission).
        if (action === 'createInterface') this.fail('WireGuardUnavailable', message, now);
        else this.fail('NetworkSetupFailed', `${action}: ${message}`, now);
        return false;
      }
    }
    return true;
  }

  private fail(reason: string, message: string, now: number): void {
    const delayMs = this.failure ? Math.min(this.failure.delayMs * 2, RETRY_MAX_MS) : RETRY_INITIAL_MS;
    this.failure = { until: now + delayMs, delayMs, reason, message };
  }

  /** The next pass: when the path selector wants one, a failed step's back-off ends, or a network in use may be free. */
  private schedule(plan: NetPlan | undefined, paths: PathPlan | undefined, now: number): void {
    if (this.stopped) return;
    let delay = Infinity;
    if (paths) delay = Math.min(delay, paths.nextCheckMs);
    if (this.failure) delay = Math.min(delay, Math.max(0, this.failure.until - now) + 50);
    if (plan && plan.waitingRemovals.length > 0) delay = Math.min(delay, REMOVAL_RECHECK_MS);
    clearTimeout(this.timer);
    this.timer = undefined;
    if (delay === Infinity) return;
    this.timer = setTimeout(() => this.trigger(), delay);
    this.timer.unref();
  }

  /**
   * A handshake is counted when an entry's latest handshake moves on. The first sighting of an
   * entry is its baseline: a restarted agent counts only what it sees happen.
   */
  private countHandshakes(observed: ObservedNetwork): void {
    const peers = observed.wg?.peers ?? [];
    const present = new Set<string>();
    for (const p of peers) {
      present.add(p.publicKey);
      const before = this.handshakeSeen.get(p.publicKey);
      if (before !== undefined && p.latestHandshakeMs > before) this.handshakes++;
      this.handshakeSeen.set(p.publicKey, p.latestHandshakeMs);
    }
    for (const key of this.handshakeSeen.keys()) if (!present.has(key)) this.handshakeSeen.delete(key);
  }

  /**
   * The device's overlay series (shared/protocol/metrics.ts, `ovl_*`), from the last pass's
   * figures: peers by path, and bytes summed over peers, so the count of series stays the same
   * however many peers there are.
   */
  emitMetrics(emit: (key: string, value: number) => void): void {
    const last = this.last;
    if (!this.on || !last?.paths) return;
    const paths = last.paths;
    const byPath = new Map<string, number>([['direct', 0], ['relay', 0], ['connecting', 0]]);
    for (const r of paths.reports) byPath.set(r.path, (byPath.get(r.path) ?? 0) + 1);
    // The reports list relayed and connecting peers first: those left out of them are direct.
    byPath.set('direct', byPath.get('direct')! + paths.morePeers);
    for (const [path, n] of byPath) emit(`ovl_peers|${path}`, n);
    // Bytes of every entry of the interface (the relay's too), as WireGuard counts them.
    let rx = 0;
    let tx = 0;
    for (const p of last.observed.wg?.peers ?? []) {
      rx += p.rxBytes;
      tx += p.txBytes;
    }
    emit('ovl_rxb', rx);
    emit('ovl_txb', tx);
    emit('ovl_handshakes', this.handshakes);
    if (paths.relay) {
      emit('ovl_relay_rxb', paths.relay.rxBytes);
      emit('ovl_relay_txb', paths.relay.txBytes);
    }
  }

  /** Says when the pod network becomes ready or not, and why: once per change, not on every pass. */
  private logStatus(): void {
    const { ready, reason, message, podCIDR } = this.report();
    const key = JSON.stringify([ready, reason, message, podCIDR]);
    if (key === this.loggedStatus) return;
    this.loggedStatus = key;
    if (ready) this.log.info({ overlay: this.config.overlay, podCIDR }, 'pod network ready');
    else this.log.warn({ reason, message }, 'pod network not ready');
  }

  private loggedStatus = '';

  /** The node report's `network` (see nodeNetworkReportSchema). */
  report(): NodeNetworkReport {
    if (!this.on) return { overlay: 'none', ready: true };
    const last = this.last;
    const plan = last?.plan;
    const ready = Boolean(plan?.ready && !this.failure);
    const why = this.failure ?? (plan && !plan.ready ? { reason: plan.reason ?? 'NetworkUnavailable', message: plan.message ?? '' } : undefined);
    const kind = last?.observed.wgKind;
    const peers = last?.paths?.reports ?? [];
    const morePeers = (last?.paths?.morePeers ?? 0) + Math.max(0, peers.length - MAX_PEERS_PER_REPORT);
    const addresses = last ? ownAddresses(last.observed, this.config.interface, last.network?.clusterCIDR, this.config.advertiseAddress) : this.config.advertiseAddress ? [this.config.advertiseAddress] : [];
    return {
      overlay: 'wireguard',
      ready,
      ...(!ready ? { reason: truncate(why?.reason ?? 'NetworkUnavailable', MAX_REASON_LENGTH), message: truncate(why?.message || 'the pod network is not set up yet', MAX_NODE_MESSAGE_LENGTH) } : {}),
      ...(this.key ? { publicKey: this.key.publicKey } : {}),
      port: this.config.port,
      ...(kind === 'kernel' || kind === 'wireguard-go' ? { implementation: kind } : {}),
      interface: this.config.interface,
      ...(addresses.length ? { addresses } : {}),
      ...(this.config.advertiseAddress ? { advertiseAddress: this.config.advertiseAddress } : {}),
      ...(ready && last?.network ? { podCIDR: last.network.podCIDR } : {}),
      ...(peers.length ? { peers: peers.slice(0, MAX_PEERS_PER_REPORT) } : {}),
      ...(morePeers > 0 ? { morePeers } : {}),
      ...(last?.paths?.relay ? { relay: last.paths.relay } : {}),
    };
  }
}

/**
 * Docker 27 brought `gateway_mode_ipv4=routed`; an older engine refuses no option it does not
 * know, but ignores it, so it is only sent where it means something.
 */
export function routedGateway(engine: EngineInfo | undefined): boolean {
  const major = Number(/^(\d+)\./.exec(engine?.version ?? '')?.[1]);
  return engine?.name === 'docker' && Number.isFinite(major) && major >= 27;
}

/** What a step's log line names: never the private key. */
function describeStep(step: NetPlan['steps'][number]): Record<string, unknown> {
  switch (step.action) {
    case 'configureInterface':
      return { interface: step.name, port: step.port, peers: step.peers.length };
    case 'startHandshake':
      return { interface: step.name, peers: step.publicKeys.length };
    case 'createNetwork':
      return { network: step.spec.name, subnet: step.spec.subnet };
    case 'applyFirewall':
      return {};
    default: {
      const { action: _action, ...rest } = step as Record<string, unknown>;
      return rest;
    }
  }
}

/** The report without what moves on its own (byte counters, handshake times): a status is not re-sent for them alone. */
export function steadyNetworkReport(report: NodeNetworkReport | undefined): unknown {
  if (!report) return undefined;
  const { relay: _relay, ...rest } = report;
  return { ...rest, ...(report.peers ? { peers: report.peers.map(({ latestHandshake: _h, rxBytes: _rx, txBytes: _tx, ...p }) => p) } : {}) };
}
