import type { Logger } from 'pino';
import type { EndpointAnnouncement, ServiceAnnouncement } from '../../../shared/protocol/services.js';
import { KernelProxyPlane, type ProxyDataPlane } from './nft.js';
import {
  EMPTY_PIECE,
  SVC_TABLE,
  baseChainNames,
  fullRuleset,
  goneUdpEndpoints,
  pieceClaims,
  pieceCounts,
  planService,
  podGateway,
  proxyMarker,
  transaction,
  withoutClaims,
  type MapName,
  type PieceChange,
  type ProxyNode,
  type ServicePiece,
} from './plan.js';

/** What the proxy reads of the service book. */
export interface ServiceSource {
  services(): ReadonlyMap<string, ServiceAnnouncement>;
  endpoints(namespace: string, name: string): ReadonlyMap<string, EndpointAnnouncement>;
}

export interface ServiceProxyOptions {
  source: ServiceSource;
  log: Logger;
  plane?: ProxyDataPlane;
  /** How often the table is checked against what was applied (someone removed or changed it). */
  checkIntervalMs?: number;
  /** After a failed sync, the first wait before the next try (doubling up to a minute). */
  retryMs?: number;
}

/** What one sync did, for the logs and the benchmark. */
export interface SyncResult {
  kind: 'full' | 'incremental' | 'none';
  services: number;
  commands: number;
  planMs: number;
  applyMs: number;
}

const RETRY_MAX_MS = 60_000;

/**
 * The service proxy (docs/ARCHITECTURE.md, 'The service proxy'): keeps the table `ip
 * flotilla-svc` equal to what the service book and this node's facts say. The first sync (and
 * any sync after a failure, a change of the node's facts, or a table found removed or changed)
 * replaces the table whole in one `nft -f`; after that a change in some Services is one
 * transaction that touches only their chains, sets and map elements. Works from the book as it
 * is, restored from disk: virtual IPs keep working with the hub gone and after a restart.
 */
export class ServiceProxy {
  private readonly plane: ProxyDataPlane;
  private node: ProxyNode | undefined;
  /** The pieces in the table now, by Service key; undefined until a full sync has succeeded. */
  private applied: Map<string, ServicePiece> | undefined;
  /** Which Service holds each map key (see pieceClaims). */
  private readonly claims = new Map<string, string>();
  /** The hairpin set's addresses in the table now. */
  private hairpinApplied = new Set<string>();
  /** Services that lost a map key to another: planned again on every sync until they get it. */
  private readonly starved = new Set<string>();
  private pending = new Set<string>();
  private wantFull = true;
  private wantCheck = false;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private checkTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay: number;
  private warnedConntrack = false;
  /** The last sync's figures (the benchmark reads them). */
  last: SyncResult | undefined;

  constructor(private readonly opts: ServiceProxyOptions) {
    this.plane = opts.plane ?? new KernelProxyPlane();
    this.retryDelay = opts.retryMs ?? 1_000;
  }

  /** Starts the periodic check; the first sync runs once the node's facts are given (setNode). */
  start(): void {
    const every = this.opts.checkIntervalMs ?? 60_000;
    this.checkTimer = setInterval(() => {
      this.wantCheck = true;
      this.kick();
    }, every);
    this.checkTimer.unref();
  }

  /** This node's facts (name, site, pod and cluster CIDR): a change of any rewrites the table whole. */
  setNode(node: ProxyNode): void {
    if (this.node && proxyMarker(this.node) === proxyMarker(node) && this.node.site === node.site) return;
    this.node = node;
    this.wantFull = true;
    this.kick();
  }

  /** Services changed in the book (their `namespace/name` keys). */
  changed(keys: Iterable<string>): void {
    for (const k of keys) this.pending.add(k);
    this.kick();
  }

  /** Asks for a full sync (the table written whole again). */
  resync(): void {
    this.wantFull = true;
    this.kick();
  }

  /** Resolves when no sync is running or asked for. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.checkTimer);
    clearTimeout(this.retryTimer);
    await this.idle();
    this.plane.close();
  }

  /**
   * Hairpin mode on the pod bridge's ports (see ProxyDataPlane.hairpin), so that a pod reaches
   * itself through its Service; the agent calls it after each reconcile (pods come and go).
   */
  async hairpin(): Promise<void> {
    const gateway = podGateway(this.node?.podCIDR);
    if (!gateway || this.stopped) return;
    try {
      const changed = await this.plane.hairpin(gateway);
      if (changed) this.opts.log.debug({ ports: changed }, 'hairpin mode turned on for pod bridge ports');
    } catch (err) {
      this.opts.log.debug({ err: (err as Error).message }, 'could not set hairpin mode on the pod bridge');
    }
  }

  /** Services off: the table goes (and nothing else is touched). */
  async remove(): Promise<void> {
    await this.plane.remove();
    this.applied = undefined;
  }

  private kick(): void {
    if (this.stopped || !this.node) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        this.kick();
      }
    });
  }

  private async loop(): Promise<void> {
    try {
      if (this.wantCheck && !this.wantFull && this.applied) {
        this.wantCheck = false;
        const problem = await this.check();
        if (problem) {
          this.opts.log.warn({ table: SVC_TABLE, problem }, 'service table differs from what was applied; replacing it whole');
          this.wantFull = true;
        }
      }
      if (this.wantFull || !this.applied) await this.fullSync();
      else if (this.pending.size || this.starved.size) await this.incremental();
      this.retryDelay = this.opts.retryMs ?? 1_000;
    } catch (err) {
      this.wantFull = true;
      this.opts.log.error({ err: (err as Error).message, retryInMs: this.retryDelay }, 'service proxy sync failed');
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.kick(), this.retryDelay);
      this.retryTimer.unref();
      this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
    }
  }

  /** Plans one Service and settles its map keys against the others'. */
  private planOne(key: string, node: ProxyNode): ServicePiece {
    const svc = this.opts.source.services().get(key);
    if (!svc) return EMPTY_PIECE;
    const piece = planService(svc, this.opts.source.endpoints(svc.namespace, svc.name), node);
    const taken = new Set<string>();
    for (const claim of pieceClaims(piece)) {
      const holder = this.claims.get(claim);
      if (holder !== undefined && holder !== key) taken.add(claim);
      else this.claims.set(claim, key);
    }
    if (taken.size === 0) {
      this.starved.delete(key);
      return piece;
    }
    if (!this.starved.has(key)) this.opts.log.warn({ service: key, taken: [...taken].map((c) => `${c.slice(c.indexOf('|') + 1)} (${this.claims.get(c)})`) }, 'a virtual IP port or node port of this service is held by another; left out until it is free');
    this.starved.add(key);
    return withoutClaims(piece, taken);
  }

  private releaseClaims(key: string, piece: ServicePiece | undefined): void {
    if (!piece) return;
    for (const claim of pieceClaims(piece)) if (this.claims.get(claim) === key) this.claims.delete(claim);
  }

  private async fullSync(): Promise<void> {
    const node = this.node!;
    this.wantFull = false;
    this.pending.clear();
    const t0 = performance.now();
    const before = this.applied;
    this.claims.clear();
    this.starved.clear();
    const pieces = new Map<string, ServicePiece>();
    for (const key of [...this.opts.source.services().keys()].sort()) pieces.set(key, this.planOne(key, node));
    const hairpin = hairpinOf(pieces.values());
    const script = fullRuleset(node, pieces.values(), hairpin);
    const t1 = performance.now();
    try {
      await this.plane.apply(script);
    } catch (err) {
      this.applied = undefined;
      throw err;
    }
    const t2 = performance.now();
    this.applied = pieces;
    this.hairpinApplied = hairpin;
    this.last = { kind: 'full', services: pieces.size, commands: 1, planMs: t1 - t0, applyMs: t2 - t1 };
    this.opts.log.info({ services: pieces.size, planMs: Math.round(t1 - t0), applyMs: Math.round(t2 - t1) }, 'service table written whole');
    if (before) {
      const gone: { path: string; ip: string }[] = [];
      for (const [key, piece] of before) gone.push(...goneUdpEndpoints(piece, pieces.get(key) ?? EMPTY_PIECE));
      await this.clearUdp(gone);
    }
  }

  private async incremental(): Promise<void> {
    const node = this.node!;
    const applied = this.applied!;
    const keys = [...new Set([...this.pending, ...this.starved])].sort();
    this.pending.clear();
    const t0 = performance.now();
    // Every changed Service lets go of its map keys first, then takes what it wants now: a key
    // one gives up in this burst can go to another in the same transaction.
    for (const key of keys) this.releaseClaims(key, applied.get(key));
    const changes: (PieceChange & { key: string })[] = [];
    for (const key of keys) changes.push({ key, before: applied.get(key) ?? EMPTY_PIECE, after: this.planOne(key, node) });
    const next = new Map(applied);
    for (const c of changes) next.set(c.key, c.after);
    const hairpin = hairpinOf(next.values());
    const commands = transaction(changes, { add: [...hairpin].filter((ip) => !this.hairpinApplied.has(ip)), remove: [...this.hairpinApplied].filter((ip) => !hairpin.has(ip)) });
    const t1 = performance.now();
    if (commands.length) {
      try {
        await this.plane.apply(`${commands.join('\n')}\n`);
      } catch (err) {
        // What is in the table is no longer known for sure: the next sync replaces it whole.
        this.applied = undefined;
        throw err;
      }
    }
    const t2 = performance.now();
    this.hairpinApplied = hairpin;
    for (const c of changes) {
      if (c.after.chains.size || c.after.sets.size || c.after.hairpin.size || [...c.after.elements.values()].some((m) => m.size)) applied.set(c.key, c.after);
      else applied.delete(c.key);
    }
    this.last = { kind: commands.length ? 'incremental' : 'none', services: keys.length, commands: commands.length, planMs: t1 - t0, applyMs: t2 - t1 };
    if (commands.length) this.opts.log.debug({ services: keys.length, commands: commands.length, planMs: Math.round(t1 - t0), applyMs: Math.round(t2 - t1) }, 'service table changed');
    await this.clearUdp(changes.flatMap((c) => goneUdpEndpoints(c.before, c.after)));
  }

  /** Clears the UDP conntrack entries to endpoints a path lost, so that a client's next datagram picks a live one. */
  private async clearUdp(gone: readonly { path: string; ip: string }[]): Promise<void> {
    for (const { path, ip } of gone) {
      try {
        if (!(await this.plane.clearUdp(path, ip)) && !this.warnedConntrack) {
          this.warnedConntrack = true;
          this.opts.log.warn('conntrack is not installed: UDP flows to a removed endpoint go on until their conntrack entries time out');
        }
      } catch (err) {
        this.opts.log.warn({ path, endpoint: ip, err: (err as Error).message }, 'could not clear UDP conntrack entries');
      }
    }
  }

  /** Compares the table in the kernel with what was applied; a description of the first difference, or undefined. */
  async check(): Promise<string | undefined> {
    const node = this.node;
    const applied = this.applied;
    if (!node || !applied) return undefined;
    const listing = await this.plane.list();
    if (!listing) return 'the table is gone';
    const found = summarise(listing);
    const want = pieceCounts(node, applied.values());
    let rules = 0;
    const chains = new Set<string>(baseChainNames(node));
    for (const piece of applied.values()) {
      for (const [name, r] of piece.chains) {
        chains.add(name);
        rules += r.length;
      }
    }
    rules += baseRuleCount(node);
    if (found.chains.size !== want.chains) return `${found.chains.size} chains, ${want.chains} expected`;
    for (const c of chains) if (!found.chains.has(c)) return `chain ${c} is missing`;
    if (found.rules !== rules) return `${found.rules} rules, ${rules} expected`;
    if (found.sets !== want.sets) return `${found.sets} sets, ${want.sets} expected`;
    for (const [map, n] of Object.entries(want.elements)) if ((found.elements.get(map as MapName) ?? 0) !== n) return `map ${map} has ${found.elements.get(map as MapName) ?? 0} elements, ${n} expected`;
    return undefined;
  }
}

/** This node's endpoint addresses over all Services: the hairpin set. */
function hairpinOf(pieces: Iterable<ServicePiece>): Set<string> {
  const out = new Set<string>();
  for (const p of pieces) for (const ip of p.hairpin) out.add(ip);
  return out;
}

let baseRules: { marker: string; n: number } | undefined;

/** Rules of the base chains (their `type … hook` line is not a rule), counted from the script as it is written. */
function baseRuleCount(node: ProxyNode): number {
  const marker = proxyMarker(node);
  if (baseRules?.marker === marker) return baseRules.n;
  let n = 0;
  let inChain = false;
  for (const line of fullRuleset(node, []).split('\n').map((l) => l.trim())) {
    if (line.startsWith('chain ')) inChain = true;
    else if (line === '}') inChain = false;
    else if (inChain && line && !line.startsWith('type ')) n++;
  }
  baseRules = { marker, n };
  return n;
}

function summarise(listing: unknown[]): { chains: Set<string>; rules: number; sets: number; elements: Map<MapName, number> } {
  const out = { chains: new Set<string>(), rules: 0, sets: 0, elements: new Map<MapName, number>() };
  for (const item of listing) {
    const o = item as Record<string, Record<string, unknown> | undefined>;
    if (o.chain) out.chains.add(String(o.chain.name));
    else if (o.rule) out.rules++;
    else if (o.set) out.sets++;
    else if (o.map) out.elements.set(String(o.map.name) as MapName, Array.isArray(o.map.elem) ? o.map.elem.length : 0);
  }
  return out;
}
