import type { Logger } from 'pino';
import { decodePayload } from '../../shared/protocol/messages.js';
import { peerAnnouncementSchema, relayAnnouncementSchema, type PeerAnnouncement, type RelayAnnouncement } from '../../shared/protocol/network.js';

/**
 * STAND-IN for the peer book (another part of the overlay writes the real one: the disk cache,
 * generations, removal of deleted nodes). It keeps the hub's retained peer and relay messages in
 * memory with the API the data plane is built against.
 */
export class PeerBook {
  private readonly book = new Map<string, PeerAnnouncement>();
  private relayPeer: RelayAnnouncement | undefined;
  onChange: (() => void) | undefined;

  constructor(
    readonly stateDir: string,
    private readonly log?: Logger,
  ) {}

  /** Reads the peer set cached on disk (the stand-in keeps none). */
  restore(): void {}

  onPeerMessage(node: string, payload: Buffer): void {
    if (payload.length === 0) {
      if (this.book.delete(node)) this.onChange?.();
      return;
    }
    const decoded = decodePayload(peerAnnouncementSchema, payload);
    if (!decoded.ok || decoded.value.node !== node) {
      this.log?.warn({ node }, 'malformed peer message ignored');
      return;
    }
    this.book.set(node, decoded.value);
    this.onChange?.();
  }

  onRelayMessage(payload: Buffer): void {
    if (payload.length === 0) this.relayPeer = undefined;
    else {
      const decoded = decodePayload(relayAnnouncementSchema, payload);
      if (!decoded.ok) return;
      this.relayPeer = decoded.value;
    }
    this.onChange?.();
  }

  peers(): PeerAnnouncement[] {
    return [...this.book.values()];
  }

  relay(): RelayAnnouncement | undefined {
    return this.relayPeer;
  }
}
