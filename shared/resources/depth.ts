import { Lexer, Parser } from 'yaml';

/**
 * How deep a manifest may nest objects and arrays. The deepest Kubernetes-shaped field is about
 * fifteen levels down (a Deployment's node affinity values, inside a List); a document nested
 * far deeper is an attack on the parser, and is refused from its text, before any tree is built:
 * a tree 100,000 levels deep costs the hub over 100 MB before it could be looked at.
 */
export const MAX_MANIFEST_DEPTH = 100;

export function depthMessage(max = MAX_MANIFEST_DEPTH): string {
  return `objects and arrays are nested more than ${max} levels deep`;
}

/**
 * Whether JSON text nests deeper than `max`, read as a stream of characters: brackets count
 * outside strings only. Malformed text is left to the parser to name.
 */
export function jsonTooDeep(text: string, max = MAX_MANIFEST_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

const COLLECTIONS = new Set(['block-map', 'block-seq', 'flow-collection']);

/**
 * What is wrong with the shape of YAML text (JSON included), if anything: collections nested
 * deeper than `maxDepth`, or more than `maxTokens` tokens. The text goes through the yaml
 * library's lexer and concrete-syntax parser one token at a time, and the parser's stack of open
 * nodes is watched: block nesting (`- - - x`, indentation) and flow nesting (`[[[`) count alike.
 * Reading stops at the first level or token too many, so the cost is bounded by the limits, not
 * by the text: the library's syntax tree takes some 350 bytes per token.
 */
export function yamlShapeProblem(text: string, limits: { maxDepth?: number; maxTokens?: number } = {}): string | undefined {
  const maxDepth = limits.maxDepth ?? MAX_MANIFEST_DEPTH;
  const maxTokens = limits.maxTokens ?? Infinity;
  const parser = new Parser();
  let tokens = 0;
  for (const lexeme of new Lexer().lex(text)) {
    if (++tokens > maxTokens) return `more than ${maxTokens} YAML tokens (a larger manifest can be sent as JSON)`;
    for (const token of parser.next(lexeme)) void token;
    // The stack also holds the document and scalars: count only collections, and only when it could matter.
    if (parser.stack.length > maxDepth && parser.stack.filter((t) => COLLECTIONS.has(t.type)).length > maxDepth) return depthMessage(maxDepth);
  }
  return undefined;
}

/**
 * How large a document may become once its YAML aliases are expanded, counted as JSON text: the
 * API's own body limit, since the hub stores and serves every object as JSON. A few hundred
 * kilobytes of YAML that alias one long list a hundred times would otherwise be stored (and
 * sent to devices) as tens of megabytes.
 */
export const MAX_EXPANDED_BYTES = 3 * 1024 * 1024;

/**
 * What is wrong with the value a YAML document became, if anything: an alias that refers to a
 * node containing it (a cycle, which no JSON can hold), or a size past `maxBytes` as JSON. The
 * walk keeps its own stack and stops at the first problem, so it costs at most `maxBytes`; the
 * bytes counted are returned, for a budget shared by several documents.
 */
export function expansionProblem(value: unknown, maxBytes = MAX_EXPANDED_BYTES): { bytes: number; problem?: string } {
  let bytes = 0;
  const open = new Set<object>();
  // The size of each object walked once: an alias is the same object again, counted from here
  // rather than walked again (a list aliased 90 times is walked once, not 90 times).
  const sizes = new Map<object, number>();
  // An object on the stack is entered once (its children pushed after an exit marker) and left at its marker.
  const stack: { value: unknown; exit?: object; start?: number }[] = [{ value }];
  while (stack.length > 0) {
    const { value: v, exit, start } = stack.pop()!;
    if (exit) {
      open.delete(exit);
      sizes.set(exit, bytes - start!);
      continue;
    }
    if (v !== null && typeof v === 'object') {
      if (open.has(v)) return { bytes, problem: 'an alias refers to a node that contains it (a cycle)' };
      const known = sizes.get(v);
      if (known !== undefined) bytes += known;
      else {
        open.add(v);
        stack.push({ value: undefined, exit: v, start: bytes });
        bytes += 2;
        if (Array.isArray(v)) {
          for (const item of v) {
            bytes += 1;
            stack.push({ value: item });
          }
        } else {
          for (const key of Object.keys(v)) {
            bytes += key.length + 4;
            stack.push({ value: (v as Record<string, unknown>)[key] });
          }
        }
      }
    } else bytes += typeof v === 'string' ? v.length + 2 : String(v).length;
    if (bytes > maxBytes) return { bytes, problem: `the documents expand to more than ${maxBytes} bytes of JSON (aliases expanded)` };
  }
  return { bytes };
}
