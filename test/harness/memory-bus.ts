import type { MessageBus } from '../../hub/broker/bus.js';

/**
 * A MessageBus that keeps what the hub publishes, for unit tests of the dispatcher and its
 * sections: the last payload per topic (as a broker retains it), and every publish in order.
 */
export class RetainingBus implements MessageBus {
  readonly retained = new Map<string, Buffer>();
  readonly history: { topic: string; payload: Buffer }[] = [];

  /** Every topic published to, in order. */
  get published(): string[] {
    return this.history.map((m) => m.topic);
  }

  async publish(topic: string, payload: Buffer): Promise<void> {
    this.retained.set(topic, payload);
    this.history.push({ topic, payload });
  }
  async subscribe(): Promise<void> {}
  disconnectNode(): void {}
  connectedClients(): number {
    return 0;
  }
  async close(): Promise<void> {}
}
