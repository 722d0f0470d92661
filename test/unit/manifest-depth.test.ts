import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { MAX_YAML_BODY_TOKENS, parseBody } from '../../hub/api/body.js';
import { HubError } from '../../hub/api/errors.js';
import { expansionProblem, jsonTooDeep, MAX_MANIFEST_DEPTH, yamlShapeProblem } from '../../shared/resources/depth.js';
import { ManifestSyntaxError, parseManifests } from '../../shared/resources/manifest.js';

// Limits on the shape of a document, checked before (or instead of) building its tree: depth,
// YAML tokens, and what YAML aliases expand to.

const nestedJson = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

function request(type: string): IncomingMessage {
  return { headers: { 'content-type': type } } as unknown as IncomingMessage;
}

function hubError(fn: () => unknown): HubError {
  try {
    fn();
  } catch (err) {
    if (err instanceof HubError) return err;
    throw err;
  }
  throw new Error('expected a HubError');
}

describe('jsonTooDeep', () => {
  it('counts objects and arrays, up to the limit and one past it', () => {
    expect(jsonTooDeep(nestedJson(MAX_MANIFEST_DEPTH))).toBe(false);
    expect(jsonTooDeep(nestedJson(MAX_MANIFEST_DEPTH + 1))).toBe(true);
    expect(jsonTooDeep(`${'['.repeat(101)}${']'.repeat(101)}`)).toBe(true);
    expect(jsonTooDeep('[[1],[2],{"a":[3]}]', 3)).toBe(false);
  });

  it('does not count brackets inside strings, escaped quotes included', () => {
    expect(jsonTooDeep(JSON.stringify({ s: '['.repeat(500) }))).toBe(false);
    expect(jsonTooDeep(JSON.stringify({ s: `\\"${'{'.repeat(500)}` }))).toBe(false);
  });
});

describe('yamlShapeProblem', () => {
  it('counts block and flow nesting alike', () => {
    expect(yamlShapeProblem('- - - 1\n', { maxDepth: 3 })).toBeUndefined();
    expect(yamlShapeProblem('- - - - 1\n', { maxDepth: 3 })).toMatch(/nested more than 3 levels/);
    // a: (1) - (2) b: (3) [ (4) { (5) [ (6)
    expect(yamlShapeProblem('a:\n  - b: [1, {c: [2]}]\n', { maxDepth: 6 })).toBeUndefined();
    expect(yamlShapeProblem('a:\n  - b: [1, {c: [2]}]\n', { maxDepth: 5 })).toMatch(/nested more than 5 levels/);
  });

  it('does not count what a block scalar holds', () => {
    expect(yamlShapeProblem(`a: |\n  ${'['.repeat(500)}\n  ${'- '.repeat(500)}\n`)).toBeUndefined();
  });

  it('stops at the first token past maxTokens', () => {
    const list = `${Array.from({ length: 1000 }, (_, i) => `- k${i}: v`).join('\n')}\n`;
    expect(yamlShapeProblem(list)).toBeUndefined();
    expect(yamlShapeProblem(list, { maxTokens: 1000 })).toMatch(/more than 1000 YAML tokens/);
  });

  it('refuses 100,000 levels at once', () => {
    expect(yamlShapeProblem(`${'- '.repeat(100_000)}x\n`)).toMatch(/nested more than 100 levels/);
    expect(yamlShapeProblem(`${'['.repeat(100_000)}${']'.repeat(100_000)}`)).toMatch(/nested more than 100 levels/);
  });
});

describe('expansionProblem', () => {
  it('counts a value shared by several places each time, as JSON would write it', () => {
    const shared = { name: 'x'.repeat(100) };
    expect(expansionProblem({ a: shared, b: shared }, 1000).problem).toBeUndefined();
    expect(expansionProblem(Array(20).fill(shared), 1000).problem).toMatch(/more than 1000 bytes/);
  });

  it('finds a cycle', () => {
    const loop: Record<string, unknown> = { a: 1 };
    loop.self = { back: loop };
    expect(expansionProblem(loop).problem).toMatch(/cycle/);
  });

  it('returns the bytes counted, about the JSON length', () => {
    const value = { a: [1, 'two', { b: null }] };
    const { bytes } = expansionProblem(value);
    expect(Math.abs(bytes - JSON.stringify(value).length)).toBeLessThanOrEqual(4);
  });
});

describe('parseManifests limits', () => {
  it('refuses deep YAML with a ManifestSyntaxError naming the source', () => {
    expect(() => parseManifests(`spec: ${'['.repeat(200)}${']'.repeat(200)}\n`, 'deep.yaml')).toThrow(new ManifestSyntaxError('deep.yaml: YAML not accepted: objects and arrays are nested more than 100 levels deep'));
  });

  it('refuses an alias that refers to a node containing it', () => {
    expect(() => parseManifests('spec: &s\n  loop: *s\n', 'loop.yaml')).toThrow(/loop.yaml: invalid YAML: an alias refers to a node that contains it/);
  });

  it('refuses aliases that expand past 3 MiB, in one document or over several', () => {
    const list = `[${Array.from({ length: 2000 }, (_, j) => `{name: V${j}, value: x}`).join(',')}]`;
    const wide = `a: &e ${list}\nb: [${Array(99).fill('*e').join(',')}]\n`;
    expect(() => parseManifests(wide, 'wide.yaml')).toThrow(/expand to more than 3145728 bytes/);
    const doc = (i: number) => `a${i}: &e${i} ${list}\nb: [${Array(20).fill(`*e${i}`).join(',')}]\n`;
    expect(() => parseManifests([0, 1, 2].map(doc).join('---\n'), 'many.yaml')).toThrow(/many.yaml: invalid YAML: the documents expand/);
    expect(parseManifests(doc(0), 'one.yaml')).toHaveLength(1);
  });
});

describe('parseBody limits', () => {
  it('refuses JSON nested 100,000 deep with HUB_ERR_BAD_REQUEST before parsing it', () => {
    const err = hubError(() => parseBody(request('application/json'), Buffer.from(`{"spec":${nestedJson(100_000)}}`)));
    expect(err.code).toBe('HUB_ERR_BAD_REQUEST');
    expect(err.message).toBe('body is not accepted: objects and arrays are nested more than 100 levels deep');
  });

  it('refuses a YAML body of more tokens than MAX_YAML_BODY_TOKENS, and reads one of fewer', () => {
    const list = (n: number) => `items:\n${Array.from({ length: n }, (_, i) => `- {apiVersion: v1, kind: Namespace, metadata: {name: n${i}}}`).join('\n')}\n`;
    const err = hubError(() => parseBody(request('application/yaml'), Buffer.from(list(MAX_YAML_BODY_TOKENS / 10))));
    expect(err.code).toBe('HUB_ERR_BAD_REQUEST');
    expect(err.message).toMatch(/more than 50000 YAML tokens \(a larger manifest can be sent as JSON\)/);
    expect(parseBody(request('application/yaml'), Buffer.from(list(100)))).toHaveLength(100);
  });
});
