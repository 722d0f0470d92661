import type { Logger } from 'pino';
import { validateDns1123Subdomain, validateLabels, validateLabelValue } from '../../shared/labels/validation.js';
import { PROTOCOL_VERSION, decodePayload, encodePayload, joinRequestSchema, type JoinResponse } from '../../shared/protocol/messages.js';
import { deviceUsername, type Topics } from '../../shared/protocol/topics.js';
import { HOSTNAME_LABEL } from '../../shared/resources/scheduling.js';
import { formatFieldErrors } from '../../shared/resources/validate.js';
import { labelRuleOf, type CredentialRecord, type Credentials } from '../auth/credentials.js';
import { describeRule, firstLabelBeyondRule, joinLabelsRefusal } from '../auth/join-labels.js';
import type { EventRecorder } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';
import type { MessageBus } from './bus.js';

/** Accounts at an external broker (hub/broker/mosquitto-accounts.ts). */
export interface BrokerAccounts {
  registerDevice(node: string, password: string): Promise<void>;
}

/**
 * The join exchange (docs/PROTOCOL.md, 'Joining and credentials'). A device that has only the hub's URL and a join
 * token connects as `join`, publishes {name, labels, token} on its own join request topic, and
 * reads its own credentials from the response topic. The hub creates the Node (labels from the
 * request, as the kubelet's --node-labels at registration, within the token's label rule: see
 * auth/join-labels.ts) and issues a password that only the device keeps in the clear.
 *
 * A name that has joined before may join again only to recover a device that lost its
 * credentials: with the same join token it first joined with (still valid), while no device is
 * connected under that name, and when the node carries no label the token could not have given
 * it (an operator's trust is not handed to a token holder; the same holds for a node registered
 * ahead of its device). The earlier credentials are revoked
 * and a `Rejoined` event says so. Anything else is refused; the operator deletes the node first.
 * Kubernetes lets a bootstrap token re-register any node name; this is narrower on purpose.
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
    const admitted = this.admit(payload);
    let response = admitted.response;
    if (response.ok && this.accounts) {
      const node = response.node;
      try {
        await this.accounts.registerDevice(node, response.password);
      } catch (err) {
        // A first join: the name has not joined as far as anyone can tell, and may try again. A
        // rejoin keeps its record (the new password never left the hub), so that only the same
        // join token may try again.
        if (!admitted.rejoin) this.credentials.forgetNode(node);
        this.events.warning({ kind: 'Node', name: node }, 'JoinFailed', `the MQTT broker did not take the account of node ${node}: ${(err as Error).message}`, node);
        response = { v: PROTOCOL_VERSION, ok: false, error: `join failed: ${(err as Error).message}` };
      }
    }
    // Joined (or joined again) only once the broker has the account too.
    if (response.ok) this.announce(response.node, admitted.rejoin, admitted.tokenId);
    if (!response.ok) this.log.warn({ clientId: parsed.clientId, error: response.error }, 'join refused');
    await this.bus.publish(this.topics.joinResponse(parsed.clientId), encodePayload(response), { qos: 1, retain: false });
  }

  /** Answers a join request as the embedded broker does (no broker account to make): admits it and says so. */
  handle(payload: Buffer): JoinResponse {
    const { response, rejoin, tokenId } = this.admit(payload);
    if (response.ok) this.announce(response.node, rejoin, tokenId);
    return response;
  }

  /** Checks a join request and, when it may join, writes its Node and credentials; announces nothing. */
  private admit(payload: Buffer): { response: JoinResponse; rejoin: boolean; tokenId?: string } {
    const refuse = (error: string) => ({ response: { v: PROTOCOL_VERSION, ok: false, error } as JoinResponse, rejoin: false });
    const decoded = decodePayload(joinRequestSchema, payload);
    if (!decoded.ok) {
      this.invalid++;
      return refuse(`malformed join request: ${formatFieldErrors(decoded.errors)}`);
    }
    const { name, labels, token } = decoded.value;
    // The broker checked a token at CONNECT; this one says whose label rule applies.
    const joinToken = token === undefined ? undefined : this.credentials.verifyToken('join', token);
    if (!joinToken) return refuse(token === undefined ? 'the join request carries no join token (an agent older than the hub?)' : 'bad join token');
    const nameProblems = validateDns1123Subdomain(name);
    if (nameProblems.length > 0) return refuse(`invalid node name '${name}': ${nameProblems.join('; ')}`);
    const requested = labels ?? {};
    const labelProblems = validateLabels(requested);
    if (labelProblems.length > 0) return refuse(`invalid label ${labelProblems[0]!.key}: ${labelProblems[0]!.message}`);
    const rule = labelRuleOf(joinToken);
    const labelRefusal = joinLabelsRefusal(requested, rule, joinToken.id);
    if (labelRefusal) return refuse(labelRefusal);
    let rejoin = false;
    if (this.credentials.hasEverJoined(name)) {
      const refusal = this.rejoinRefusal(name, joinToken);
      if (refusal) return refuse(`node name '${name}' is already taken: ${refusal}`);
      rejoin = true;
    } else {
      // A node registered ahead of its device: the first device to join gets its labels, so the token must be able to grant them.
      const registered = this.store.get('Node', '', name);
      const beyond = registered ? firstLabelBeyondRule(registered.metadata.labels ?? {}, rule) : undefined;
      if (beyond) return refuse(`node '${name}' was registered with label ${beyond}, which join token ${joinToken.id} cannot grant (it allows ${describeRule(rule)}); remove the label (flotilla label node ${name} ${beyond}-), let the device join, then set it again`);
    }
    let password = '';
    try {
      this.store.transaction(() => {
        const existing = this.store.get('Node', '', name);
        // Every node carries its own name as the well-known hostname label (the kubelet sets it), the
        // topology key that spreads pods over devices. A name too long for a label value goes
        // without; the scheduler takes the node's name for that key then.
        const hostname: Record<string, string> = validateLabelValue(name).length === 0 ? { [HOSTNAME_LABEL]: name } : {};
        const granted = { ...requested, ...(rule?.labels ?? {}) };
        if (existing) {
          // A node the operator registered ahead of the device (or a device joining again): keep its labels, add the device's.
          this.store.update({ ...existing, metadata: { ...existing.metadata, labels: { ...hostname, ...granted, ...(existing.metadata.labels ?? {}) } } });
        } else {
          this.store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name, labels: { ...granted, ...hostname } }, spec: {} });
        }
        password = this.credentials.issueDevicePassword(name, joinToken.id);
      });
    } catch (err) {
      return refuse(`join failed: ${(err as Error).message}`);
    }
    // Whatever still holds the old credentials is cut off (issueDevicePassword revoked them). With
    // an external broker this goes first: it drops the node's old account, which the new one replaces.
    if (rejoin) this.bus.disconnectNode(name);
    return { response: { v: PROTOCOL_VERSION, ok: true, node: name, username: deviceUsername(name), password }, rejoin, tokenId: joinToken.id };
  }

  private announce(name: string, rejoin: boolean, tokenId: string | undefined): void {
    if (rejoin) {
      this.log.warn({ node: name, joinToken: tokenId }, 'device joined again; its earlier credentials are revoked');
      this.events.warning({ kind: 'Node', name }, 'Rejoined', `Node ${name} joined again with join token ${tokenId} (it had lost its credentials); its earlier credentials are revoked`, name);
    } else {
      this.log.info({ node: name }, 'device joined');
      this.events.normal({ kind: 'Node', name }, 'Joined', `Node ${name} joined the fleet`, name);
    }
  }

  /** Why a device may not join again under a name that has joined before; undefined when it may (see the class comment). */
  private rejoinRefusal(name: string, joinToken: CredentialRecord): string | undefined {
    const deleteFirst = `delete the node first (flotilla delete node ${name})`;
    const current = this.credentials.deviceCredentials(name);
    if (!current) return `its credentials were revoked; ${deleteFirst} to let it join again`;
    if (current.joinTokenId === undefined) return `it joined before the hub recorded which join token a device joined with; ${deleteFirst} to let it join again`;
    if (current.joinTokenId !== joinToken.id) return `it joined with another join token; join with that token, or ${deleteFirst}`;
    if (this.connected(name)) return 'a device is connected under that name; a join token cannot take over a connected node';
    const node = this.store.get('Node', '', name);
    const beyond = firstLabelBeyondRule(node?.metadata.labels ?? {}, labelRuleOf(joinToken));
    if (beyond) return `the node carries label ${beyond}, which join token ${joinToken.id} cannot grant (it allows ${describeRule(labelRuleOf(joinToken))}); remove the label (flotilla label node ${name} ${beyond}-) or ${deleteFirst}`;
    return undefined;
  }

  /** The broker's word when it has one; else the node's Ready condition (Unknown once its agent is gone). */
  private connected(name: string): boolean {
    const known = this.bus.nodeConnected?.(name);
    if (known !== undefined) return known;
    const status = this.store.get('Node', '', name)?.status as { conditions?: { type: string; status: string }[] } | undefined;
    const ready = status?.conditions?.find((c) => c.type === 'Ready');
    return ready !== undefined && ready.status !== 'Unknown';
  }
}
