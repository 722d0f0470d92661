import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import type { Logger } from 'pino';
import { PROTOCOL_VERSION, decodePayload, encodePayload, joinResponseSchema } from '../../shared/protocol/messages.js';
import { JOIN_USERNAME, Topics, joinClientId } from '../../shared/protocol/topics.js';
import type { DeviceCredentials } from '../state/state.js';
import { Backoff } from './backoff.js';

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
 * Joins the fleet over MQTT with the join token (docs/PROTOCOL.md, 'Joining and credentials'): the device's one
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

/** A device whose join is refused asks again at most this far apart (5 minutes). */
const JOIN_REFUSED_MAX_DELAY_MS = 300_000;

export interface JoinConfig {
  hub?: string;
  token?: string;
  name: string;
  labels: Record<string, string>;
  stateDir: string;
}

/**
 * Joins with the join token until the hub answers. A connection problem is retried with
 * back-off up to a minute. A refusal ends the join when `refusalIsFinal`; otherwise it is logged
 * with its reason and what the operator can do, and asked again at most every 5 minutes: an
 * operator's fix (or the hub noticing the device's old connection is gone) lets the device in
 * without a restart. The credentials are saved before they are returned; a failed save is
 * logged, and the device runs on with them in memory.
 */
export class JoinLoop {
  private stopped = false;
  private endPause?: () => void;

  constructor(
    /** Read at each attempt: the agent settles the node's name at start. */
    private readonly config: JoinConfig,
    private readonly topics: Topics,
    private readonly save: (creds: DeviceCredentials) => void,
    private readonly log: Logger,
  ) {}

  async run(refusalIsFinal: boolean): Promise<DeviceCredentials> {
    const backoff = new Backoff(1_000, 60_000);
    const { hub, token } = this.config;
    if (!hub || !token) throw new JoinRefused(`no usable credentials in ${this.config.stateDir}: give --hub and --token to join`);
    for (;;) {
      try {
        const creds = await joinHub({ hub, token, name: this.config.name, labels: this.config.labels, topics: this.topics });
        try {
          this.save(creds);
        } catch (err) {
          // Kept in memory: the device runs; the next start joins again.
          this.log.error({ err: (err as Error).message, stateDir: this.config.stateDir }, 'could not save the credentials to disk');
        }
        this.log.info({ node: creds.node }, 'joined the fleet');
        return creds;
      } catch (err) {
        if ((err instanceof JoinRefused && refusalIsFinal) || this.stopped) throw err;
        if (err instanceof JoinRefused) {
          const delay = backoff.next(JOIN_REFUSED_MAX_DELAY_MS);
          this.log.error(
            { reason: err.message, retryInMs: delay, node: this.config.name },
            `the hub refused to let this device join again; its pods keep running from the desired set on disk. To let it in: put its credentials.json back in ${this.config.stateDir}, or run \`flotilla delete node ${this.config.name}\` on the hub`,
          );
          await this.pause(delay);
        } else {
          const delay = backoff.next();
          this.log.warn({ err: (err as Error).message, retryInMs: delay }, 'could not join yet');
          await this.pause(delay);
        }
        if (this.stopped) throw err;
      }
    }
  }

  /** Ends a wait between attempts at once; run() then gives up. */
  stop(): void {
    this.stopped = true;
    this.endPause?.();
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.endPause = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
