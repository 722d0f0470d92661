import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PEERS_FILE, PeerBook } from '../../agent/network/peers.js';
import { StateFiles } from '../../agent/state/files.js';
import { heapUsedAfterGc } from './heap.js';
import { endpoint, payloadOf, peer, relayAnnouncement, wgKey } from './network-builders.js';

interface LogLine {
  level: number;
  msg: string;
  node?: string;
  errors?: string;
}

const WARN = 40;

describe('PeerBook', () => {
  let dir: string;
  let lines: LogLine[];
  let log: Logger;
  let changes: number;
  let books: PeerBook[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'flotilla-peers-'));
    lines = [];
    log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line) as LogLine) });
    changes = 0;
    books = [];
  });

  afterEach(() => {
    for (const book of books) book.stop();
    vi.useRealTimers();
    vi.restoreAllMocks();
    rmSync(dir, { recursive: true, force: true });
  });

  function book(opts: { writeDelayMs?: number; changeDelayMs?: number } = {}): PeerBook {
    const b = new PeerBook({ stateDir: dir, log, onChange: () => changes++, ...opts });
    books.push(b);
    return b;
  }

  const b1 = peer({ node: 'edge-b', n: 2, generation: 5, publicAddress: '198.51.100.20', endpoints: [endpoint('192.0.2.10', 'advertised'), endpoint('192.168.1.20', 'reported')] });
  const warnings = () => lines.filter((l) => l.level >= WARN);

  describe('messages', () => {
    it('holds every announcement, this device\'s own too, and the relay', () => {
      const peers = book();
      const self = peer({ node: 'edge-a', n: 1, publicAddress: '203.0.113.7' });
      peers.onPeerMessage('edge-a', payloadOf(self));
      peers.onPeerMessage('edge-b', payloadOf(b1));
      peers.onRelayMessage(payloadOf(relayAnnouncement()));
      expect([...peers.peers().keys()]).toEqual(['edge-a', 'edge-b']);
      expect(peers.peers().get('edge-a')?.publicAddress).toBe('203.0.113.7');
      expect(peers.peers().get('edge-b')).toEqual(b1);
      expect(peers.relay()).toEqual(relayAnnouncement());
    });

    it('ignores an older generation than it has, takes a newer one', () => {
      const peers = book();
      peers.onPeerMessage('edge-b', payloadOf(b1));
      peers.onPeerMessage('edge-b', payloadOf({ ...b1, generation: 4, podCIDR: '10.42.99.0/24' }));
      expect(peers.peers().get('edge-b')?.podCIDR).toBe(b1.podCIDR);
      peers.onPeerMessage('edge-b', payloadOf({ ...b1, generation: 6, podCIDR: '10.42.99.0/24' }));
      expect(peers.peers().get('edge-b')?.podCIDR).toBe('10.42.99.0/24');
    });

    it('keeps peers in the order their announcements last came in (a re-announced peer moves to the end)', () => {
      const peers = book();
      peers.onPeerMessage('edge-b', payloadOf(b1));
      peers.onPeerMessage('edge-c', payloadOf(peer({ node: 'edge-c', n: 3 })));
      peers.onPeerMessage('edge-b', payloadOf({ ...b1, generation: 6 }));
      expect([...peers.peers().keys()]).toEqual(['edge-c', 'edge-b']);
      // An older one ignored moves nothing.
      peers.onPeerMessage('edge-c', payloadOf(peer({ node: 'edge-c', n: 3, generation: 0 })));
      expect([...peers.peers().keys()]).toEqual(['edge-c', 'edge-b']);
    });

    it('removes a peer on an empty payload, and the relay on an empty relay message', () => {
      const peers = book();
      peers.onPeerMessage('edge-b', payloadOf(b1));
      peers.onRelayMessage(payloadOf(relayAnnouncement()));
      peers.onPeerMessage('edge-b', Buffer.alloc(0));
      peers.onRelayMessage(Buffer.alloc(0));
      expect(peers.peers().size).toBe(0);
      expect(peers.relay()).toBeUndefined();
      // A removal of a peer never known is no change.
      peers.onPeerMessage('edge-zz', Buffer.alloc(0));
      expect(lines.filter((l) => l.msg.startsWith('peer removed')).map((l) => l.node)).toEqual(['edge-b']);
    });

    it('ignores a bad payload, names the field, and keeps the peer it knows', () => {
      const peers = book();
      peers.onPeerMessage('edge-b', payloadOf(b1));
      const bad: [unknown, RegExp][] = [
        [{ ...b1, generation: 9, publicKey: 'not-a-key' }, /^publicKey: /],
        [{ ...b1, generation: 9, podCIDR: '10.42.2.7/24' }, /^podCIDR: /],
        [{ ...b1, generation: 9, endpoints: [{ address: 'example.net', port: 51820, source: 'advertised' }] }, /^endpoints\[0\]\.address: /],
        [{ ...b1, generation: 9, endpoints: [{ address: '192.0.2.1', port: 0, source: 'advertised' }] }, /^endpoints\[0\]\.port: /],
        [{ ...b1, generation: 9, publicAddress: '999.1.1.1' }, /^publicAddress: /],
        [{ ...b1, generation: 9, node: 'edge-c' }, /^node: /],
        ['{"v":1,', /^\(payload\): not JSON/],
      ];
      for (const [payload, field] of bad) {
        lines.length = 0;
        peers.onPeerMessage('edge-b', typeof payload === 'string' ? Buffer.from(payload) : payloadOf(payload));
        expect(warnings()).toHaveLength(1);
        expect(warnings()[0]).toMatchObject({ node: 'edge-b', msg: expect.stringContaining('malformed peer announcement ignored') });
        expect(warnings()[0]!.errors).toMatch(field);
      }
      expect(peers.peers().get('edge-b')).toEqual(b1);

      lines.length = 0;
      peers.onRelayMessage(payloadOf(relayAnnouncement()));
      peers.onRelayMessage(payloadOf({ ...relayAnnouncement(), port: 'x' }));
      expect(warnings()[0]!.errors).toMatch(/^port: /);
      expect(peers.relay()).toEqual(relayAnnouncement());
    });

    it('calls onChange when the tunnel changes, not for a new generation of the same announcement', () => {
      vi.useFakeTimers();
      const peers = book();
      peers.onPeerMessage('edge-b', payloadOf(b1));
      vi.advanceTimersByTime(1_000);
      expect(changes).toBe(1);
      peers.onPeerMessage('edge-b', payloadOf({ ...b1, generation: 6 }));
      vi.advanceTimersByTime(1_000);
      expect(changes).toBe(1);
      for (const next of [
        { ...b1, generation: 7, endpoints: [endpoint('198.51.100.77', 'hub-observed')] },
        { ...b1, generation: 8, endpoints: [endpoint('198.51.100.77', 'hub-observed')], publicAddress: '198.51.100.77' },
        { ...b1, generation: 9, endpoints: [endpoint('198.51.100.77', 'hub-observed')], publicAddress: '198.51.100.77', publicKey: wgKey(99) },
      ]) {
        peers.onPeerMessage('edge-b', payloadOf(next));
        vi.advanceTimersByTime(1_000);
      }
      expect(changes).toBe(4);
      peers.onRelayMessage(payloadOf(relayAnnouncement()));
      peers.onRelayMessage(payloadOf(relayAnnouncement()));
      vi.advanceTimersByTime(1_000);
      expect(changes).toBe(5);
    });
  });

  describe('the cache on disk', () => {
    it('round trip: a restarted agent gets the book back, generations included, with the hub gone', () => {
      const first = book();
      first.onPeerMessage('edge-b', payloadOf(b1));
      first.onPeerMessage('edge-c', payloadOf(peer({ node: 'edge-c', n: 3 })));
      first.onRelayMessage(payloadOf(relayAnnouncement()));
      first.stop();

      vi.useFakeTimers();
      const second = book();
      second.restore();
      expect([...second.peers().values()]).toEqual([b1, peer({ node: 'edge-c', n: 3 })]);
      expect(second.relay()).toEqual(relayAnnouncement());
      vi.advanceTimersByTime(1_000);
      expect(changes).toBe(1);
      // The cached generation counts: an older retained message is not taken over it.
      second.onPeerMessage('edge-b', payloadOf({ ...b1, generation: 1, podCIDR: '10.42.99.0/24' }));
      expect(second.peers().get('edge-b')).toEqual(b1);
    });

    it('a book with no cache starts empty, quietly', () => {
      const peers = book();
      peers.restore();
      expect(peers.peers().size).toBe(0);
      expect(warnings()).toEqual([]);
    });

    it('a damaged cache is logged and ignored, never fatal; its .bak copy is used when whole', () => {
      const first = book();
      first.onPeerMessage('edge-b', payloadOf(b1));
      first.stop();
      writeFileSync(join(dir, PEERS_FILE), '{"v":1,"peers":[{"node":');
      const fromBak = book();
      fromBak.restore();
      expect(fromBak.peers().get('edge-b')).toEqual(b1);
      expect(warnings().map((l) => l.msg).join('\n')).toMatch(/peer cache: .*peers\.json is not valid JSON/);

      lines.length = 0;
      writeFileSync(join(dir, `${PEERS_FILE}.bak`), 'garbage');
      const neither = book();
      expect(() => neither.restore()).not.toThrow();
      expect(neither.peers().size).toBe(0);
      expect(warnings()).toHaveLength(2);
    });

    it('leaves out a damaged entry of the cache and keeps the others', () => {
      new StateFiles(dir).write(PEERS_FILE, { v: 1, peers: [b1, { ...peer({ node: 'edge-c', n: 3 }), publicKey: 'broken' }, peer({ node: 'edge-d', n: 4 })], relay: { v: 1 } });
      const peers = book();
      peers.restore();
      expect([...peers.peers().keys()]).toEqual(['edge-b', 'edge-d']);
      expect(peers.relay()).toBeUndefined();
      expect(warnings().map((l) => [l.msg, l.errors])).toEqual([
        ['peer cache: damaged entry left out', expect.stringMatching(/^publicKey: /)],
        ['peer cache: damaged relay entry left out', expect.stringMatching(/^publicKey: /)],
      ]);
    });

    it('writes a later change no sooner than a minute after the last write, and at once on stop', () => {
      vi.useFakeTimers();
      const writes = vi.spyOn(StateFiles.prototype, 'write');
      const peers = book();
      peers.onPeerMessage('edge-b', payloadOf(b1));
      vi.advanceTimersByTime(1_000);
      expect(writes).toHaveBeenCalledTimes(1);
      peers.onPeerMessage('edge-c', payloadOf(peer({ node: 'edge-c', n: 3 })));
      vi.advanceTimersByTime(30_000);
      expect(writes).toHaveBeenCalledTimes(1);
      vi.advanceTimersByTime(30_000);
      expect(writes).toHaveBeenCalledTimes(2);
      peers.onPeerMessage('edge-d', payloadOf(peer({ node: 'edge-d', n: 4 })));
      peers.stop();
      expect(writes).toHaveBeenCalledTimes(3);
      const cached = JSON.parse(readFileSync(join(dir, PEERS_FILE), 'utf8')) as { peers: { node: string }[] };
      expect(cached.peers.map((p) => p.node)).toEqual(['edge-b', 'edge-c', 'edge-d']);
    });

    it('writes 10,000 retained messages arriving at subscribe in a few writes, not 10,000', () => {
      vi.useFakeTimers();
      const writes = vi.spyOn(StateFiles.prototype, 'write');
      const heapBefore = heapUsedAfterGc();
      const peers = book();
      const N = 10_000;
      // The retained burst as the broker delivers it: batches of messages, a few milliseconds apart.
      for (let n = 2; n < N + 2; n++) {
        const node = `edge-${n}`;
        peers.onPeerMessage(node, payloadOf(peer({ node, n, publicAddress: `198.51.${n >> 8}.${n & 0xff}`, endpoints: [endpoint(`198.51.${n >> 8}.${n & 0xff}`, 'hub-observed'), endpoint(`10.0.${n >> 8}.${n & 0xff}`, 'reported')] })));
        if (n % 500 === 0) vi.advanceTimersByTime(50);
      }
      vi.advanceTimersByTime(10_000);
      const perPeer = Math.round((heapUsedAfterGc() - heapBefore) / N);
      expect(writes.mock.calls.length).toBeGreaterThanOrEqual(1);
      expect(writes.mock.calls.length).toBeLessThanOrEqual(3);
      expect(changes).toBeLessThanOrEqual(3);
      const size = statSync(join(dir, PEERS_FILE)).size;
      const cached = JSON.parse(readFileSync(join(dir, PEERS_FILE), 'utf8')) as { peers: unknown[] };
      expect(cached.peers).toHaveLength(N);
      console.log(`peer book of ${N} peers: ${perPeer} B of heap a peer; cache ${writes.mock.calls.length} write(s), ${(size / 1e6).toFixed(2)} MB (and as much in its .bak)`);
    });
  });
});
