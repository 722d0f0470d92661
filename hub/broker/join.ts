import type { Logger } from 'pino';
import { validateDns1123Subdomain, validateLabels, validateLabelValue } from '../../shared/labels/validation.js';
import { PROTOCOL_VERSION, decodePayload, encodePayload, joinRequestSchema, type JoinResponse } from '../../shared/protocol/messages.js';
import { deviceUsername, type Topics } from '../../shared/protocol/topics.js';
import { HOSTNAME_LABEL } from '../../shared/resources/scheduling.js';
import { formatFieldErrors } from '../../shared/resources/validate.js';
import type { Credentials } from '../auth/credentials.js';
import type { EventRecorder } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';
import type { MessageBus } from './bus.js';

/** Accounts at an external broker (hub/broker/mosquitto-accounts.ts). */
export interface BrokerAccounts {
  registerDevice(node: string, password: string): Promise<void>;
}

/**
 * The join exchange (docs/PROTOCOL.md, 'Joining and credentials'). A device that has only the hub's URL and a join
 * token connects as `join`, publishes {name, labels} on its own join request topic, and reads
 * its own credentials from the response topic. The hub creates the Node (labels from the
 * request, as the kubelet's --node-labels at registration) and issues a password that only the
 * device keeps in the clear. A name that has joined before is refused: the operator deletes the
 * node first, so a leaked join token cannot take over an existing device's identity.
 */
export class JoinService {
  /** Join requests refused by their schema (malformed, or a field over its bound). */
  invalid = 0;

  constructor(
    private readonly store: ObjectStore,
    private readonly credentials: Credentials,
    private readonly bus: MessageBus,
    private readonly topics: Topics,
    private readonly events: EventRecorder,
    private readonly log: Logger,
    /** An external broker's accounts: a device's must exist there before it is sent its password. */
    private readonly accounts?: BrokerAccounts,
  ) {}

  async start(): Promise<void> {
    await this.bus.subscribe(this.topics.allJoinRequests(), (topic, payload) => {
      void this.onRequest(topic, payload);
    });
  }

  private async onRequest(topic: string, payload: Buffer): Promise<void> {
    const parsed = this.topics.parseJoinTopic(topic);
    if (!parsed || parsed.direction !== 'req') return;
    let response = this.handle(payload);
    if (response.ok && this.accounts) {
      try {
        await this.accounts.registerDevice(response.node, response.password);
      } catch (err) {
        // The name has not joined as far as anyone can tell: it may try again.
        this.credentials.forgetNode(response.node);
        this.events.warning({ kind: 'Node', name: response.node }, 'JoinFailed', `the MQTT broker did not take the account of node ${response.node}: ${(err as Error).message}`, response.node);
        response = { v: PROTOCOL_VERSION, ok: false, error: `join failed: ${(err as Error).message}` };
      }
    }
    if (!response.ok) this.log.warn({ clientId: parsed.clientId, error: response.error }, 'join refused');
    await this.bus.publish(this.topics.joinResponse(parsed.clientId), encodePayload(response), { qos: 1, retain: false });
  }

  handle(payload: Buffer): JoinResponse {
    const decoded = decodePayload(joinRequestSchema, payload);
    if (!decoded.ok) {
      this.invalid++;
      return { v: PROTOCOL_VERSION, ok: false, error: `malformed join request: ${formatFieldErrors(decoded.errors)}` };
    }
    const { name, labels } = decoded.value;
    const nameProblems = validateDns1123Subdomain(name);
    if (nameProblems.length > 0) return { v: PROTOCOL_VERSION, ok: false, error: `invalid node name '${name}': ${nameProblems.join('; ')}` };
    const labelProblems = validateLabels(labels ?? {});
    if (labelProblems.length > 0) return { v: PROTOCOL_VERSION, ok: false, error: `invalid label ${labelProblems[0]!.key}: ${labelProblems[0]!.message}` };
    if (this.credentials.hasEverJoined(name)) {
      return { v: PROTOCOL_VERSION, ok: false, error: `node name '${name}' is already taken; delete the node (flotilla delete node ${name}) before it joins again` };
    }
    let password = '';
    try {
      this.store.transaction(() => {
        const existing = this.store.get('Node', '', name);
        // Every node carries its own name as the well-known hostname label (the kubelet sets it), the
        // topology key that spreads pods over devices. A name too long for a label value goes
        // without; the scheduler takes the node's name for that key then.
        const hostname: Record<string, string> = validateLabelValue(name).length === 0 ? { [HOSTNAME_LABEL]: name } : {};
        if (existing) {
          // A node the operator registered ahead of the device: keep its labels, add the device's.
          this.store.update({ ...existing, metadata: { ...existing.metadata, labels: { ...hostname, ...(labels ?? {}), ...(existing.metadata.labels ?? {}) } } });
        } else {
          this.store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name, labels: { ...(labels ?? {}), ...hostname } }, spec: {} });
        }
        password = this.credentials.issueDevicePassword(name);
      });
    } catch (err) {
      return { v: PROTOCOL_VERSION, ok: false, error: `join failed: ${(err as Error).message}` };
    }
    this.log.info({ node: name }, 'device joined');
    this.events.normal({ kind: 'Node', name }, 'Joined', `Node ${name} joined the fleet`, name);
    return { v: PROTOCOL_VERSION, ok: true, node: name, username: deviceUsername(name), password };
  }
}
