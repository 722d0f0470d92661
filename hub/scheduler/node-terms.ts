import type { NodeSelectorTerm } from '../../shared/resources/scheduling.js';
import { PodSpecError } from './errors.js';

/**
 * Node selector terms of node affinity, after Kubernetes' nodeaffinity and
 * component-helpers/scheduling/corev1/nodeaffinity: the expressions of a term are ANDed, the
 * terms of a list ORed, and a term with no expression at all matches no node.
 */

type Operator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' | 'Gt' | 'Lt';

interface NodeRequirement {
  readonly key: string;
  readonly operator: Operator;
  readonly values: readonly string[];
  /** The integer that Gt and Lt compare against. */
  readonly bound: number;
}

export interface NodeTerm {
  readonly expressions: readonly NodeRequirement[];
  /** matchFields: only metadata.name, with In or NotIn. */
  readonly names: readonly NodeRequirement[];
}

const INTEGER = /^[+-]?\d+$/;

function compileRequirement(r: { key: string; operator: Operator; values?: string[] | undefined }, field: string, isField: boolean): NodeRequirement {
  const values = r.values ?? [];
  switch (r.operator) {
    case 'In':
    case 'NotIn':
      if (values.length === 0) throw new PodSpecError(`${field}.values`, `must be specified when operator is ${r.operator}`);
      break;
    case 'Exists':
    case 'DoesNotExist':
      if (isField) throw new PodSpecError(`${field}.operator`, `${r.operator} is not supported for fields; use In or NotIn`);
      if (values.length > 0) throw new PodSpecError(`${field}.values`, `may not be specified when operator is ${r.operator}`);
      break;
    case 'Gt':
    case 'Lt':
      if (isField) throw new PodSpecError(`${field}.operator`, `${r.operator} is not supported for fields; use In or NotIn`);
      if (values.length !== 1 || !INTEGER.test(values[0]!)) throw new PodSpecError(`${field}.values`, `must be one integer when operator is ${r.operator}`);
      break;
  }
  return { key: r.key, operator: r.operator, values, bound: r.operator === 'Gt' || r.operator === 'Lt' ? Number(values[0]) : 0 };
}

/** @throws PodSpecError naming the offending field under `field`. */
export function compileNodeTerm(term: NodeSelectorTerm, field: string): NodeTerm {
  return {
    expressions: (term.matchExpressions ?? []).map((r, i) => compileRequirement(r, `${field}.matchExpressions[${i}]`, false)),
    names: (term.matchFields ?? []).map((r, i) => compileRequirement(r, `${field}.matchFields[${i}]`, true)),
  };
}

function requirementHolds(r: NodeRequirement, present: boolean, value: string | undefined): boolean {
  switch (r.operator) {
    case 'In':
      return present && r.values.includes(value!);
    case 'NotIn':
      return !present || !r.values.includes(value!);
    case 'Exists':
      return present;
    case 'DoesNotExist':
      return !present;
    case 'Gt':
    case 'Lt': {
      // A label that is not an integer matches neither, as Kubernetes' strconv.ParseInt failure.
      if (!present || !INTEGER.test(value!)) return false;
      const n = Number(value);
      return r.operator === 'Gt' ? n > r.bound : n < r.bound;
    }
  }
}

export function nodeTermMatches(term: NodeTerm, nodeName: string, labels: Readonly<Record<string, string>>): boolean {
  if (term.expressions.length === 0 && term.names.length === 0) return false;
  for (const r of term.expressions) {
    if (!requirementHolds(r, Object.hasOwn(labels, r.key), labels[r.key])) return false;
  }
  for (const r of term.names) {
    if (!requirementHolds(r, true, nodeName)) return false;
  }
  return true;
}

/** Terms ORed: some term matches. */
export function anyNodeTermMatches(terms: readonly NodeTerm[], nodeName: string, labels: Readonly<Record<string, string>>): boolean {
  for (const t of terms) if (nodeTermMatches(t, nodeName, labels)) return true;
  return false;
}
