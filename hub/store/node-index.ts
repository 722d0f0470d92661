/**
 * Pods by `spec.nodeName`, the one field of a pod that Kubernetes' API server indexes for field
 * selectors (every kubelet lists "the pods bound to me"): here the dispatcher, the node
 * lifecycle controller and drains ask it for one node of thousands. Kept in memory beside the
 * objects table, built on first use from one pass over the table, then kept current by the
 * store's own writes; writes rolled back are undone here too.
 */
export class PodNodeIndex {
  private byNode: Map<string, Set<number>> | undefined;
  private readonly nodeOf = new Map<number, string>();
  /** How to undo each change made by the open transaction, newest last. */
  private undo: (() => void)[] = [];

  constructor(private readonly load: () => Iterable<{ id: number; nodeName: string | null }>) {}

  /** Row ids of the pods bound to `node`. */
  ids(node: string): number[] {
    return [...(this.built().get(node) ?? [])];
  }

  /** The node the pod row `id` is bound to, if any. */
  nodeOfPod(id: number): string | undefined {
    this.built();
    return this.nodeOf.get(id);
  }

  /** A pod row now bound to `node` (undefined: to none). Nothing to do before the index is first used. */
  set(id: number, node: string | undefined): void {
    if (!this.byNode) return;
    const before = this.nodeOf.get(id);
    if (before === node) return;
    this.move(id, node);
    this.undo.push(() => this.move(id, before));
  }

  /** Where the open transaction's changes start: give it back to rollback() to undo those after it. */
  mark(): number {
    return this.undo.length;
  }

  rollback(mark: number): void {
    while (this.undo.length > mark) this.undo.pop()!();
  }

  /** The outermost transaction committed: its changes stay. */
  commit(): void {
    this.undo = [];
  }

  private built(): Map<string, Set<number>> {
    if (this.byNode) return this.byNode;
    this.byNode = new Map();
    for (const row of this.load()) if (row.nodeName) this.move(row.id, row.nodeName);
    // Built inside a transaction, it holds that transaction's writes: rolled back past this
    // point, it is dropped, and built again from the table when next asked.
    this.undo.push(() => {
      this.byNode = undefined;
      this.nodeOf.clear();
    });
    return this.byNode;
  }

  private move(id: number, node: string | undefined): void {
    if (!this.byNode) return;
    const before = this.nodeOf.get(id);
    if (before !== undefined) {
      const set = this.byNode.get(before);
      set?.delete(id);
      if (set?.size === 0) this.byNode.delete(before);
    }
    if (node === undefined) {
      this.nodeOf.delete(id);
      return;
    }
    this.nodeOf.set(id, node);
    let set = this.byNode.get(node);
    if (!set) this.byNode.set(node, (set = new Set()));
    set.add(id);
  }
}

/** A pod's node, from the object about to be written. */
export function nodeNameOf(obj: { spec?: unknown }): string | undefined {
  const node = (obj.spec as { nodeName?: unknown } | undefined)?.nodeName;
  return typeof node === 'string' && node !== '' ? node : undefined;
}
