import { containsCidr, formatCidr, parseCidr, subnet, subnetCount, subnetIndex, type Cidr } from '../../shared/net/cidr.js';

/**
 * The hub's pod-CIDR allocator (IPAM), in memory and without I/O: it decides, the table
 * (ipam-table.ts) keeps what it decided. Each node gets one block of `/maskSize` out of the
 * cluster CIDR. Blocks never handed out go first, lowest first; a block released by a deleted
 * node is quarantined for QUARANTINE_MS (its device may still be up and using it) and reused
 * only when no never-used block is left, the oldest released first.
 */

/** How long a released block stays out of use: a deleted node's device may still route its pods' traffic. */
export const QUARANTINE_MS = 60 * 60 * 1000;

/** The longest node block: a /31 or /32 leaves no room for a bridge and a pod. */
export const MAX_NODE_MASK_SIZE = 30;

/** One row of the allocation table: the latest holder of a block. */
export interface AllocationRow {
  cidr: string;
  node: string;
  /** Epoch ms. */
  allocatedAt: number;
  /** Epoch ms; absent while the node holds the block. */
  releasedAt?: number;
}

export interface PodNetworkSettings {
  clusterCIDR: Cidr;
  maskSize: number;
}

/**
 * Checks the hub's --cluster-cidr and --node-cidr-mask-size together; the error names the flag
 * at fault.
 */
export function parsePodNetworkSettings(clusterCIDR: string, maskSize: number): PodNetworkSettings | { flag: string; error: string } {
  const parsed = parseCidr(clusterCIDR);
  if ('error' in parsed) return { flag: '--cluster-cidr', error: `--cluster-cidr: ${parsed.error} (an IPv4 network such as 10.42.0.0/16; the overlay is IPv4 only)` };
  if (!Number.isInteger(maskSize) || maskSize < 1 || maskSize > MAX_NODE_MASK_SIZE) {
    return { flag: '--node-cidr-mask-size', error: `--node-cidr-mask-size: ${maskSize} is not a prefix length from 1 to ${MAX_NODE_MASK_SIZE} (a node's block needs room for a bridge and its pods)` };
  }
  if (maskSize <= parsed.bits) {
    return { flag: '--node-cidr-mask-size', error: `--node-cidr-mask-size: /${maskSize} is not longer than the cluster CIDR ${clusterCIDR} (--cluster-cidr): each node's block must be a part of it` };
  }
  return { clusterCIDR: parsed, maskSize };
}

export type AllocationFailure = { reason: 'exhausted'; message: string; retryAt?: number } | { reason: 'unusable'; message: string };

export interface IpamCounts {
  /** Blocks of the cluster CIDR held by nodes. */
  allocated: number;
  /** Blocks of the cluster CIDR released less than QUARANTINE_MS ago. */
  quarantined: number;
  /** The rest of the cluster CIDR's blocks. */
  free: number;
}

export class PodCidrAllocator {
  private readonly total: number;
  private readonly rows = new Map<string, AllocationRow>();
  private readonly byNode = new Map<string, string>();
  /** Released blocks inside the cluster CIDR, the oldest release first. */
  private released: AllocationRow[] = [];
  /** Indexes of the cluster CIDR's blocks that have a row (held or released). */
  private readonly used = new Set<number>();
  /** No block below this index is never-used: never-used blocks only ever become used. */
  private freshCursor = 0;

  constructor(
    readonly settings: PodNetworkSettings,
    rows: Iterable<AllocationRow> = [],
  ) {
    this.total = subnetCount(settings.clusterCIDR, settings.maskSize);
    for (const row of rows) this.record(row);
  }

  get clusterCIDR(): string {
    return formatCidr(this.settings.clusterCIDR);
  }

  /** The block a node holds. */
  blockOf(node: string): string | undefined {
    return this.byNode.get(node);
  }

  /** Every row the allocator knows (held blocks and released ones). */
  allRows(): AllocationRow[] {
    return [...this.rows.values()];
  }

  /** Held blocks that lie outside the cluster CIDR or are not one of its /maskSize blocks (the flags changed between starts). */
  heldOutside(): AllocationRow[] {
    return [...this.byNode.values()].map((c) => this.rows.get(c)!).filter((r) => this.indexOf(r.cidr) === undefined);
  }

  /** The block a new node would get now, or why none. */
  pick(now: number): { cidr: string } | AllocationFailure {
    while (this.freshCursor < this.total && this.used.has(this.freshCursor)) this.freshCursor++;
    if (this.freshCursor < this.total) return { cidr: formatCidr(subnet(this.settings.clusterCIDR, this.settings.maskSize, this.freshCursor)) };
    const oldest = this.released[0];
    if (oldest && now - oldest.releasedAt! >= QUARANTINE_MS) return { cidr: oldest.cidr };
    const counts = this.counts(now);
    return {
      reason: 'exhausted',
      message: `no free pod CIDR: the cluster CIDR ${this.clusterCIDR} (--cluster-cidr) holds ${this.total} blocks of /${this.settings.maskSize} (--node-cidr-mask-size); ${counts.allocated} are allocated and ${counts.quarantined} were released less than an hour ago (quarantined)`,
      ...(oldest ? { retryAt: oldest.releasedAt! + QUARANTINE_MS } : {}),
    };
  }

  /** Whether `node` may take the block an operator set on it; the row to write when it may. */
  claim(node: string, cidrText: string, now: number): { row: AllocationRow } | AllocationFailure {
    const parsed = parseCidr(cidrText);
    const unusable = (why: string): AllocationFailure => ({ reason: 'unusable', message: `spec.podCIDR ${cidrText} ${why}` });
    if ('error' in parsed) return unusable(`is not an IPv4 network: ${parsed.error}`);
    const normal = formatCidr(parsed);
    if (!containsCidr(this.settings.clusterCIDR, parsed)) return unusable(`does not lie in the cluster CIDR ${this.clusterCIDR} (--cluster-cidr)`);
    if (parsed.bits !== this.settings.maskSize) return unusable(`is not a /${this.settings.maskSize} block (--node-cidr-mask-size)`);
    const row = this.rows.get(normal);
    if (row && row.releasedAt === undefined && row.node !== node) return unusable(`is allocated to node ${row.node}`);
    if (row && row.releasedAt !== undefined && now - row.releasedAt < QUARANTINE_MS && row.node !== node) {
      return unusable(`was released by node ${row.node} at ${new Date(row.releasedAt).toISOString()} and is quarantined for an hour`);
    }
    return { row: { cidr: normal, node, allocatedAt: now } };
  }

  /** The row that releases the node's block, when it holds one. */
  releaseRow(node: string, now: number): AllocationRow | undefined {
    const cidr = this.byNode.get(node);
    return cidr ? { ...this.rows.get(cidr)!, releasedAt: now } : undefined;
  }

  /** Takes a row the table has written into memory. */
  record(row: AllocationRow): void {
    const prev = this.rows.get(row.cidr);
    if (prev) {
      if (this.byNode.get(prev.node) === prev.cidr) this.byNode.delete(prev.node);
      if (prev.releasedAt !== undefined) this.released = this.released.filter((r) => r.cidr !== prev.cidr);
    }
    this.rows.set(row.cidr, row);
    const index = this.indexOf(row.cidr);
    if (index !== undefined) this.used.add(index);
    if (row.releasedAt === undefined) {
      const held = this.byNode.get(row.node);
      if (held !== undefined && held !== row.cidr) throw new Error(`node ${row.node} already holds ${held}`);
      this.byNode.set(row.node, row.cidr);
    } else if (index !== undefined) {
      // Releases come in time order; rows loaded at start may not.
      const at = this.released.findIndex((r) => r.releasedAt! > row.releasedAt!);
      if (at < 0) this.released.push(row);
      else this.released.splice(at, 0, row);
    }
  }

  counts(now: number): IpamCounts {
    let allocated = 0;
    for (const cidr of this.byNode.values()) if (this.indexOf(cidr) !== undefined) allocated++;
    let quarantined = 0;
    for (const r of this.released) if (now - r.releasedAt! < QUARANTINE_MS) quarantined++;
    return { allocated, quarantined, free: this.total - allocated - quarantined };
  }

  /** The position of a block among the cluster CIDR's /maskSize blocks; undefined when it is not one. */
  private indexOf(cidrText: string): number | undefined {
    const parsed = parseCidr(cidrText);
    if ('error' in parsed || parsed.bits !== this.settings.maskSize) return undefined;
    return subnetIndex(this.settings.clusterCIDR, parsed);
  }
}
