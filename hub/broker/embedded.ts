import { createServer, type Server } from 'node:net';
import { Readable } from 'node:stream';
import { Aedes, type Client } from 'aedes';
import type { Logger } from 'pino';
import { DEFAULT_MAX_PACKET_BYTES } from '../../shared/protocol/bounds.js';
import { deviceClientId } from '../../shared/protocol/topics.js';
import type { BrokerAuth } from './auth.js';
import type { MessageBus } from './bus.js';

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  auth: BrokerAuth;
  log: Logger;
  /** Called with the node of every packet a device sends (publish or keepalive ping): its liveness. */
  onDeviceActivity?: (node: string) => void;
  /** The most bytes of one MQTT packet a client may send (DEFAULT_MAX_PACKET_BYTES when absent). */
  maxPacketBytes?: number;
}

/** The embedded aedes broker on a TCP port, with the hub's auth hooks, as a MessageBus. */
/** The most messages handed to the hub's handlers in one batch (see deliverInBatches). */
const MAX_BATCH = 500;

/** Messages aedes delivers at once (see start()). */
const DELIVERY_CONCURRENCY = 2_000;

/**
 * The most bytes of a packet from a client that is not a joined device: a CONNECT (before the
 * client is known), or a join request, whose name and 64 labels take a few KiB.
 */
const UNJOINED_MAX_PACKET_BYTES = 64 * 1024;

/** Pending connections the MQTT listener queues (Node's default is 511). */
const LISTEN_BACKLOG = 4096;
/** How often the keepalive of a device whose message the hub is still working on is renewed. */
const BUSY_KEEPALIVE_MS = 5_000;

/**
 * aedes renews a client's keepalive when it takes up the client's next packet, and takes it up
 * only once the hub has handled the one before (the PUBACK waits for the hub's commit). A
 * device whose status report waits in a long batch queue is alive all the same: without this,
 * a busy hub would drop the very devices it is slow to answer, and their reconnects would make
 * it busier still. A client with a packet in progress has its keepalive renewed.
 */
function keepBusyClientsAlive(aedes: Aedes): void {
  const clients = (aedes as unknown as { clients: Record<string, { _parsingBatch?: number; _keepaliveTimer?: NodeJS.Timeout | null }> }).clients;
  for (const id in clients) {
    const client = clients[id]!;
    if ((client._parsingBatch ?? 0) > 0) client._keepaliveTimer?.refresh();
  }
}

interface PacketParser {
  packet: { cmd?: string; length: number };
  _parseLength(): boolean;
  _emitError(err: Error): void;
}

/**
 * Refuses a packet longer than `max` bytes as soon as its header says how long it is, before
 * any of it is buffered: mqtt-packet has no such limit and would gather the whole packet (a
 * 64 MB publish, its PUBACK, and several copies of it on the way to the hub). The parser's error
 * closes the connection, as MQTT 5 has a server do with a packet over the Maximum Packet Size it
 * announced (section 3.2.2.3.6: DISCONNECT, Packet too large); MQTT 3.1.1 has no way to refuse
 * one packet and keep the connection.
 */
function limitPacketSize(parser: PacketParser, limit: () => number, refused: (cmd: string, bytes: number, max: number) => void): void {
  const parseLength = parser._parseLength;
  parser._parseLength = function (this: PacketParser) {
    if (!parseLength.call(this)) return false;
    const max = limit();
    if (this.packet.length <= max) return true;
    refused(this.packet.cmd ?? 'unknown', this.packet.length, max);
    this._emitError(new Error(`packet of ${this.packet.length} bytes is over the limit of ${max} bytes`));
    return false;
  };
}

export class EmbeddedBroker implements MessageBus {
  private wrapBatch: ((run: () => void) => void) | undefined;
  private readonly pending: { deliver: () => void; done: () => void }[] = [];
  private flushScheduled = false;
  private closed = false;
  private readonly connectedHandlers: ((node: string) => void)[] = [];

  private constructor(
    private readonly aedes: Aedes,
    private readonly server: Server,
    private readonly log: Logger,
    readonly port: number,
    private readonly refused: { packets: number },
  ) {}

  /** Packets refused for their size (each closed its client's connection). */
  get oversizeDropped(): number {
    return this.refused.packets;
  }

  static async start(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
    // aedes 1.x: createBroker, not the old `aedes()` factory.
    const aedes = await Aedes.createBroker({
      authenticate: opts.auth.authenticate,
      authorizePublish: opts.auth.authorizePublish,
      authorizeSubscribe: opts.auth.authorizeSubscribe,
      connectTimeout: 10_000,
      // Messages in delivery at once (aedes' default is 100). Each waits for the hub's batch
      // commit before its PUBACK, so with 100 the batches stayed small and the rest queued in
      // mqemitter, whose queue is an array shifted once per message: O(queue) each, a tenth of
      // the hub's CPU while 10,000 devices reported in.
      concurrency: DELIVERY_CONCURRENCY,
    });
    indexRetainedByTopic(aedes);
    aedes.on('clientError', (client: Client, err: Error) => opts.log.debug({ clientId: client.id, err: err.message }, 'mqtt client error'));
    aedes.on('connectionError', (client: Client, err: Error) => opts.log.debug({ clientId: client?.id, err: err.message }, 'mqtt connection error'));
    const activity = opts.onDeviceActivity;
    if (activity) {
      const heard = (client: Client | null) => {
        const identity = opts.auth.identity(client);
        if (identity?.role === 'device') activity(identity.node);
      };
      aedes.on('ping', (_packet, client: Client) => heard(client));
      aedes.on('publish', (_packet, client: Client | null) => heard(client));
    }
    const maxPacketBytes = opts.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES;
    const refused = { packets: 0 };
    const server = createServer((socket) => {
      const client = aedes.handle(socket) as unknown as { _parser: PacketParser };
      // A client not yet authenticated (its CONNECT) and a joining one need a few KiB at most:
      // only a device that has joined may send up to the packet limit.
      const limit = () => (opts.auth.identity(client as unknown as Client)?.role === 'device' ? maxPacketBytes : Math.min(maxPacketBytes, UNJOINED_MAX_PACKET_BYTES));
      limitPacketSize(client._parser, limit, (cmd, bytes, max) => {
        refused.packets++;
        const identity = opts.auth.identity(client as unknown as Client);
        opts.log.warn({ node: identity?.role === 'device' ? identity.node : undefined, role: identity?.role, remote: socket.remoteAddress, cmd, bytes, limit: max }, 'mqtt packet over the size limit refused; connection closed');
      });
    });
    const alive = setInterval(() => keepBusyClientsAlive(aedes), BUSY_KEEPALIVE_MS);
    alive.unref();
    server.once('close', () => clearInterval(alive));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        // A fleet reconnecting at once (a hub restart, a network blip) must wait in the queue,
        // not have its SYNs dropped and retried seconds later: the kernel caps this at somaxconn.
        server.listen({ port: opts.port, host: opts.host, backlog: LISTEN_BACKLOG }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      // The port is taken (or not ours): aedes' timers would keep a hub that cannot start alive.
      clearInterval(alive);
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      throw err;
    }
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : opts.port;
    opts.log.info({ host: opts.host, port, maxPacketBytes }, 'mqtt broker listening');
    const broker = new EmbeddedBroker(aedes, server, opts.log, port, refused);
    aedes.on('clientReady', (client: Client) => {
      const identity = opts.auth.identity(client);
      if (identity?.role !== 'device') return;
      for (const handler of broker.connectedHandlers) {
        try {
          handler(identity.node);
        } catch (err) {
          opts.log.error({ err, node: identity.node }, 'device connect handler failed');
        }
      }
    });
    return broker;
  }

  publish(topic: string, payload: Buffer, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    return new Promise((resolve, reject) => {
      this.aedes.publish({ cmd: 'publish', topic, payload, qos: opts.qos, retain: opts.retain, dup: false }, (err?: Error) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * From now on, the messages that arrive together (within one turn of the event loop, at most
   * MAX_BATCH) reach the hub's handlers inside one call of `wrap`: with a store transaction, a
   * thousand status reports cost one commit rather than a thousand. Each message is still
   * acknowledged (PUBACK) only after its handler ran, and a handler's failure stays its own.
   */
  deliverInBatches(wrap: (run: () => void) => void): void {
    this.wrapBatch = wrap;
  }

  subscribe(pattern: string, handler: (topic: string, payload: Buffer) => void): Promise<void> {
    return new Promise((resolve) => {
      this.aedes.subscribe(
        pattern,
        (packet, done) => {
          const deliver = () => {
            try {
              handler(packet.topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload));
            } catch (err) {
              // A handler's failure must never take the broker down with it.
              this.log.error({ err, topic: packet.topic }, 'message handler failed');
            }
          };
          if (!this.wrapBatch) {
            deliver();
            done();
            return;
          }
          this.pending.push({ deliver, done });
          this.scheduleFlush();
        },
        resolve,
      );
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.closed) return;
      this.flushBatch();
      if (this.pending.length > 0) this.scheduleFlush();
    });
  }

  private flushBatch(): void {
    const batch = this.pending.splice(0, MAX_BATCH);
    try {
      this.wrapBatch!(() => {
        for (const m of batch) m.deliver();
      });
    } catch (err) {
      this.log.error({ err, messages: batch.length }, 'a batch of messages could not be committed');
    }
    for (const m of batch) m.done();
  }

  disconnectNode(node: string): void {
    const clients = (this.aedes as unknown as { clients: Record<string, Client> }).clients;
    const client = clients[deviceClientId(node)];
    if (client) {
      this.log.info({ node }, 'disconnecting device');
      client.close();
    }
  }

  nodeConnected(node: string): boolean {
    const clients = (this.aedes as unknown as { clients: Record<string, Client> }).clients;
    return clients[deviceClientId(node)] !== undefined;
  }

  connectedClients(): number {
    return this.aedes.connectedClients;
  }

  remoteAddress(node: string): string | undefined {
    const clients = (this.aedes as unknown as { clients: Record<string, Client> }).clients;
    const address = (clients[deviceClientId(node)]?.conn as { remoteAddress?: string } | undefined)?.remoteAddress;
    return address?.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
  }

  onDeviceConnected(handler: (node: string) => void): void {
    this.connectedHandlers.push(handler);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    // What arrived before the close is still handled now, while the hub's store is open; nothing after.
    while (this.pending.length > 0) this.flushBatch();
    this.closed = true;
  }
}

interface RetainedPacket {
  topic: string;
  payload: Buffer | string;
}

interface RetainedStore {
  storeRetained(packet: RetainedPacket, cb?: (err?: Error | null) => void): Promise<void> | void;
  createRetainedStreamCombi(patterns: string[]): Readable;
}

/**
 * aedes' memory persistence answers a SUBSCRIBE's retained lookup by testing every retained
 * message against the subscription's pattern: with a retained desired set and presence per
 * device, each device's subscription to its own desired topic cost O(fleet), and a reconnect
 * storm O(fleet²). A device subscribes to exact topics only, so those are answered from an
 * index by topic kept beside the store; patterns with wildcards still take the full scan.
 */
function indexRetainedByTopic(aedes: Aedes): void {
  const persistence = (aedes as unknown as { persistence: RetainedStore }).persistence;
  const byTopic = new Map<string, RetainedPacket>();
  const store = persistence.storeRetained.bind(persistence);
  const scan = persistence.createRetainedStreamCombi.bind(persistence);
  persistence.storeRetained = (packet, cb) => {
    // An empty retained payload clears the topic's retained message [MQTT-3.3.1-10].
    if (packet.payload.length === 0) byTopic.delete(packet.topic);
    else byTopic.set(packet.topic, { ...packet });
    return store(packet, cb);
  };
  persistence.createRetainedStreamCombi = (patterns) => {
    if (patterns.some((p) => p.includes('+') || p.includes('#'))) return scan(patterns);
    return Readable.from(patterns.flatMap((p) => (byTopic.has(p) ? [byTopic.get(p)!] : [])));
  };
}
