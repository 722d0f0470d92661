import { statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Database } from 'better-sqlite3';
import type { MessageBus } from '../broker/bus.js';
import type { DiskHealth } from '../store/disk.js';
import { Histogram, type Family } from './prometheus.js';

type Reconcile = (key: string) => unknown;

/**
 * The hub's own metrics: MQTT messages in and out, how long each controller's reconciles and
 * each dispatch of a desired set take, the store's size, connected clients. The parts are
 * measured from outside (their methods wrapped at assembly), so none of them needs to know.
 */
export class HubSelfMetrics {
  /** Messages delivered to the hub's subscriptions (from devices). */
  mqttReceived = 0;
  /** Messages the hub published (desired sets, rpc requests, peer tables). */
  mqttSent = 0;
  readonly reconcile = new Histogram('flotilla_reconcile_duration_seconds', 'Time a controller took to reconcile one key.', 'controller');
  /** Counts of device messages the hub's parts refused by their schema (each part counts its own). */
  private readonly invalidSources: (() => number)[] = [];
  /** Families other parts contribute (the pod network's). */
  private readonly extraFamilies: (() => Family[])[] = [];
  /** Watches the API closed because their client did not keep up. */
  private slowWatches: () => number = () => 0;
  readonly dispatch = new Histogram('flotilla_dispatch_latency_seconds', 'Time from taking a node off the dispatch queue to its desired set being published.', 'stage');

  constructor(
    private readonly db: Database,
    private readonly bus: MessageBus,
    private readonly disk?: { health(): DiskHealth },
  ) {}

  /** Counts every message through the bus, both ways (call before anything subscribes). */
  instrumentBus(): void {
    const bus = this.bus;
    const publish = bus.publish.bind(bus);
    const subscribe = bus.subscribe.bind(bus);
    bus.publish = (topic, payload, opts) => {
      this.mqttSent++;
      return publish(topic, payload, opts);
    };
    bus.subscribe = (pattern, handler) =>
      subscribe(pattern, (topic, payload) => {
        this.mqttReceived++;
        handler(topic, payload);
      });
  }

  /** Adds a part's count of device messages refused by their schema to flotilla_mqtt_messages_dropped_total{reason="invalid"}. */
  countInvalidMessages(count: () => number): void {
    this.invalidSources.push(count);
  }

  /** Adds a part's own families to every scrape. */
  addFamilies(families: () => Family[]): void {
    this.extraFamilies.push(families);
  }

  /** The API's count of watches closed for falling behind. */
  countSlowWatches(count: () => number): void {
    this.slowWatches = count;
  }

  /** Times a controller's reconcile (its work queue calls it through the instance, so the wrapper sees every call). */
  instrumentController(name: string, controller: { reconcile: Reconcile }): void {
    controller.reconcile = this.timed(controller.reconcile.bind(controller), (s) => this.reconcile.observe(name, s));
  }

  instrumentDispatcher(dispatcher: { sync: Reconcile }): void {
    dispatcher.sync = this.timed(dispatcher.sync.bind(dispatcher), (s) => this.dispatch.observe('publish', s)) as typeof dispatcher.sync;
  }

  private timed(fn: Reconcile, observe: (seconds: number) => void): Reconcile {
    return (key: string) => {
      const start = performance.now();
      const done = () => observe((performance.now() - start) / 1000);
      let result: unknown;
      try {
        result = fn(key);
      } catch (err) {
        done();
        throw err;
      }
      if (result instanceof Promise) return result.finally(done);
      done();
      return result;
    };
  }

  /** The database file and its write-ahead log, in bytes. */
  storeSizeBytes(): number {
    const pages = (this.db.pragma('page_count', { simple: true }) as number) * (this.db.pragma('page_size', { simple: true }) as number);
    let wal = 0;
    try {
      wal = statSync(`${this.db.name}-wal`).size;
    } catch {
      // No WAL file (an in-memory database, or just checkpointed).
    }
    return pages + wal;
  }

  families(): Family[] {
    return [
      { name: 'flotilla_connected_devices', help: 'MQTT clients connected to the embedded broker (devices, and devices joining).', type: 'gauge', samples: [{ value: this.bus.connectedClients() }] },
      { name: 'flotilla_mqtt_messages_received_total', help: 'MQTT messages delivered to the hub from devices.', type: 'counter', samples: [{ value: this.mqttReceived }] },
      {
        name: 'flotilla_mqtt_messages_dropped_total',
        help: 'MQTT messages from devices dropped, by reason: oversize (over the packet limit; the embedded broker closes the connection before reading the packet), invalid (refused by the message schema: a field over its bound, a malformed payload).',
        type: 'counter',
        samples: [
          { labels: { reason: 'oversize' }, value: this.bus.oversizeDropped ?? 0 },
          { labels: { reason: 'invalid' }, value: this.invalidSources.reduce((sum, count) => sum + count(), 0) },
        ],
      },
      { name: 'flotilla_api_watches_closed_total', help: 'API watches closed because their client fell too far behind (its unsent events over the limit); the client lists again.', type: 'counter', samples: [{ labels: { reason: 'slow' }, value: this.slowWatches() }] },
      { name: 'flotilla_mqtt_messages_sent_total', help: 'MQTT messages the hub published.', type: 'counter', samples: [{ value: this.mqttSent }] },
      this.reconcile.family(),
      this.dispatch.family(),
      { name: 'flotilla_store_size_bytes', help: 'Size of the hub database and its write-ahead log.', type: 'gauge', samples: [{ value: this.storeSizeBytes() }] },
      ...this.diskFamilies(),
      ...this.extraFamilies.flatMap((f) => f()),
    ];
  }

  private diskFamilies(): Family[] {
    if (!this.disk) return [];
    const disk = this.disk.health();
    return [
      { name: 'flotilla_store_disk_full', help: '1 while the disk of the hub\'s data directory is full (writes that need space fail; deletes work), else 0.', type: 'gauge', samples: [{ value: disk.full ? 1 : 0 }] },
      { name: 'flotilla_store_disk_free_bytes', help: 'Free space on the disk of the hub\'s data directory.', type: 'gauge', samples: [{ value: disk.freeBytes }] },
      { name: 'flotilla_store_disk_reserve_bytes', help: 'Space the hub holds in reserve for deletes on a full disk (0 once spent).', type: 'gauge', samples: [{ value: disk.reserveBytes }] },
    ];
  }
}
