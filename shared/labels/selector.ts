/**
 * Kubernetes label selectors: the string syntax (`kubectl -l`), the manifest form
 * (metav1.LabelSelector) and the map form (nodeSelector), all reduced to one representation.
 *
 * Parsing and matching follow k8s.io/apimachinery/pkg/labels/selector.go. Two simplifications,
 * neither of which changes what a selector matches:
 *  - `a=b` and `a==b` become `In` with the single value `b`, and `a!=b` becomes `NotIn` with the
 *    single value `b`; Kubernetes matches Equals exactly like a one-value In and NotEquals exactly
 *    like a one-value NotIn, so one operator set serves both the string and the manifest forms.
 *  - The numeric `>` and `<` operators, which Kubernetes accepts only in the string form and which
 *    metav1.LabelSelector cannot express, are rejected.
 */

import { validateLabelValue, validateQualifiedName } from './validation.js';

/** The operators of a Kubernetes LabelSelectorRequirement. */
export type Operator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface Requirement {
  key: string;
  operator: Operator;
  /** Non-empty for In and NotIn, empty for Exists and DoesNotExist. The empty string is a valid value. */
  values: string[];
}

/**
 * All requirements must hold (they are ANDed); no requirements matches everything.
 * `matchesNothing` marks Kubernetes' Nothing() selector, which a nil metav1.LabelSelector
 * converts to (see labelSelectorAsSelector); it has no string form.
 */
export type Selector = { requirements: Requirement[]; matchesNothing?: boolean };

/** The manifest form, metav1.LabelSelector. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/**
 * A malformed selector. `position` is the 1-based column of the offending token in the string
 * form (one past the end for a premature end of string); `field` names the offending field of a
 * manifest-form selector, e.g. `matchExpressions[1].values`.
 */
export class SelectorError extends Error {
  override readonly name = 'SelectorError';
  readonly position: number | undefined;
  readonly field: string | undefined;

  constructor(message: string, where: { position?: number; field?: string } = {}) {
    super(message);
    this.position = where.position;
    this.field = where.field;
  }
}

// Lexer: the same token classes as Kubernetes' Lexer. Anything that is neither whitespace nor one
// of = ! ( ) , > < belongs to an identifier, so `a||b` lexes as one identifier and is then
// rejected by key or value validation, as in Kubernetes.

type TokenKind = 'ident' | 'in' | 'notin' | '!' | '!=' | '=' | '==' | '(' | ')' | ',' | '>' | '<' | 'eos';

interface Token {
  kind: TokenKind;
  text: string;
  /** 0-based offset of the token's first character. */
  offset: number;
}

const WHITESPACE = new Set([' ', '\t', '\r', '\n']);
const SPECIAL = new Set(['=', '!', '(', ')', ',', '>', '<']);

function lex(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  for (;;) {
    while (i < text.length && WHITESPACE.has(text.charAt(i))) i++;
    if (i >= text.length) {
      tokens.push({ kind: 'eos', text: '', offset: text.length });
      return tokens;
    }
    const ch = text.charAt(i);
    if (SPECIAL.has(ch)) {
      // Longest match, as Kubernetes' scanSpecialSymbol: "!=" and "==" before "!" and "=".
      const two = text.slice(i, i + 2);
      const sym = two === '!=' || two === '==' ? two : ch;
      tokens.push({ kind: sym as TokenKind, text: sym, offset: i });
      i += sym.length;
      continue;
    }
    let j = i;
    while (j < text.length && !SPECIAL.has(text.charAt(j)) && !WHITESPACE.has(text.charAt(j))) j++;
    const word = text.slice(i, j);
    tokens.push({ kind: word === 'in' ? 'in' : word === 'notin' ? 'notin' : 'ident', text: word, offset: i });
    i = j;
  }
}

// Parser: Kubernetes' recursive descent, token for token, so the same strings are accepted (bar > and <).

class Parser {
  private readonly tokens: Token[];
  private index = 0;

  constructor(private readonly text: string) {
    this.tokens = lex(text);
  }

  /**
   * In value and key position Kubernetes reads the keywords `in` and `notin` as plain identifiers
   * (`in in (notin)` is a valid selector); only in operator position are they operators.
   */
  private peek(operatorPosition = false): Token {
    const tok = this.tokens[this.index] ?? this.tokens[this.tokens.length - 1]!;
    return !operatorPosition && (tok.kind === 'in' || tok.kind === 'notin') ? { ...tok, kind: 'ident' } : tok;
  }

  private next(operatorPosition = false): Token {
    const tok = this.peek(operatorPosition);
    if (this.index < this.tokens.length - 1) this.index++;
    return tok;
  }

  private fail(tok: Token, expected: string): never {
    const found = tok.kind === 'eos' ? 'end of string' : `'${tok.text}'`;
    throw new SelectorError(`invalid label selector ${JSON.stringify(this.text)}: found ${found} at column ${tok.offset + 1}, expected ${expected}`, {
      position: tok.offset + 1,
    });
  }

  private invalid(tok: Token, what: string, problems: string[]): never {
    throw new SelectorError(`invalid label selector ${JSON.stringify(this.text)}: ${what} '${tok.text}' at column ${tok.offset + 1}: ${problems.join('; ')}`, {
      position: tok.offset + 1,
    });
  }

  parse(): Requirement[] {
    const requirements: Requirement[] = [];
    if (this.peek().kind === 'eos') return requirements;
    for (;;) {
      const first = this.peek();
      if (first.kind !== 'ident' && first.kind !== '!') this.fail(first, "'!' or a label key");
      requirements.push(this.requirement());
      const after = this.next();
      if (after.kind === 'eos') return requirements;
      if (after.kind !== ',') this.fail(after, "',' or end of string");
      // Kubernetes rejects a trailing or doubled comma rather than treating it as "no requirement".
      const following = this.peek();
      if (following.kind !== 'ident' && following.kind !== '!') this.fail(following, "'!' or a label key after ','");
    }
  }

  private requirement(): Requirement {
    let tok = this.next();
    const negated = tok.kind === '!';
    if (negated) tok = this.next();
    if (tok.kind !== 'ident') this.fail(tok, 'a label key');
    const key = tok.text;
    const keyProblems = validateQualifiedName(key);
    if (keyProblems.length > 0) this.invalid(tok, 'key', keyProblems);

    // `!key` takes no operator; whatever follows it is left for parse() to reject.
    if (negated) return { key, operator: 'DoesNotExist', values: [] };
    const look = this.peek();
    if (look.kind === 'eos' || look.kind === ',') return { key, operator: 'Exists', values: [] };

    const op = this.next(true);
    switch (op.kind) {
      case 'in':
        return { key, operator: 'In', values: this.valueSet() };
      case 'notin':
        return { key, operator: 'NotIn', values: this.valueSet() };
      case '=':
      case '==':
        return { key, operator: 'In', values: [this.exactValue()] };
      case '!=':
        return { key, operator: 'NotIn', values: [this.exactValue()] };
      case '>':
      case '<':
        return this.fail(op, "one of 'in', 'notin', '=', '==' or '!=' (numeric comparisons are not supported in label selectors)");
      default:
        return this.fail(op, "one of 'in', 'notin', '=', '==', '!=', ',' or end of string");
    }
  }

  /** `key=` with nothing after it selects the empty value, as in Kubernetes' parseExactValue. */
  private exactValue(): string {
    const look = this.peek();
    if (look.kind === 'eos' || look.kind === ',') return '';
    const tok = this.next();
    if (tok.kind !== 'ident') this.fail(tok, 'a label value');
    return this.checkValue(tok);
  }

  /**
   * A parenthesised value list. Following Kubernetes' parseValues and parseIdentifiersList,
   * empty entries stand for the empty-string value: `()` is the set {""} (so `x in ()` selects
   * objects whose label x is present and empty) and `(a,)` is {"a", ""}. No list is ever empty.
   */
  private valueSet(): string[] {
    const open = this.next();
    if (open.kind !== '(') this.fail(open, "'('");
    const look = this.peek();
    if (look.kind === ')') {
      this.next();
      return [''];
    }
    if (look.kind !== 'ident' && look.kind !== ',') this.fail(look, "a label value, ',' or ')'");

    const values = new Set<string>();
    for (;;) {
      const tok = this.next();
      if (tok.kind === 'ident') {
        values.add(this.checkValue(tok));
        const after = this.peek();
        if (after.kind === ')') break;
        if (after.kind !== ',') this.fail(after, "',' or ')'");
      } else if (tok.kind === ',') {
        if (values.size === 0) values.add(''); // "(,"
        const after = this.peek();
        if (after.kind === ')') {
          values.add(''); // ",)"
          break;
        }
        if (after.kind === ',') values.add(''); // ",,"
      } else {
        this.fail(tok, "a label value or ','");
      }
    }
    this.next(); // the ')'
    return [...values].sort();
  }

  private checkValue(tok: Token): string {
    const problems = validateLabelValue(tok.text);
    if (problems.length > 0) this.invalid(tok, 'value', problems);
    return tok.text;
  }
}

/** Kubernetes sorts requirements by key so that equal selectors print, and compare, alike. */
function byKey(a: Requirement, b: Requirement): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/**
 * Parses the string syntax, e.g. `env=prod,tier in (web,api),!canary`. Whitespace around tokens is
 * ignored; the empty string is the selector that matches everything. Requirements come back sorted
 * by key and values sorted and de-duplicated, as Kubernetes' Parse returns them.
 * @throws SelectorError naming the bad token and its column.
 */
export function parseSelector(text: string): Selector {
  return { requirements: new Parser(text).parse().sort(byKey) };
}

const fieldError = (field: string, detail: string) => new SelectorError(`${field}: ${detail}`, { field });

function checkLabelSelectorKey(field: string, key: unknown): string {
  if (typeof key !== 'string') throw fieldError(field, 'Required value');
  const problems = validateQualifiedName(key);
  if (problems.length > 0) throw fieldError(field, `Invalid value: ${JSON.stringify(key)}: ${problems.join('; ')}`);
  return key;
}

function checkLabelSelectorValue(field: string, value: unknown): string {
  if (typeof value !== 'string') throw fieldError(field, `Invalid value: ${JSON.stringify(value)}: must be a string`);
  const problems = validateLabelValue(value);
  if (problems.length > 0) throw fieldError(field, `Invalid value: ${JSON.stringify(value)}: ${problems.join('; ')}`);
  return value;
}

function convertLabelSelector(ls: LabelSelector): Selector {
  const requirements: Requirement[] = [];
  for (const [key, value] of Object.entries(ls.matchLabels ?? {})) {
    checkLabelSelectorKey(`matchLabels[${key}]`, key);
    requirements.push({ key, operator: 'In', values: [checkLabelSelectorValue(`matchLabels[${key}]`, value)] });
  }
  (ls.matchExpressions ?? []).forEach((expr, i) => {
    const path = `matchExpressions[${i}]`;
    const key = checkLabelSelectorKey(`${path}.key`, expr.key);
    const raw: unknown = expr.values ?? [];
    if (!Array.isArray(raw)) throw fieldError(`${path}.values`, 'must be a list of strings');
    const values = raw.map((v, j) => checkLabelSelectorValue(`${path}.values[${j}]`, v));
    // Kubernetes' operator names are case-sensitive: "in" is not "In".
    switch (expr.operator) {
      case 'In':
      case 'NotIn':
        if (values.length === 0) throw fieldError(`${path}.values`, `must be non-empty for operator ${expr.operator}`);
        requirements.push({ key, operator: expr.operator, values: [...new Set(values)].sort() });
        break;
      case 'Exists':
      case 'DoesNotExist':
        if (values.length > 0) throw fieldError(`${path}.values`, `must be empty for operator ${expr.operator}`);
        requirements.push({ key, operator: expr.operator, values: [] });
        break;
      default:
        throw fieldError(
          `${path}.operator`,
          `Unsupported value: ${JSON.stringify(expr.operator)}: supported values: "In", "NotIn", "Exists", "DoesNotExist"`,
        );
    }
  });
  return { requirements: requirements.sort(byKey) };
}

/**
 * Converts a manifest-form selector, treating an absent selector like an empty one: both match
 * everything. Suitable where omitting the selector means "no restriction" (list filters, for one).
 * Workload selectors should use labelSelectorAsSelector instead, where absent means "nothing".
 * Validation is Kubernetes': keys and values must be valid, In and NotIn need at least one value,
 * Exists and DoesNotExist take none, and any other operator is rejected.
 * @throws SelectorError whose message and `field` name the offending field.
 */
export function selectorFromLabelSelector(ls: LabelSelector | undefined): Selector {
  return ls === undefined ? { requirements: [] } : convertLabelSelector(ls);
}

/**
 * Kubernetes' metav1.LabelSelectorAsSelector: an absent (nil) selector matches nothing, while a
 * present but empty one matches everything. This is the rule for workload selectors, where a
 * forgotten selector must not adopt every pod in the namespace.
 * @throws SelectorError as selectorFromLabelSelector.
 */
export function labelSelectorAsSelector(ls: LabelSelector | undefined): Selector {
  return ls === undefined ? { requirements: [], matchesNothing: true } : convertLabelSelector(ls);
}

/**
 * The selector for a plain map such as a pod's nodeSelector: every key must have exactly that
 * value. Like Kubernetes' SelectorFromSet this does not validate the map (that belongs to
 * admission, see validateLabels) and an empty map matches everything.
 */
export function selectorFromMap(labels: Record<string, string>): Selector {
  const requirements: Requirement[] = Object.entries(labels).map(([key, value]) => ({ key, operator: 'In', values: [value] }));
  return { requirements: requirements.sort(byKey) };
}

function requirementMatches(r: Requirement, labels: Record<string, string>): boolean {
  // Own properties only: a label map is a plain object, and "constructor" must not look present.
  const present = Object.hasOwn(labels, r.key);
  switch (r.operator) {
    case 'In':
      return present && r.values.includes(labels[r.key] as string);
    case 'NotIn':
      // Kubernetes: NotIn (and !=) also match objects that lack the label altogether.
      return !present || !r.values.includes(labels[r.key] as string);
    case 'Exists':
      return present;
    case 'DoesNotExist':
      return !present;
    default:
      return false;
  }
}

/** Whether an object with these labels is selected. Absent labels are the empty map. */
export function matches(selector: Selector, labels: Record<string, string> | undefined): boolean {
  if (selector.matchesNothing) return false;
  const ls = labels ?? {};
  return selector.requirements.every((r) => requirementMatches(r, ls));
}

function requirementToString(r: Requirement): string {
  const values = [...new Set(r.values)].sort();
  switch (r.operator) {
    case 'Exists':
      return r.key;
    case 'DoesNotExist':
      return `!${r.key}`;
    case 'In':
      return values.length === 1 ? `${r.key}=${values[0]}` : `${r.key} in (${values.join(',')})`;
    case 'NotIn':
      return values.length === 1 ? `${r.key}!=${values[0]}` : `${r.key} notin (${values.join(',')})`;
  }
}

/**
 * The canonical string form: requirements sorted by key, values sorted, one-value sets written
 * with `=` / `!=`. parseSelector(selectorToString(s)) gives back s for any valid selector. The
 * nothing selector prints as "", as Kubernetes' does; it is the one selector without a string form.
 */
export function selectorToString(selector: Selector): string {
  if (selector.matchesNothing) return '';
  return [...selector.requirements].sort(byKey).map(requirementToString).join(',');
}

/**
 * The requirements that pin a key to exactly one value (`key=value`, `key in (value)`), as
 * [key, value] pairs. Every selected object carries those labels, so a store can narrow its
 * candidates through a label index before calling matches(). Compare Kubernetes'
 * RequiresExactMatch, which answers the same question one key at a time.
 */
export function equalityRequirements(selector: Selector): [string, string][] {
  if (selector.matchesNothing) return [];
  const pairs: [string, string][] = [];
  for (const r of selector.requirements) {
    if (r.operator !== 'In') continue;
    const distinct = new Set(r.values);
    if (distinct.size === 1) pairs.push([r.key, [...distinct][0] as string]);
  }
  return pairs;
}
