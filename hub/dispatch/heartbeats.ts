/**
 * When the hub last heard anything from each device: any MQTT packet of its connection (a
 * status report, an event batch, a keepalive PINGREQ). This is the liveness the node lifecycle
 * controller's grace period is measured against, as Kubernetes measures it against the node's
 * Lease renewals rather than the (rarer) full status reports.
 *
 * Kept in memory only: a write per ping would cost the store thousands of writes a second at
 * fleet size, and after a hub restart every node gets a fresh grace period anyway.
 */
export class NodeHeartbeats {
  private readonly lastHeard = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  heard(node: string): void {
    this.lastHeard.set(node, this.now());
  }

  /** Milliseconds since the epoch of the last packet from `node`, if any since the hub started. */
  lastHeardAt(node: string): number | undefined {
    return this.lastHeard.get(node);
  }

  forget(node: string): void {
    this.lastHeard.delete(node);
  }
}
