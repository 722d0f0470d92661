import { createServer, type Server } from 'node:net';
import { Aedes, type Client } from 'aedes';
import type { Logger } from 'pino';
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
}

/** The embedded aedes broker on a TCP port, with the hub's auth hooks, as a MessageBus. */
export class EmbeddedBroker implements MessageBus {
  private constructor(
    private readonly aedes: Aedes,
    private readonly server: Server,
    private readonly log: Logger,
    readonly port: number,
  ) {}

  static async start(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
    // aedes 1.x: createBroker, not the old `aedes()` factory.
    const aedes = await Aedes.createBroker({
      authenticate: opts.auth.authenticate,
      authorizePublish: opts.auth.authorizePublish,
      authorizeSubscribe: opts.auth.authorizeSubscribe,
      connectTimeout: 10_000,
    });
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
    const server = createServer(aedes.handle);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : opts.port;
    opts.log.info({ host: opts.host, port }, 'mqtt broker listening');
    return new EmbeddedBroker(aedes, server, opts.log, port);
  }

  publish(topic: string, payload: Buffer, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    return new Promise((resolve, reject) => {
      this.aedes.publish({ cmd: 'publish', topic, payload, qos: opts.qos, retain: opts.retain, dup: false }, (err?: Error) => (err ? reject(err) : resolve()));
    });
  }

  subscribe(pattern: string, handler: (topic: string, payload: Buffer) => void): Promise<void> {
    return new Promise((resolve) => {
      this.aedes.subscribe(
        pattern,
        (packet, done) => {
          try {
            handler(packet.topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload));
          } catch (err) {
            // A handler's failure must never take the broker down with it.
            this.log.error({ err, topic: packet.topic }, 'message handler failed');
          }
          done();
        },
        resolve,
      );
    });
  }

  disconnectNode(node: string): void {
    const clients = (this.aedes as unknown as { clients: Record<string, Client> }).clients;
    const client = clients[deviceClientId(node)];
    if (client) {
      this.log.info({ node }, 'disconnecting device');
      client.close();
    }
  }

  connectedClients(): number {
    return this.aedes.connectedClients;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
