/**
 * MQTT topics (docs/PROTOCOL.md, 'Topics'). Everything lives under one prefix (default
 * `flotilla/v1`, configurable) so that a shared external broker can host several fleets.
 */
export const DEFAULT_TOPIC_PREFIX = 'flotilla/v1';

export type NodeChannel = 'desired' | 'status' | 'presence' | 'metrics' | 'events' | 'rpc/req' | 'rpc/res';

/** What a device may publish on its own node topics (everything else it may only read, or nothing). */
export const DEVICE_PUBLISH_CHANNELS: readonly NodeChannel[] = ['status', 'presence', 'metrics', 'events', 'rpc/res'];
/** What a device may subscribe to on its own node topics. */
export const DEVICE_SUBSCRIBE_CHANNELS: readonly NodeChannel[] = ['desired', 'rpc/req'];

export class Topics {
  constructor(readonly prefix: string = DEFAULT_TOPIC_PREFIX) {
    if (prefix === '' || /[#+]/.test(prefix) || prefix.endsWith('/')) throw new Error(`invalid topic prefix '${prefix}'`);
  }

  node(node: string, channel: NodeChannel): string {
    return `${this.prefix}/nodes/${node}/${channel}`;
  }
  desired(node: string): string {
    return this.node(node, 'desired');
  }
  status(node: string): string {
    return this.node(node, 'status');
  }
  presence(node: string): string {
    return this.node(node, 'presence');
  }
  /** The wildcard the hub subscribes to for one channel of every node. */
  allNodes(channel: NodeChannel): string {
    return `${this.prefix}/nodes/+/${channel}`;
  }
  /** The retained peer message of one node of the overlay (hub → devices). */
  peer(node: string): string {
    return `${this.prefix}/network/peers/${node}`;
  }
  /** Every peer message: the one wildcard a device may subscribe to. */
  allPeers(): string {
    return `${this.prefix}/network/peers/+`;
  }
  /** The node a peer topic names; undefined for any other topic. */
  parsePeerTopic(topic: string): string | undefined {
    const head = `${this.prefix}/network/peers/`;
    if (!topic.startsWith(head)) return undefined;
    const node = topic.slice(head.length);
    return node && !node.includes('/') ? node : undefined;
  }
  /** A Service's retained message (hub → devices). */
  service(namespace: string, name: string): string {
    return `${this.prefix}/network/services/${namespace}/${name}`;
  }
  /** Every Service's message: a wildcard a device may subscribe to. */
  allServices(): string {
    return `${this.prefix}/network/services/+/+`;
  }
  /** One endpoint (a pod) of a Service, retained (hub → devices). */
  endpoint(namespace: string, service: string, pod: string): string {
    return `${this.prefix}/network/endpoints/${namespace}/${service}/${pod}`;
  }
  /** Every endpoint's message: a wildcard a device may subscribe to. */
  allEndpoints(): string {
    return `${this.prefix}/network/endpoints/+/+/+`;
  }
  /** How many Services and endpoints exist, retained (hub → devices). */
  catalog(): string {
    return `${this.prefix}/network/catalog`;
  }
  /** The namespace and name a Service topic names; undefined for any other topic. */
  parseServiceTopic(topic: string): { namespace: string; name: string } | undefined {
    const parts = this.split(topic, 'network/services/', 2);
    return parts ? { namespace: parts[0]!, name: parts[1]! } : undefined;
  }
  /** The namespace, Service and pod an endpoint topic names; undefined for any other topic. */
  parseEndpointTopic(topic: string): { namespace: string; service: string; pod: string } | undefined {
    const parts = this.split(topic, 'network/endpoints/', 3);
    return parts ? { namespace: parts[0]!, service: parts[1]!, pod: parts[2]! } : undefined;
  }
  private split(topic: string, under: string, levels: number): string[] | undefined {
    const head = `${this.prefix}/${under}`;
    if (!topic.startsWith(head)) return undefined;
    const parts = topic.slice(head.length).split('/');
    return parts.length === levels && parts.every((p) => p !== '') ? parts : undefined;
  }
  /** The hub's relay peer, retained (hub → devices). */
  relay(): string {
    return `${this.prefix}/network/relay`;
  }
  /** Join: a device with only a join token publishes here and reads its answer from joinResponse. */
  joinRequest(clientId: string): string {
    return `${this.prefix}/join/${clientId}/req`;
  }
  joinResponse(clientId: string): string {
    return `${this.prefix}/join/${clientId}/res`;
  }
  allJoinRequests(): string {
    return `${this.prefix}/join/+/req`;
  }

  /** Splits a node topic into its node name and channel; undefined for any other topic. */
  parseNodeTopic(topic: string): { node: string; channel: NodeChannel } | undefined {
    const head = `${this.prefix}/nodes/`;
    if (!topic.startsWith(head)) return undefined;
    const rest = topic.slice(head.length);
    const slash = rest.indexOf('/');
    if (slash <= 0) return undefined;
    const node = rest.slice(0, slash);
    const channel = rest.slice(slash + 1) as NodeChannel;
    if (!['desired', 'status', 'presence', 'metrics', 'events', 'rpc/req', 'rpc/res'].includes(channel)) return undefined;
    return { node, channel };
  }

  parseJoinTopic(topic: string): { clientId: string; direction: 'req' | 'res' } | undefined {
    const head = `${this.prefix}/join/`;
    if (!topic.startsWith(head)) return undefined;
    const parts = topic.slice(head.length).split('/');
    if (parts.length !== 2 || !parts[0] || (parts[1] !== 'req' && parts[1] !== 'res')) return undefined;
    return { clientId: parts[0], direction: parts[1] };
  }
}

/** MQTT identities. A device's client id and user name are both derived from its node name. */
export const JOIN_USERNAME = 'join';
export const HUB_USERNAME = 'hub';
export function deviceUsername(node: string): string {
  return `node:${node}`;
}
export function nodeFromUsername(username: string): string | undefined {
  return username.startsWith('node:') && username.length > 5 ? username.slice(5) : undefined;
}
export function deviceClientId(node: string): string {
  return `node:${node}`;
}
export function joinClientId(nonce: string): string {
  return `join-${nonce}`;
}
