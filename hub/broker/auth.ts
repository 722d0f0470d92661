import type { AuthenticateError, Client, PublishPacket, Subscription } from 'aedes';
import type { Logger } from 'pino';
import {
  DEVICE_PUBLISH_CHANNELS,
  DEVICE_SUBSCRIBE_CHANNELS,
  JOIN_USERNAME,
  deviceClientId,
  nodeFromUsername,
  type Topics,
} from '../../shared/protocol/topics.js';
import type { Credentials } from '../auth/credentials.js';

/** Who a connected MQTT client is; decided once, at CONNECT. */
export type Identity = { role: 'device'; node: string } | { role: 'join'; clientId: string };

// MQTT 3.1.1 CONNACK return codes [MQTT-3.2.2-3].
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

function refuse(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/**
 * The broker's three hooks, enforcing docs/PROTOCOL.md, 'Who may publish and subscribe': no anonymous client; a device
 * publishes only its own status, presence, metrics, events and rpc/res, and subscribes only to
 * its own desired set, its rpc/req and the network table; a joining client only to its own
 * join exchange.
 */
export class BrokerAuth {
  private readonly identities = new WeakMap<Client, Identity>();

  constructor(
    private readonly credentials: Credentials,
    private readonly topics: Topics,
    private readonly log: Logger,
  ) {}

  identity(client: Client | null): Identity | undefined {
    return client ? this.identities.get(client) : undefined;
  }

  authenticate = (client: Client, username: string | undefined, password: Buffer | undefined, done: (err: AuthenticateError | null, ok: boolean | null) => void): void => {
    const secret = password?.toString('utf8') ?? '';
    if (!username || !secret) {
      this.log.warn({ clientId: client.id }, 'mqtt connect refused: no credentials');
      return done(refuse('credentials required', NOT_AUTHORIZED), false);
    }
    if (username === JOIN_USERNAME) {
      if (!client.id.startsWith('join-')) return done(refuse('a joining client id must start with join-', NOT_AUTHORIZED), false);
      if (!this.credentials.verifyToken('join', secret)) {
        this.log.warn({ clientId: client.id }, 'mqtt join refused: bad join token');
        return done(refuse('bad join token', BAD_USERNAME_OR_PASSWORD), false);
      }
      this.identities.set(client, { role: 'join', clientId: client.id });
      return done(null, true);
    }
    const node = nodeFromUsername(username);
    if (node !== undefined) {
      if (client.id !== deviceClientId(node)) return done(refuse(`client id must be ${deviceClientId(node)}`, NOT_AUTHORIZED), false);
      if (!this.credentials.verifyDevice(node, secret)) {
        this.log.warn({ node }, 'mqtt connect refused: bad or revoked device credentials');
        return done(refuse('bad or revoked device credentials', BAD_USERNAME_OR_PASSWORD), false);
      }
      this.identities.set(client, { role: 'device', node });
      return done(null, true);
    }
    this.log.warn({ clientId: client.id, username }, 'mqtt connect refused: unknown user');
    return done(refuse('unknown user', BAD_USERNAME_OR_PASSWORD), false);
  };

  authorizePublish = (client: Client | null, packet: PublishPacket, callback: (err?: Error | null) => void): void => {
    // The hub's own publishes (client null) are trusted; everything else is checked.
    if (client === null) return callback(null);
    const who = this.identities.get(client);
    if (who && this.mayPublish(who, packet.topic)) return callback(null);
    this.log.warn({ clientId: client.id, topic: packet.topic }, 'mqtt publish refused');
    return callback(new Error(`not authorised to publish to ${packet.topic}`));
  };

  authorizeSubscribe = (client: Client, sub: Subscription, callback: (err: Error | null, sub?: Subscription | null) => void): void => {
    const who = this.identities.get(client);
    if (who && this.maySubscribe(who, sub.topic)) return callback(null, sub);
    this.log.warn({ clientId: client.id, topic: sub.topic }, 'mqtt subscribe refused');
    // Calling back a null subscription makes aedes answer SUBACK 0x80 (failure) [MQTT-3.9.3-2].
    return callback(null, null);
  };

  mayPublish(who: Identity, topic: string): boolean {
    if (who.role === 'join') return topic === this.topics.joinRequest(who.clientId);
    const parsed = this.topics.parseNodeTopic(topic);
    return parsed !== undefined && parsed.node === who.node && DEVICE_PUBLISH_CHANNELS.includes(parsed.channel);
  }

  maySubscribe(who: Identity, topic: string): boolean {
    // The overlay's peer table and the Services are the wildcards: every device reads them all (read-only; the hub alone writes them).
    if (who.role === 'device' && fleetNetworkTopics(this.topics).includes(topic)) return true;
    // Otherwise exact topics only: a wildcard could reach other devices' topics.
    if (topic.includes('+') || topic.includes('#')) return false;
    if (who.role === 'join') return topic === this.topics.joinResponse(who.clientId);
    const parsed = this.topics.parseNodeTopic(topic);
    return parsed !== undefined && parsed.node === who.node && DEVICE_SUBSCRIBE_CHANNELS.includes(parsed.channel);
  }
}

/** What every device reads of the pod network: the overlay's peers and relay, the Services, their endpoints and the catalog. */
export function fleetNetworkTopics(topics: Topics): string[] {
  return [topics.allPeers(), topics.relay(), topics.allServices(), topics.allEndpoints(), topics.catalog()];
}
