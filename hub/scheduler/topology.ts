import { termSelects, type PodTerm } from './requirements.js';

/**
 * Pod (anti-)affinity without looking at every pod: counts per topology domain (the value of a
 * node label such as `site`, or the node itself for `kubernetes.io/hostname`), kept up to date
 * as pods come and go, and found from a pod's labels through an index.
 */

/** A number per topology domain of one term's key: pods the term selects, or a sum of weights. */
export class DomainCounts {
  readonly byDomain = new Map<string, number>();
  /** Pods counted in some domain (for the first pod of a group that is affine to itself). */
  placed = 0;
  /** How many (pod, term) pairs hold this entry open, for entries that carried terms own. */
  holders = 0;

  constructor(readonly term: PodTerm) {}

  add(domain: string, delta: number, placed: number): void {
    const next = (this.byDomain.get(domain) ?? 0) + delta;
    if (next === 0) this.byDomain.delete(domain);
    else this.byDomain.set(domain, next);
    this.placed += placed;
  }

  in(domain: string | undefined): number {
    return domain === undefined ? 0 : (this.byDomain.get(domain) ?? 0);
  }
}

const PAIR = '\u0000';

/**
 * DomainCounts by term signature, and by the labels a pod must have to be selected: each entry
 * is filed under one `key=value` its selector requires (or among the unkeyed few that require
 * none), so a pod looks only at entries that could select it.
 */
export class TermIndex {
  private readonly bySignature = new Map<string, DomainCounts>();
  private readonly byPair = new Map<string, DomainCounts[]>();
  private readonly unkeyed: DomainCounts[] = [];

  get size(): number {
    return this.bySignature.size;
  }

  get(signature: string): DomainCounts | undefined {
    return this.bySignature.get(signature);
  }

  /** The entry for a term, created (empty) when new; `created` tells which. */
  open(term: PodTerm): { entry: DomainCounts; created: boolean } {
    const found = this.bySignature.get(term.signature);
    if (found) return { entry: found, created: false };
    const entry = new DomainCounts(term);
    this.bySignature.set(term.signature, entry);
    const pair = filingPair(term);
    if (pair === undefined) this.unkeyed.push(entry);
    else {
      const list = this.byPair.get(pair);
      if (list) list.push(entry);
      else this.byPair.set(pair, [entry]);
    }
    return { entry, created: true };
  }

  close(entry: DomainCounts): void {
    if (this.bySignature.get(entry.term.signature) !== entry) return;
    this.bySignature.delete(entry.term.signature);
    const pair = filingPair(entry.term);
    const list = pair === undefined ? this.unkeyed : this.byPair.get(pair);
    if (!list) return;
    const i = list.indexOf(entry);
    if (i >= 0) list.splice(i, 1);
    if (pair !== undefined && list.length === 0) this.byPair.delete(pair);
  }

  clear(): void {
    this.bySignature.clear();
    this.byPair.clear();
    this.unkeyed.length = 0;
  }

  /** Calls `fn` for every entry whose term selects a pod with these namespace and labels. */
  forEachSelecting(namespace: string, labels: Readonly<Record<string, string>>, fn: (entry: DomainCounts) => void): void {
    for (const entry of this.unkeyed) if (termSelects(entry.term, namespace, labels)) fn(entry);
    if (this.byPair.size === 0) return;
    for (const key in labels) {
      const list = this.byPair.get(key + PAIR + labels[key]);
      if (!list) continue;
      for (const entry of list) if (termSelects(entry.term, namespace, labels)) fn(entry);
    }
  }
}

/** One label every pod the term selects must carry, if its selector pins one. */
function filingPair(term: PodTerm): string | undefined {
  if (term.selector.matchesNothing) return undefined;
  for (const r of term.selector.requirements) {
    if (r.operator === 'In' && r.values.length === 1) return r.key + PAIR + r.values[0];
  }
  return undefined;
}
