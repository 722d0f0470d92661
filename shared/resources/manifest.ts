import { LineCounter, parseAllDocuments } from 'yaml';
import { expansionProblem, MAX_EXPANDED_BYTES, yamlShapeProblem } from './depth.js';

export interface ManifestDocument {
  /** Where the document came from, for messages: `file.yaml` or `file.yaml (document 2)`. */
  source: string;
  value: unknown;
}

export class ManifestSyntaxError extends Error {
  constructor(
    message: string,
    readonly line?: number,
    readonly column?: number,
  ) {
    super(message);
    this.name = 'ManifestSyntaxError';
  }
}

/**
 * Parses YAML or JSON text (JSON is YAML) holding one or more documents separated by `---`.
 * A `kind: List` document (`{items: [...]}`, what `get -o yaml` prints for a list) is flattened.
 * Syntax errors name the line and column. A text nested deeper than MAX_MANIFEST_DEPTH, or
 * with more than `limits.maxTokens` tokens, is refused before any tree is built; aliases may be used at most 100 times, may not refer to a
 * node containing them, and may not expand a document past MAX_EXPANDED_BYTES.
 */
export function parseManifests(text: string, source = 'input', limits: { maxTokens?: number } = {}): ManifestDocument[] {
  const shape = yamlShapeProblem(text, limits);
  if (shape) throw new ManifestSyntaxError(`${source}: YAML not accepted: ${shape}`);
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: true });
  const out: ManifestDocument[] = [];
  const list = Array.isArray(docs) ? docs : [docs];
  let index = 0;
  // One budget for every document of the text, so that many documents cannot each expand.
  let budget = MAX_EXPANDED_BYTES;
  for (const doc of list) {
    index++;
    const err = doc.errors[0];
    if (err) {
      const pos = err.linePos?.[0];
      const where = pos ? `line ${pos.line}, column ${pos.col}` : 'unknown position';
      // The parser's own first line repeats the position; say it once.
      const firstLine = (err.message.split('\n')[0] ?? err.message).replace(/ at line \d+, column \d+:?$/, '');
      throw new ManifestSyntaxError(`${source}: YAML syntax error at ${where}: ${firstLine}`, pos?.line, pos?.col);
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      // Too many alias expansions (a "billion laughs" document) is refused like a syntax error.
      throw new ManifestSyntaxError(`${source}: invalid YAML: ${(err as Error).message}`);
    }
    const expansion = expansionProblem(value, budget);
    if (expansion.problem) throw new ManifestSyntaxError(`${source}: invalid YAML: ${expansion.problem}`);
    budget -= expansion.bytes;
    if (value === null || value === undefined) continue;
    const name = list.length > 1 ? `${source} (document ${index})` : source;
    if (typeof value === 'object' && !Array.isArray(value) && (value as { kind?: unknown }).kind === 'List') {
      const items = (value as { items?: unknown }).items;
      if (Array.isArray(items)) items.forEach((item, i) => out.push({ source: `${name} item ${i}`, value: item }));
      continue;
    }
    if (typeof value === 'object' && !Array.isArray(value) && Array.isArray((value as { items?: unknown }).items) && !('kind' in value)) {
      ((value as { items: unknown[] }).items).forEach((item, i) => out.push({ source: `${name} item ${i}`, value: item }));
      continue;
    }
    out.push({ source: name, value });
  }
  return out;
}
