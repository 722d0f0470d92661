import { validateLabels } from '../../shared/labels/validation.js';
import { HOSTNAME_LABEL } from '../../shared/resources/scheduling.js';

/**
 * Which labels a device may give itself at join. The labels a node carries decide which pods,
 * and so which Secrets, it receives; a device holding only a join token must not pick them
 * freely:
 *
 * * Keys under RESERVED_LABEL_PREFIX (or a subdomain of it) are set by operators only, with
 *   `flotilla label`, never at join, whatever the token (Kubernetes' NodeRestriction admission
 *   reserves `node-restriction.kubernetes.io/` for the same purpose).
 * * A join token may carry a label rule: `labels`, which every node made with the token gets and
 *   which the device may repeat only with the same values, and `prefixes`, key prefixes under
 *   which the device may claim labels with any value (as balena's provisioning keys bind a device
 *   to one fleet). A label the rule does not allow refuses the join, naming the label.
 * * A token without a rule lets its devices claim any label outside the reserved prefix.
 */
export const RESERVED_LABEL_PREFIX = 'node-restriction.flotilla.io/';
const RESERVED_DOMAIN = RESERVED_LABEL_PREFIX.slice(0, -1);

export interface JoinLabelRule {
  labels: Record<string, string>;
  prefixes: string[];
}

export interface RuleProblem {
  path: string;
  message: string;
}

/** Whether only an operator may set this label key on a node. */
export function isReservedLabel(key: string): boolean {
  const slash = key.indexOf('/');
  if (slash < 0) return false;
  const domain = key.slice(0, slash);
  return domain === RESERVED_DOMAIN || domain.endsWith(`.${RESERVED_DOMAIN}`);
}

/** Checks a rule given to `token create`: valid labels, non-empty prefixes, nothing reserved. */
export function validateLabelRule(rule: JoinLabelRule): RuleProblem[] {
  const problems: RuleProblem[] = [];
  for (const p of validateLabels(rule.labels)) problems.push({ path: `labels.${p.key}`, message: p.message });
  for (const key of Object.keys(rule.labels)) {
    if (isReservedLabel(key)) problems.push({ path: `labels.${key}`, message: `keys under ${RESERVED_LABEL_PREFIX} are set by operators only (flotilla label node NAME ${key}=VALUE), never through a join token` });
  }
  rule.prefixes.forEach((prefix, i) => {
    if (prefix.length === 0) problems.push({ path: `labelPrefixes[${i}]`, message: 'must be non-empty (a token without a rule already allows any label outside the reserved prefix)' });
    else if (!/^[A-Za-z0-9][-A-Za-z0-9_./]*$/.test(prefix)) problems.push({ path: `labelPrefixes[${i}]`, message: `'${prefix}' cannot start a label key: use letters, digits, '-', '_', '.' and '/', starting with a letter or digit` });
    else if (RESERVED_LABEL_PREFIX.startsWith(prefix) || isReservedLabel(`${prefix}x`)) problems.push({ path: `labelPrefixes[${i}]`, message: `'${prefix}' would cover ${RESERVED_LABEL_PREFIX}, which only operators may set` });
  });
  return problems;
}

/** Whether a device joining with a token of this rule may carry `key=value`; a reserved key never. */
export function ruleAllows(rule: JoinLabelRule | undefined, key: string, value: string): boolean {
  if (isReservedLabel(key)) return false;
  if (!rule) return true;
  if (key in rule.labels) return rule.labels[key] === value;
  return rule.prefixes.some((prefix) => key.startsWith(prefix));
}

/** The rule in words, for a refusal: what the token allows. */
export function describeRule(rule: JoinLabelRule | undefined): string {
  if (!rule) return `any label outside ${RESERVED_LABEL_PREFIX}`;
  const parts = [...Object.entries(rule.labels).map(([k, v]) => `${k}=${v}`), ...rule.prefixes.map((p) => `keys starting with '${p}'`)];
  return parts.length > 0 ? parts.join(', ') : 'no labels of the device\'s own';
}

/** Why a device may not claim these labels with this token; undefined when it may. */
export function joinLabelsRefusal(requested: Record<string, string>, rule: JoinLabelRule | undefined, tokenId: string): string | undefined {
  for (const [key, value] of Object.entries(requested)) {
    if (isReservedLabel(key)) return `label ${key}: the prefix ${RESERVED_LABEL_PREFIX} is reserved for operators (flotilla label node NAME ${key}=${value}); a device cannot claim it at join`;
    if (!ruleAllows(rule, key, value)) return `label ${key}=${value} is not allowed by join token ${tokenId}, which allows ${describeRule(rule)}`;
  }
  return undefined;
}

/**
 * The first label of a node that a token of this rule could not have given it, other than the
 * hostname label the hub sets itself: such a node was trusted by an operator beyond what the
 * token grants, and the token may not take it over.
 */
export function firstLabelBeyondRule(labels: Record<string, string>, rule: JoinLabelRule | undefined): string | undefined {
  return Object.entries(labels).find(([key, value]) => key !== HOSTNAME_LABEL && !ruleAllows(rule, key, value))?.[0];
}
