import type { Logger } from 'pino';
import * as z from 'zod';
import { StateFiles } from '../state/files.js';
import { decodePayload } from '../../shared/protocol/messages.js';
import { peerAnnouncementSchema, relayAnnouncementSchema, type PeerAnnouncement, type RelayAnnouncement } from '../../shared/protocol/network.js';

/** The cache of the peer book in the state directory. */
export const PEERS_FILE = 'peers.json';
const cacheSchema = z.object({ v: z.literal(1), peers: z.array(z.unknown()), relay: z.unknown().optional() });

export interface PeerBookOptions {
  stateDir: string;
  log: Logger;
  /** Something that matters to the tunnels changed. */
  onChange: () => void;
}

/**
 * STAND-IN for the peer book (another part of the overlay writes the real one: the disk cache,
 * generations, debouncing). It keeps the hub's retained peer and relay messages in memory, with
 * the API the data plane is built against.
 */
export class PeerBook {
  private readonly book = new Map<string, PeerAnnouncement>();
  private relayAnnouncement: RelayAnnouncement | undefined;

  constructor(private readonly opts: PeerBookOptions) {}

  /** Every peer (this device's own announcement too). */
  peers(): ReadonlyMap<string, PeerAnnouncement> {
    return this.book;
  }

  relay(): RelayAnnouncement | undefined {
    return this.relayAnnouncement;
  }

  /** Reads the peer set cached on disk (`peers.json`: `{v: 1, peers: [announcement…], relay?}`); the stand-in never writes it. */
  restore(): void {
    const cache = new StateFiles(this.opts.stateDir).read(PEERS_FILE, cacheSchema, (message) => this.opts.log.warn(`peer cache: ${message}`));
    for (const raw of cache?.peers ?? []) {
      const peer = peerAnnouncementSchema.safeParse(raw);
      if (peer.success) this.book.set(peer.data.node, peer.data);
    }
    const relay = cache?.relay === undefined ? undefined : relayAnnouncementSchema.safeParse(cache.relay);
    if (relay?.success) this.relayAnnouncement = relay.data;
  }

  onPeerMessage(node: string, payload: Buffer): void {
    if (payload.length === 0) {
      if (this.book.delete(node)) this.opts.onChange();
      return;
    }
    const decoded = decodePayload(peerAnnouncementSchema, payload);
    if (!decoded.ok || decoded.value.node !== node) {
      this.opts.log.warn({ node }, 'malformed peer message ignored');
      return;
    }
    this.book.set(node, decoded.value);
    this.opts.onChange();
  }

  onRelayMessage(payload: Buffer): void {
    if (payload.length === 0) this.relayAnnouncement = undefined;
    else {
      const decoded = decodePayload(relayAnnouncementSchema, payload);
      if (!decoded.ok) return;
      this.relayAnnouncement = decoded.value;
    }
    this.opts.onChange();
  }

  stop(): void {}

  flush(): void {}
}
