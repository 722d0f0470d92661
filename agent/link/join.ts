import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { PROTOCOL_VERSION, decodePayload, encodePayload, joinResponseSchema } from '../../shared/protocol/messages.js';
import { JOIN_USERNAME, Topics, joinClientId } from '../../shared/protocol/topics.js';
import type { DeviceCredentials } from '../state/state.js';

/** The hub said no (bad token, name taken): retrying will not help. */
export class JoinRefused extends Error {
  override name = 'JoinRefused';
}

const CONNACK_REFUSALS: Record<number, string> = {
  1: 'unacceptable protocol version',
  2: 'client identifier rejected',
  3: 'server unavailable',
  4: 'bad join token',
  5: 'not authorised (bad join token?)',
};

/**
 * Joins the fleet over MQTT with the join token (DESIGN.md section 3): the device's one
 * outbound connection is all it needs, NAT or not. Resolves with the device's own credentials.
 */
export async function joinHub(opts: { hub: string; token: string; name: string; labels: Record<string, string>; topics: Topics; timeoutMs?: number }): Promise<DeviceCredentials> {
  const clientId = joinClientId(randomBytes(6).toString('hex'));
  const client = mqtt.connect(opts.hub, {
    clientId,
    username: JOIN_USERNAME,
    password: opts.token,
    clean: true,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: opts.timeoutMs ?? 15_000,
    // mqtt-packet's cache of 65,536 pre-encoded packet ids costs ~6 MB of heap: too much for a Pi.
    writeCache: false,
  });
  try {
    return await new Promise<DeviceCredentials>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to the join request within ${(opts.timeoutMs ?? 15_000) / 1000}s`)), opts.timeoutMs ?? 15_000);
      client.on('error', (err: Error & { code?: number }) => {
        clearTimeout(timer);
        const refusal = typeof err.code === 'number' ? CONNACK_REFUSALS[err.code] : undefined;
        reject(refusal ? new JoinRefused(`the hub refused the join: ${refusal}`) : err);
      });
      client.on('close', () => reject(new Error(`connection to ${opts.hub} closed before the join completed`)));
      client.on('message', (_topic, payload) => {
        clearTimeout(timer);
        const decoded = decodePayload(joinResponseSchema, payload);
        if (!decoded.ok) return reject(new Error('the hub sent a malformed join response'));
        const answer = decoded.value;
        if (!answer.ok) return reject(new JoinRefused(`the hub refused the join: ${answer.error}`));
        resolve({ hub: opts.hub, node: answer.node, username: answer.username, password: answer.password });
      });
      client.on('connect', () => {
        client.subscribe(opts.topics.joinResponse(clientId), { qos: 1 }, (err, granted) => {
          if (err || granted?.[0]?.qos === 128) return reject(new Error('could not subscribe to the join response'));
          client.publish(opts.topics.joinRequest(clientId), encodePayload({ v: PROTOCOL_VERSION, name: opts.name, labels: opts.labels, token: opts.token }), { qos: 1 });
        });
      });
    });
  } finally {
    client.end(true);
  }
}
