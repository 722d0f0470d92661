import type { Logger } from 'pino';
import * as z from 'zod';
import { parseCidr, parseIPv4 } from '../../shared/net/cidr.js';
import { decodePayload, type DecodeResult } from '../../shared/protocol/messages.js';
import { peerAnnouncementSchema, relayAnnouncementSchema, type PeerAnnouncement, type RelayAnnouncement } from '../../shared/protocol/network.js';
import { fieldErrorsFromZod, formatFieldErrors } from '../../shared/resources/fields.js';
import { StateFiles } from '../state/files.js';

/** The cache of the peer book in the state directory (and its `.bak`, as every state file). */
export const PEERS_FILE = 'peers.json';

/**
 * The cache's shape. Entries are checked one by one on restore, so that one damaged entry costs
 * that peer only, not the whole book.
 */
const cacheSchema = z.object({
  v: z.literal(1),
  peers: z.array(z.unknown()),
  relay: z.unknown().optional(),
});

export interface PeerBookOptions {
  stateDir: string;
  log: Logger;
  /** Something that matters to the tunnels changed (a peer came, went, moved or re-keyed; the relay changed). Debounced. */
  onChange: () => void;
  /** Quiet time before the cache is written, and the longest a change waits for it while messages keep coming. */
  writeDelayMs?: number;
  writeMaxDelayMs?: number;
  /**
   * The least time between two writes. The cache is the whole book (4 MB, twice, at 10,000
   * peers): a fleet where some device moves every minute must not rewrite it every second on an
   * SD card. The retained burst at subscribe is written at once; later changes wait for this.
   */
  writeMinIntervalMs?: number;
  /** The same for onChange: the retained burst at subscribe becomes one call, not one per peer. */
  changeDelayMs?: number;
  changeMaxDelayMs?: number;
}

/**
 * The device's copy of the overlay's peer table: every node's retained announcement (the
 * device's own too: it tells the device its public address) and the hub's relay. It is kept on
 * disk so that an agent restarted while the hub is away rebuilds its tunnels from it.
 *
 * Messages are decoded and checked here, at the edge: a bad one is logged with the field and
 * ignored, and never removes a peer that is known. Only an empty retained payload (the hub
 * deleted the node) removes one.
 */
export class PeerBook {
  private readonly book = new Map<string, PeerAnnouncement>();
  private relayAnnouncement?: RelayAnnouncement;
  private readonly files: StateFiles;
  private readonly write: Debounce;
  private readonly change: Debounce;

  constructor(private readonly opts: PeerBookOptions) {
    this.files = new StateFiles(opts.stateDir);
    this.write = new Debounce(() => this.save(), opts.writeDelayMs ?? 1_000, opts.writeMaxDelayMs ?? 5_000, opts.writeMinIntervalMs ?? 60_000);
    this.change = new Debounce(() => opts.onChange(), opts.changeDelayMs ?? 200, opts.changeMaxDelayMs ?? 1_000);
  }

  /** Every peer, in the order their announcements last came in (the cache's first). */
  peers(): ReadonlyMap<string, PeerAnnouncement> {
    return this.book;
  }

  relay(): RelayAnnouncement | undefined {
    return this.relayAnnouncement;
  }

  /**
   * Reads the cache. A damaged file, or a damaged entry in it, is logged and left out: the hub's
   * retained messages bring the book back whole once it is reachable. A peer already known from
   * the hub is kept unless the cache holds a newer generation of it.
   */
  restore(): void {
    const cache = this.files.read(PEERS_FILE, cacheSchema, (message) => this.opts.log.warn(`peer cache: ${message}`));
    if (!cache) return;
    let changed = false;
    for (const [i, raw] of cache.peers.entries()) {
      const peer = checkPeer(raw);
      if (!peer.ok) {
        this.opts.log.warn({ entry: i, errors: peer.errors }, 'peer cache: damaged entry left out');
        continue;
      }
      const known = this.book.get(peer.value.node);
      if (known && known.generation >= peer.value.generation) continue;
      this.book.set(peer.value.node, peer.value);
      changed = true;
    }
    if (cache.relay !== undefined && !this.relayAnnouncement) {
      const relay = checkRelay(cache.relay);
      if (relay.ok) {
        this.relayAnnouncement = relay.value;
        changed = true;
      } else this.opts.log.warn({ errors: relay.errors }, 'peer cache: damaged relay entry left out');
    }
    this.opts.log.info({ peers: this.book.size, relay: this.relayAnnouncement !== undefined }, 'peer book restored from disk');
    if (changed) this.change.poke();
  }

  /** A message on `network/peers/{node}`; `node` comes from the topic. */
  onPeerMessage(node: string, payload: Buffer): void {
    if (payload.length === 0) {
      if (this.book.delete(node)) {
        this.opts.log.info({ node }, 'peer removed (the hub deleted the node)');
        this.changed();
      }
      return;
    }
    const peer = checkPeer(payload);
    if (!peer.ok) {
      this.opts.log.warn({ node, errors: peer.errors }, 'malformed peer announcement ignored; keeping what is known of the peer');
      return;
    }
    const next = peer.value;
    if (next.node !== node) {
      this.opts.log.warn({ node, errors: `node: ${next.node} is not the topic's node` }, 'malformed peer announcement ignored; keeping what is known of the peer');
      return;
    }
    const known = this.book.get(node);
    if (known && next.generation < known.generation) {
      this.opts.log.debug({ node, generation: next.generation, known: known.generation }, 'older peer announcement ignored');
      return;
    }
    // Moved to the end: the book's order is the order the hub last (re)announced each peer in,
    // which settles two peers claiming one CIDR (the path selector gives it to the later one).
    this.book.delete(node);
    this.book.set(node, next);
    if (!known || !sameTunnel(known, next)) this.changed();
    // The generation alone moved: nothing to do on the wire, but the cache must not go back.
    else if (known.generation !== next.generation) this.write.poke();
  }

  /** A message on `network/relay`: empty when the hub runs no relay. */
  onRelayMessage(payload: Buffer): void {
    if (payload.length === 0) {
      if (this.relayAnnouncement) {
        this.relayAnnouncement = undefined;
        this.opts.log.info('the hub runs no relay any more');
        this.changed();
      }
      return;
    }
    const relay = checkRelay(payload);
    if (!relay.ok) {
      this.opts.log.warn({ errors: relay.errors }, 'malformed relay announcement ignored; keeping the known relay');
      return;
    }
    const known = this.relayAnnouncement;
    this.relayAnnouncement = relay.value;
    if (!known || JSON.stringify(known) !== JSON.stringify(relay.value)) this.changed();
  }

  /** Writes a pending cache now and stops the timers (the agent stops). */
  stop(): void {
    this.change.cancel();
    this.write.flush();
  }

  /** Writes a pending cache now (tests; a clean stop). */
  flush(): void {
    this.write.flush();
  }

  private changed(): void {
    this.write.poke();
    this.change.poke();
  }

  private save(): void {
    const value = { v: 1, peers: [...this.book.values()], ...(this.relayAnnouncement ? { relay: this.relayAnnouncement } : {}) };
    try {
      this.files.write(PEERS_FILE, value);
    } catch (err) {
      // A full disk costs the cache, not the overlay: the tunnels run from memory, and the next change tries again.
      this.opts.log.warn({ err: (err as Error).message }, 'could not write the peer cache');
    }
  }
}

type Checked<T> = { ok: true; value: T } | { ok: false; errors: string };

/** Decodes a peer announcement and checks what the schema cannot: the CIDR and addresses are IPv4. */
function checkPeer(input: Buffer | unknown): Checked<PeerAnnouncement> {
  const decoded = Buffer.isBuffer(input) ? decodePayload(peerAnnouncementSchema, input) : decodeValue(peerAnnouncementSchema, input);
  if (!decoded.ok) return { ok: false, errors: formatFieldErrors(decoded.errors) };
  const peer = decoded.value;
  const cidr = parseCidr(peer.podCIDR);
  if ('error' in cidr) return { ok: false, errors: `podCIDR: ${cidr.error}` };
  for (const [i, e] of peer.endpoints.entries()) {
    if (parseIPv4(e.address) === undefined) return { ok: false, errors: `endpoints[${i}].address: ${e.address} is not an IPv4 address` };
  }
  if (peer.publicAddress !== undefined && parseIPv4(peer.publicAddress) === undefined) return { ok: false, errors: `publicAddress: ${peer.publicAddress} is not an IPv4 address` };
  return { ok: true, value: peer };
}

function checkRelay(input: Buffer | unknown): Checked<RelayAnnouncement> {
  const decoded = Buffer.isBuffer(input) ? decodePayload(relayAnnouncementSchema, input) : decodeValue(relayAnnouncementSchema, input);
  if (!decoded.ok) return { ok: false, errors: formatFieldErrors(decoded.errors) };
  const cidr = parseCidr(decoded.value.clusterCIDR);
  if ('error' in cidr) return { ok: false, errors: `clusterCIDR: ${cidr.error}` };
  return { ok: true, value: decoded.value };
}

/** As decodePayload, for a value already parsed (an entry of the cache). */
function decodeValue<T>(schema: z.ZodType<T>, value: unknown): DecodeResult<T> {
  const parsed = schema.safeParse(value);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, errors: fieldErrorsFromZod(parsed.error).slice(0, 5) };
}

/** Whether two announcements of one node configure the same tunnel (all but the generation). */
function sameTunnel(a: PeerAnnouncement, b: PeerAnnouncement): boolean {
  if (a.publicKey !== b.publicKey || a.podCIDR !== b.podCIDR || a.publicAddress !== b.publicAddress) return false;
  if (a.endpoints.length !== b.endpoints.length) return false;
  return a.endpoints.every((e, i) => e.address === b.endpoints[i]!.address && e.port === b.endpoints[i]!.port && e.source === b.endpoints[i]!.source);
}

/**
 * Runs `fn` once things have been quiet for `delayMs`, and at the latest `maxDelayMs` after the
 * first poke of a burst, so that a steady stream of messages still gets written; never sooner
 * than `minIntervalMs` after its last run.
 */
export class Debounce {
  private timer?: NodeJS.Timeout;
  private firstPokeMs?: number;
  private lastRunMs = -Infinity;

  constructor(
    private readonly fn: () => void,
    private readonly delayMs: number,
    private readonly maxDelayMs: number,
    private readonly minIntervalMs = 0,
  ) {}

  poke(): void {
    const now = Date.now();
    this.firstPokeMs ??= now;
    if (this.timer) clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.delayMs, this.firstPokeMs + this.maxDelayMs - now), this.lastRunMs + this.minIntervalMs - now);
    this.timer = setTimeout(() => this.flush(), wait);
    this.timer.unref();
  }

  /** Runs `fn` now if a poke is pending. */
  flush(): void {
    const pending = this.firstPokeMs !== undefined;
    this.cancel();
    if (!pending) return;
    this.lastRunMs = Date.now();
    this.fn();
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.firstPokeMs = undefined;
  }
}
