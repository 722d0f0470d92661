import { DEVICE_PUBLISH_CHANNELS, DEVICE_SUBSCRIBE_CHANNELS, type Topics } from '../../shared/protocol/topics.js';
import { fleetNetworkTopics } from './auth.js';

/**
 * The rules of docs/PROTOCOL.md, 'Who may publish and subscribe', written as Mosquitto dynamic-security roles, so that an
 * external Mosquitto enforces what the embedded broker's hooks (auth.ts) enforce:
 *
 * * `flotilla-hub`: the hub's own account: everything under the fleet's topic prefix, the
 *   dynamic-security control topic (it creates and deletes device accounts) and the broker's
 *   connected-clients counter.
 * * `flotilla-join`: the account of devices that hold only a join token. Mosquitto 2.0's
 *   dynamic security has no `%c` (client id) substitution, so the rule "only your own join
 *   exchange" is expressed as: publish any join request, subscribe to any *single* join
 *   response topic, but never with a wildcard (a literal `+` subscription is denied; `#` and
 *   wider patterns fall outside the allowed pattern). A joining client's id is 48 random bits,
 *   so another client cannot guess which topic to read.
 * * `flotilla-node-NAME`: one per device, created at join: publish its own status, presence,
 *   metrics, events and rpc/res; subscribe to (and receive) its own desired set, its rpc
 *   requests and the network table. Exact topics only.
 *
 * Everything else is denied by the default ACL access (only unsubscribing is allowed).
 */
export type AclType = 'publishClientSend' | 'publishClientReceive' | 'subscribeLiteral' | 'subscribePattern' | 'unsubscribeLiteral' | 'unsubscribePattern';

export interface DynsecAcl {
  acltype: AclType;
  topic: string;
  allow: boolean;
  priority?: number;
}

export interface DynsecRole {
  rolename: string;
  textname?: string;
  acls: DynsecAcl[];
}

export const HUB_ROLE = 'flotilla-hub';
export const JOIN_ROLE = 'flotilla-join';
const DEVICE_ROLE_PREFIX = 'flotilla-node-';

/** The dynamic-security plugin's request and response topics (Mosquitto 2.0). */
export const DYNSEC_REQUEST_TOPIC = '$CONTROL/dynamic-security/v1';
export const DYNSEC_RESPONSE_TOPIC = '$CONTROL/dynamic-security/v1/response';
/** Mosquitto's count of connected clients, republished every `sys_interval` seconds. */
export const SYS_CLIENTS_CONNECTED = '$SYS/broker/clients/connected';

/** Nothing without a role that allows it; unsubscribing never hurts. */
export const DEFAULT_ACL_ACCESS = { publishClientSend: false, publishClientReceive: false, subscribe: false, unsubscribe: true } as const;

const allow = (acltype: AclType, topic: string): DynsecAcl => ({ acltype, topic, allow: true });

export function deviceRoleName(node: string): string {
  return `${DEVICE_ROLE_PREFIX}${node}`;
}

export function hubRole(topics: Topics): DynsecRole {
  const all = `${topics.prefix}/#`;
  const control = '$CONTROL/dynamic-security/#';
  return {
    rolename: HUB_ROLE,
    textname: 'Flotilla hub',
    acls: [
      allow('publishClientSend', all),
      allow('publishClientReceive', all),
      allow('subscribePattern', all),
      allow('publishClientSend', control),
      allow('publishClientReceive', control),
      allow('subscribePattern', control),
      allow('publishClientReceive', SYS_CLIENTS_CONNECTED),
      allow('subscribeLiteral', SYS_CLIENTS_CONNECTED),
    ],
  };
}

export function joinRole(topics: Topics): DynsecRole {
  const response = topics.joinResponse('+');
  return {
    rolename: JOIN_ROLE,
    textname: 'Flotilla devices joining with a join token',
    acls: [
      allow('publishClientSend', topics.joinRequest('+')),
      // Literal ACLs are checked before patterns: this denies the one wildcard subscription
      // that the pattern below would otherwise let through (every device's credentials).
      { acltype: 'subscribeLiteral', topic: response, allow: false },
      allow('subscribePattern', response),
      allow('publishClientReceive', response),
    ],
  };
}

export function deviceRole(topics: Topics, node: string): DynsecRole {
  const readable = [...DEVICE_SUBSCRIBE_CHANNELS.map((c) => topics.node(node, c)), ...fleetNetworkTopics(topics)];
  return {
    rolename: deviceRoleName(node),
    textname: `Flotilla node ${node}`,
    acls: [
      ...DEVICE_PUBLISH_CHANNELS.map((c) => allow('publishClientSend', topics.node(node, c))),
      ...readable.map((t) => allow('subscribeLiteral', t)),
      ...readable.map((t) => allow('publishClientReceive', t)),
    ],
  };
}

/** A key per ACL, to compare the ACLs a role has at the broker with those it should have. */
export function aclKey(acl: DynsecAcl): string {
  return `${acl.acltype} ${acl.allow ? 'allow' : 'deny'} ${acl.priority ?? 0} ${acl.topic}`;
}
