import type { Database } from 'better-sqlite3';
import type { NodeSpec, NodeStatus } from '../../shared/resources/node.js';
import { Controller, type ControllerContext } from '../controllers/controller.js';
import type { ReconcileResult } from '../controllers/queue.js';
import type { StoredObject, WatchEvent } from '../store/types.js';
import type { WatchOptions } from '../store/watch.js';
import { CIDR_NOT_AVAILABLE, POD_CIDR_NOT_USABLE, withNetworkCondition, withoutIpamCondition } from './condition.js';
import { PodCidrAllocator, type AllocationRow, type IpamCounts, type PodNetworkSettings } from './ipam.js';
import { PodCidrTable } from './tables.js';

/** At most one CIDRNotAvailable event per node this often. */
const EVENT_INTERVAL_MS = 60_000;
/** How often a node waiting for a block looks again, at the latest. */
const WAIT_RETRY_MS = 60_000;

/**
 * Gives each Node a block of the cluster CIDR (Kubernetes' node IPAM controller): a node
 * without spec.podCIDR gets the allocator's pick, written as spec.podCIDR and spec.podCIDRs in
 * the commit that records it in the table. A node created with a podCIDR keeps it when it is a
 * free block of the cluster CIDR. A deleted node's block is released (and quarantined, see
 * ipam.ts). When none is free the node gets a CIDRNotAvailable event and NetworkUnavailable,
 * and a block as soon as one is.
 */
export class IpamController extends Controller {
  private readonly table: PodCidrTable;
  readonly allocator: PodCidrAllocator;
  private readonly now: () => number;
  /** Nodes waiting for a block: a release wakes them. */
  private readonly waiting = new Set<string>();
  /** The podCIDR each node was refused (an operator's): the same again is not looked at on every status report. */
  private readonly rejected = new Map<string, string>();
  private readonly eventAt = new Map<string, number>();

  constructor(ctx: ControllerContext, db: Database, settings: PodNetworkSettings, opts: { now?: () => number } = {}) {
    super('ipam', ctx);
    this.table = new PodCidrTable(db);
    this.now = opts.now ?? Date.now;
    this.allocator = new PodCidrAllocator(settings, this.table.rows());
  }

  /** Reconciles the table with the Nodes before the first pass: a block whose node is gone is released. */
  override start(): void {
    const now = this.now();
    for (const row of this.allocator.heldOutside()) {
      this.log.warn({ node: row.node, podCIDR: row.cidr, clusterCIDR: this.allocator.clusterCIDR, maskSize: this.allocator.settings.maskSize }, 'node keeps a pod CIDR outside the cluster CIDR (--cluster-cidr or --node-cidr-mask-size changed)');
    }
    const gone = this.allocator.allRows().filter((r) => r.releasedAt === undefined && !this.store.has('Node', '', r.node));
    for (const row of gone) this.persist({ ...row, releasedAt: now });
    if (gone.length > 0) this.log.info({ released: gone.map((r) => `${r.node}=${r.cidr}`) }, 'pod CIDRs of nodes deleted while the hub was down released');
    super.start();
  }

  counts(): IpamCounts {
    return this.allocator.counts(this.now());
  }

  protected triggers(): [WatchOptions, (e: WatchEvent) => string | undefined][] {
    return [
      [
        { kind: 'Node' },
        (e) => {
          const name = e.object.metadata.name;
          if (e.type === 'DELETED') return name;
          // Status reports change nodes all the time; only a podCIDR that differs from the table's is work.
          const spec = e.object.spec as NodeSpec | undefined;
          const held = this.allocator.blockOf(name);
          if (held === undefined) return (spec?.podCIDR ? this.rejected.get(name) !== spec.podCIDR : !this.waiting.has(name)) ? name : undefined;
          return spec?.podCIDR !== held || spec.podCIDRs?.length !== 1 || spec.podCIDRs[0] !== held ? name : undefined;
        },
      ],
    ];
  }

  protected initialKeys(): Iterable<string> {
    return this.store.list('Node').items.map((n) => n.metadata.name);
  }

  reconcile(name: string): ReconcileResult | void {
    const node = this.store.get('Node', '', name);
    const now = this.now();
    if (!node) {
      this.waiting.delete(name);
      this.rejected.delete(name);
      this.eventAt.delete(name);
      const release = this.allocator.releaseRow(name, now);
      if (release) {
        this.persist(release);
        this.log.info({ node: name, podCIDR: release.cidr }, 'pod CIDR released (quarantined for an hour)');
        for (const w of [...this.waiting, ...this.rejected.keys()]) this.queue.add(w);
      }
      return;
    }
    const spec = (node.spec as NodeSpec | undefined) ?? {};
    const held = this.allocator.blockOf(name);
    if (held) {
      // The table is the record: a podCIDR cleared or changed by hand is put back (Kubernetes makes it immutable once set).
      if (spec.podCIDR && spec.podCIDR !== held) this.events.warning(node, 'PodCIDRImmutable', `spec.podCIDR ${spec.podCIDR} ignored: node ${name} holds ${held}, which it keeps until it is deleted`);
      this.assign(node, held);
      return;
    }
    if (spec.podCIDR) {
      const claimed = this.allocator.claim(name, spec.podCIDR, now);
      if ('row' in claimed) {
        this.store.transaction(() => {
          this.table.write(claimed.row);
          this.assignInTransaction(name, claimed.row.cidr);
        });
        this.allocator.record(claimed.row);
        this.waiting.delete(name);
        this.rejected.delete(name);
        return;
      }
      this.rejected.set(name, spec.podCIDR);
      this.unavailable(node, POD_CIDR_NOT_USABLE, 'CIDRAssignmentFailed', claimed.message);
      // A quarantined block becomes usable within the hour.
      return { requeueAfterMs: WAIT_RETRY_MS };
    }
    const picked = this.allocator.pick(now);
    if ('cidr' in picked) {
      const row: AllocationRow = { cidr: picked.cidr, node: name, allocatedAt: now };
      this.store.transaction(() => {
        this.table.write(row);
        this.assignInTransaction(name, row.cidr);
      });
      this.allocator.record(row);
      this.waiting.delete(name);
      this.rejected.delete(name);
      this.log.info({ node: name, podCIDR: row.cidr }, 'pod CIDR allocated');
      return;
    }
    this.waiting.add(name);
    this.unavailable(node, CIDR_NOT_AVAILABLE, CIDR_NOT_AVAILABLE, picked.message);
    const retryAt = 'retryAt' in picked && picked.retryAt !== undefined ? picked.retryAt : now + WAIT_RETRY_MS;
    return { requeueAfterMs: Math.max(1_000, Math.min(WAIT_RETRY_MS, retryAt - now)) };
  }

  private persist(row: AllocationRow): void {
    this.table.write(row);
    this.allocator.record(row);
  }

  private assign(node: StoredObject, cidr: string): void {
    this.store.transaction(() => this.assignInTransaction(node.metadata.name, cidr));
  }

  /** spec.podCIDR and spec.podCIDRs, and no IPAM condition left over. */
  private assignInTransaction(name: string, cidr: string): void {
    this.store.mutate('Node', '', name, (cur) => {
      const spec = (cur.spec as NodeSpec | undefined) ?? {};
      const status = cur.status as NodeStatus | undefined;
      const conditions = withoutIpamCondition(status?.conditions);
      const specSame = spec.podCIDR === cidr && spec.podCIDRs?.length === 1 && spec.podCIDRs[0] === cidr;
      if (specSame && conditions?.length === status?.conditions?.length) return undefined;
      return { ...cur, spec: { ...spec, podCIDR: cidr, podCIDRs: [cidr] }, ...(status ? { status: { ...status, ...(conditions ? { conditions } : {}) } } : {}) };
    });
  }

  private unavailable(node: StoredObject, conditionReason: string, eventReason: string, message: string): void {
    const now = this.now();
    const name = node.metadata.name;
    const last = this.eventAt.get(name);
    if (last === undefined || now - last >= EVENT_INTERVAL_MS) {
      this.eventAt.set(name, now);
      this.events.warning(node, eventReason, message);
    }
    this.store.mutate('Node', '', name, (cur) => {
      const status = (cur.status as NodeStatus | undefined) ?? {};
      const conditions = withNetworkCondition(status.conditions, { status: 'True', reason: conditionReason, message }, new Date(now).toISOString());
      if (JSON.stringify(conditions) === JSON.stringify(status.conditions)) return undefined;
      return { ...cur, status: { ...status, conditions } };
    });
  }
}
