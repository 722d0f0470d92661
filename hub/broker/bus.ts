/**
 * How the hub's parts reach MQTT, whichever broker carries it: the embedded aedes (here) or an
 * external broker that the hub joins as a client (docs/PROTOCOL.md, 'Basics').
 */
export interface MessageBus {
  publish(topic: string, payload: Buffer, opts: { qos: 0 | 1; retain: boolean }): Promise<void>;
  /** Subscribes with a wildcard pattern; the handler gets every matching message. */
  subscribe(pattern: string, handler: (topic: string, payload: Buffer) => void): Promise<void>;
  /** Cuts off a connected device at once (revocation, deletion). */
  disconnectNode(node: string): void;
  /** Whether a device is connected as `node` now; absent when the broker cannot tell (the hub then goes by the node's Ready condition). */
  nodeConnected?(node: string): boolean;
  connectedClients(): number;
  /**
   * The address a connected device's MQTT connection comes from (a NAT's public address), as
   * an IPv4 address without IPv6's `::ffff:` prefix; absent when the broker cannot tell (an
   * external broker does not say).
   */
  remoteAddress?(node: string): string | undefined;
  /** Calls `handler` with the node of every device that connects (a NAT's new address is followed at once). */
  onDeviceConnected?(handler: (node: string) => void): void;
  /** Messages from devices refused or dropped for their size (over the hub's packet limit). */
  readonly oversizeDropped?: number;
  close(): Promise<void>;
}
