import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket, { type Packet } from 'dns-packet';
import type { Logger } from 'pino';
import { answerQuery, describeQuestion, DNS_TTL_SECONDS, reply, type ServiceLookup } from './answer.js';
import { forwardQuery, type Upstream } from './forward.js';

/**
 * The device's DNS server (docs/ARCHITECTURE.md, 'DNS'): UDP and TCP on one address (the pod
 * gateway), the cluster's names answered from the service book, the rest forwarded to the
 * device's resolver. A packet that is not DNS is dropped and logged at debug level; a client
 * always gets an answer or, when the upstream fails, SERVFAIL within the forward budget.
 */

export interface DnsServerOptions {
  address: string;
  port: number;
  book: ServiceLookup;
  /** The device's resolvers, in order (read at each forward: the device's resolv.conf may change). */
  upstreams: () => Upstream[];
  log: Logger;
  /** How long one upstream has to answer (default 2 s); at most two are tried, so a pod hears within 4 s, before its resolver's own 5 s. */
  forwardTimeoutMs?: number;
  /** Forwards at once, beyond which a query gets SERVFAIL at once rather than a socket (default 512). */
  maxInFlight?: number;
}

/** RFC 1035's UDP size without EDNS, and the largest we send with it (the DNS flag day 2020's 1232). */
const UDP_PLAIN = 512;
const UDP_EDNS_MAX = 1232;
const TCP_IDLE_MS = 10_000;
const TCP_MAX_CONNECTIONS = 256;
const UPSTREAMS_TRIED = 2;
/** Encoded answers kept: at most this many, each at most a TTL old. */
const CACHE_ENTRIES = 4096;
const CACHE_MS = DNS_TTL_SECONDS * 1000;

export class DnsServer {
  private udp?: dgram.Socket;
  private tcp?: net.Server;
  private inFlight = 0;
  private readonly sockets = new Set<net.Socket>();
  /**
   * Our own answers, encoded, by the query's bytes after its id (and the transport): a pod's
   * resolver asks the same few names again and again, and a hit costs no decode or encode.
   * Emptied on every change of the service book (invalidate), and no entry outlives a TTL.
   */
  private readonly cache = new Map<string, { at: number; bytes: Buffer }>();
  /** Figures for logs and benches. */
  readonly counts = { answered: 0, forwarded: 0, failed: 0, dropped: 0 };

  constructor(private readonly opts: DnsServerOptions) {}

  get address(): string {
    return this.opts.address;
  }

  get port(): number {
    return this.opts.port;
  }

  /** Binds UDP and TCP; rejects (and binds neither) when one cannot be bound. */
  async listen(): Promise<void> {
    const udp = dgram.createSocket('udp4');
    const tcp = net.createServer((socket) => this.onConnection(socket));
    tcp.maxConnections = TCP_MAX_CONNECTIONS;
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(this.opts.port, this.opts.address, () => {
          udp.off('error', reject);
          resolve();
        });
      });
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(this.opts.port, this.opts.address, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      udp.close();
      tcp.close();
      throw err;
    }
    udp.on('error', (err) => this.opts.log.warn({ err: err.message }, 'dns: udp socket error'));
    udp.on('message', (msg, rinfo) => {
      void this.handle(msg, 'udp').then((out) => {
        if (out) udp.send(out, rinfo.port, rinfo.address);
      });
    });
    tcp.on('error', (err) => this.opts.log.warn({ err: err.message }, 'dns: tcp listener error'));
    this.udp = udp;
    this.tcp = tcp;
  }

  async close(): Promise<void> {
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = undefined;
    this.tcp = undefined;
    for (const s of this.sockets) s.destroy();
    if (udp) await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (tcp) await new Promise<void>((resolve) => tcp.close(() => resolve()));
  }

  /** The service book changed: no answer made before is given again. */
  invalidate(): void {
    this.cache.clear();
  }

  /** One query's bytes in, the response's bytes out (undefined: nothing to send). Never rejects. */
  async handle(msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    try {
      return await this.respond(msg, transport);
    } catch (err) {
      // A packet dns-packet decodes but cannot encode back (an odd class or type): dropped.
      this.counts.dropped++;
      this.opts.log.debug({ bytes: msg.length, err: (err as Error).message }, 'dns: dropped a packet that could not be answered');
      return undefined;
    }
  }

  private async respond(msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    const key = msg.length >= 12 ? `${transport}${msg.toString('latin1', 2)}` : undefined;
    const hit = key === undefined ? undefined : this.cache.get(key);
    if (hit && Date.now() - hit.at < CACHE_MS) {
      this.counts.answered++;
      const out = Buffer.from(hit.bytes);
      out.writeUInt16BE(msg.readUInt16BE(0), 0);
      return out;
    }
    let query: Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch (err) {
      this.counts.dropped++;
      this.opts.log.debug({ bytes: msg.length, err: (err as Error).message }, 'dns: dropped a packet that is not DNS');
      return undefined;
    }
    let outcome;
    try {
      outcome = answerQuery(query, this.opts.book);
    } catch (err) {
      this.counts.failed++;
      this.opts.log.warn({ question: describeQuestion(query.questions?.[0]), err: (err as Error).message }, 'dns: could not answer');
      return this.encode(reply(query, 'SERVFAIL', []), query, transport);
    }
    if (outcome.kind === 'drop') {
      this.counts.dropped++;
      this.opts.log.debug({ why: outcome.why }, 'dns: dropped a packet');
      return undefined;
    }
    if (outcome.kind === 'answer') {
      this.counts.answered++;
      const bytes = this.encode(outcome.response, query, transport);
      if (key !== undefined) {
        if (this.cache.size >= CACHE_ENTRIES) this.cache.clear();
        this.cache.set(key, { at: Date.now(), bytes });
      }
      return bytes;
    }
    return this.forward(msg, query, transport);
  }

  private async forward(msg: Buffer, query: Packet, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    const upstreams = this.opts.upstreams().filter((u) => !(u.address === this.opts.address && u.port === this.opts.port));
    if (upstreams.length === 0 || this.inFlight >= (this.opts.maxInFlight ?? 512)) {
      this.counts.failed++;
      return this.encode(reply(query, 'SERVFAIL', []), query, transport);
    }
    this.inFlight++;
    try {
      let lastError = '';
      for (const upstream of upstreams.slice(0, UPSTREAMS_TRIED)) {
        try {
          const answer = await forwardQuery(msg, upstream, transport, this.opts.forwardTimeoutMs ?? 2_000);
          this.counts.forwarded++;
          return answer;
        } catch (err) {
          lastError = (err as Error).message;
        }
      }
      this.counts.failed++;
      this.opts.log.debug({ question: describeQuestion(query.questions?.[0]), err: lastError }, 'dns: upstream failed; SERVFAIL');
      return this.encode(reply(query, 'SERVFAIL', []), query, transport);
    } finally {
      this.inFlight--;
    }
  }

  /** The response's bytes; over UDP cut to the client's size, with TC set, so it asks again over TCP. */
  private encode(response: Packet, query: Packet, transport: 'udp' | 'tcp'): Buffer {
    const edns = (query.additionals ?? []).find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
    const withOpt: Packet = edns ? { ...response, additionals: [...(response.additionals ?? []), { type: 'OPT', name: '.', udpPayloadSize: UDP_EDNS_MAX } as never] } : response;
    const full = dnsPacket.encode(withOpt);
    if (transport === 'tcp') return full;
    const limit = edns ? Math.max(UDP_PLAIN, Math.min(edns.udpPayloadSize ?? UDP_PLAIN, UDP_EDNS_MAX)) : UDP_PLAIN;
    if (full.length <= limit) return full;
    return dnsPacket.encode({ ...response, flags: (response.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE, answers: [], authorities: [], additionals: [] });
  }

  private onConnection(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.sockets.delete(socket));
    let buffered: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      while (buffered.length >= 2) {
        const length = buffered.readUInt16BE(0);
        if (buffered.length < 2 + length) break;
        const msg = buffered.subarray(2, 2 + length);
        buffered = buffered.subarray(2 + length);
        // Each answer goes back as soon as it is ready (RFC 7766 lets them pass each other), so a
        // slow forward holds back no answer of ours.
        void this.handle(msg, 'tcp').then((out) => {
          if (socket.destroyed) return;
          // Not DNS: a TCP stream has no way to find the next message.
          if (!out) return void socket.destroy();
          const framed = Buffer.alloc(2 + out.length);
          framed.writeUInt16BE(out.length, 0);
          out.copy(framed, 2);
          socket.write(framed);
        });
      }
    });
  }
}
