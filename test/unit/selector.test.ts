import { describe, it, expect } from 'vitest';
import {
  SelectorError,
  equalityRequirements,
  labelSelectorAsSelector,
  matches,
  parseSelector,
  selectorFromLabelSelector,
  selectorFromMap,
  selectorToString,
} from '../../shared/labels/index.js';
import type { LabelSelector, Selector } from '../../shared/labels/index.js';

// Cases after Kubernetes' staging/src/k8s.io/apimachinery/pkg/labels/selector_test.go.

const sel = (text: string): Selector => parseSelector(text);

function thrown(fn: () => unknown): SelectorError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SelectorError);
    return err as SelectorError;
  }
  throw new Error('expected a SelectorError');
}
const parseError = (text: string) => thrown(() => parseSelector(text));
const labelSelectorError = (ls: LabelSelector) => thrown(() => selectorFromLabelSelector(ls));

describe('parseSelector', () => {
  it('parses the empty string, and only whitespace, as the selector that matches everything', () => {
    expect(sel('')).toEqual({ requirements: [] });
    expect(sel('  \t\n')).toEqual({ requirements: [] });
  });

  it('maps = and == to In with one value, != to NotIn with one value', () => {
    expect(sel('a=b').requirements).toEqual([{ key: 'a', operator: 'In', values: ['b'] }]);
    expect(sel('a==b').requirements).toEqual([{ key: 'a', operator: 'In', values: ['b'] }]);
    expect(sel('a!=b').requirements).toEqual([{ key: 'a', operator: 'NotIn', values: ['b'] }]);
  });

  it('parses every form of requirement in one selector, sorted by key', () => {
    expect(sel('a=b,c==d,e!=f,g in (x,y),h notin (x),i,!j').requirements).toEqual([
      { key: 'a', operator: 'In', values: ['b'] },
      { key: 'c', operator: 'In', values: ['d'] },
      { key: 'e', operator: 'NotIn', values: ['f'] },
      { key: 'g', operator: 'In', values: ['x', 'y'] },
      { key: 'h', operator: 'NotIn', values: ['x'] },
      { key: 'i', operator: 'Exists', values: [] },
      { key: 'j', operator: 'DoesNotExist', values: [] },
    ]);
  });

  it('sorts requirements by key so equal selectors compare equal', () => {
    expect(sel('x=a,a=x')).toEqual(sel('a=x,x=a'));
    expect(sel('z,y in (b,a),x').requirements.map((r) => r.key)).toEqual(['x', 'y', 'z']);
  });

  it('sorts and de-duplicates value sets', () => {
    expect(sel('x in (c,a,b,a)').requirements[0]?.values).toEqual(['a', 'b', 'c']);
  });

  it('tolerates spaces, tabs, carriage returns and newlines between tokens', () => {
    const expected = sel('x in (abc,def),y!=z');
    expect(sel('  x  in\t (  abc ,\n def ) ,  y != z  ')).toEqual(expected);
    expect(sel('\rx').requirements).toEqual([{ key: 'x', operator: 'Exists', values: [] }]);
    expect(sel('x notin\n (abc)').requirements).toEqual([{ key: 'x', operator: 'NotIn', values: ['abc'] }]);
    expect(sel('a ').requirements).toEqual([{ key: 'a', operator: 'Exists', values: [] }]);
  });

  it('accepts keys with a DNS prefix', () => {
    expect(sel('example.com/role=edge').requirements).toEqual([{ key: 'example.com/role', operator: 'In', values: ['edge'] }]);
    expect(sel('this-is-a-dns.domain.com/key-with-dash').requirements[0]?.operator).toBe('Exists');
    expect(sel('0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)').requirements).toEqual([
      { key: '0.1.2.domain/99', operator: 'NotIn', values: ['10.10.100.1', 'tick.tack.clock'] },
    ]);
  });

  it('reads an empty exact value as the empty string', () => {
    expect(sel('x=').requirements).toEqual([{ key: 'x', operator: 'In', values: [''] }]);
    expect(sel('x= ,z= ').requirements).toEqual([
      { key: 'x', operator: 'In', values: [''] },
      { key: 'z', operator: 'In', values: [''] },
    ]);
    expect(sel('x!=').requirements).toEqual([{ key: 'x', operator: 'NotIn', values: [''] }]);
  });

  it('reads empty entries of a value list as the empty string, as Kubernetes does', () => {
    expect(sel('x in ()').requirements[0]?.values).toEqual(['']);
    expect(sel('x notin ( )').requirements[0]?.values).toEqual(['']);
    expect(sel('x in (abc,)').requirements[0]?.values).toEqual(['', 'abc']);
    expect(sel('x notin (, a)').requirements[0]?.values).toEqual(['', 'a']);
    expect(sel('x in (a,,b)').requirements[0]?.values).toEqual(['', 'a', 'b']);
  });

  it('treats in and notin as ordinary words in key and value position', () => {
    expect(sel('a in (x,y,notin, z,in)').requirements[0]?.values).toEqual(['in', 'notin', 'x', 'y', 'z']);
    expect(sel('notin=in').requirements).toEqual([{ key: 'notin', operator: 'In', values: ['in'] }]);
    expect(sel('in in (in)').requirements).toEqual([{ key: 'in', operator: 'In', values: ['in'] }]);
  });

  it.each([
    // [input, column of the offending token, text that must appear in the message]
    [',', 1, "found ',' at column 1"],
    [',x,y', 1, "found ',' at column 1"],
    ['x,', 3, 'found end of string at column 3'],
    ['a in (xyz),', 12, 'found end of string at column 12'],
    ['x=a,,y', 5, "found ',' at column 5"],
    ['!x=a', 3, "found '=' at column 3, expected ',' or end of string"],
    ['x==a==b', 5, "found '==' at column 5"],
    ['x nott in (y)', 3, "found 'nott' at column 3"],
    ['a in (xyz abc)', 11, "found 'abc' at column 11, expected ',' or ')'"],
    ['a in (xyz)b notin ()', 11, "found 'b' at column 11"],
    ['a notin(', 9, 'found end of string at column 9'],
    ['x in (a', 8, 'found end of string at column 8'],
    ['x in a', 6, "found 'a' at column 6, expected '('"],
    ['a (', 3, "found '(' at column 3"],
    ['(', 1, "found '(' at column 1"],
    ['!', 2, 'found end of string at column 2, expected a label key'],
    ['x in (=)', 7, "found '=' at column 7"],
    ['x=(a)', 3, "found '(' at column 3"],
    ['x>1', 2, "found '>' at column 2"],
    ['x<a', 2, "found '<' at column 2"],
  ])('rejects %j at column %i', (text, column, fragment) => {
    const err = parseError(text);
    expect(err.position).toBe(column);
    expect(err.message).toContain(fragment);
    expect(err.message).toContain(JSON.stringify(text));
  });

  it('rejects invalid keys, naming the key and its column', () => {
    const err = parseError('a=b, -bad=c');
    expect(err.position).toBe(6);
    expect(err.message).toContain("key '-bad' at column 6");
    expect(err.message).toContain('name part must consist of');
    expect(parseError(`${'k'.repeat(64)}=v`).message).toContain('name part must be no more than 63 characters');
    expect(parseError(`${'a'.repeat(254)}/k`).message).toContain('prefix part must be no more than 253 characters');
    expect(parseError('Example.com/k').message).toContain('prefix part a lowercase RFC 1123 subdomain');
  });

  it('rejects invalid values, including ones that would hide an operator such as ||', () => {
    const err = parseError('x=a||y=b');
    expect(err.position).toBe(3);
    expect(err.message).toContain("value 'a||y' at column 3");
    expect(parseError(`x=${'v'.repeat(64)}`).message).toContain('must be no more than 63 characters');
    expect(parseError('x in (ok, -bad)').position).toBe(11);
  });
});

describe('matches', () => {
  const labelset = { foo: 'bar', baz: 'blah' };

  it.each([
    ['', { x: 'y' }],
    ['x=y', { x: 'y' }],
    ['x==y', { x: 'y' }],
    ['x=y,z=w', { x: 'y', z: 'w' }],
    ['x!=y,z!=w', { x: 'z', z: 'a' }],
    ['notin=in', { notin: 'in' }],
    ['x', { x: 'z' }],
    ['x', { x: '' }],
    ['!x', { y: 'z' }],
    ['x=', { x: '' }],
    ['x in ()', { x: '' }],
    ['foo=bar', labelset],
    ['baz=blah', labelset],
    ['foo=bar,baz=blah', labelset],
    ['foo in (a,bar,c)', labelset],
    ['foo notin (a,b)', labelset],
    ['example.com/role=edge', { 'example.com/role': 'edge' }],
  ])('%j matches %j', (text, labels) => {
    expect(matches(sel(text), labels)).toBe(true);
  });

  it.each([
    ['x=z', {}],
    ['x=y', { x: 'z' }],
    ['x=y,z=w', { x: 'w', z: 'w' }],
    ['x!=y,z!=w', { x: 'z', z: 'w' }],
    ['x', { y: 'z' }],
    ['!x', { x: 'z' }],
    ['!x', { x: '' }],
    ['x=', {}],
    ['foo=blah', labelset],
    ['baz=bar', labelset],
    ['foo=bar,foobar=bar,baz=blah', labelset],
    ['foo notin (bar)', labelset],
    ['example.com/role=edge', { role: 'edge' }],
  ])('%j does not match %j', (text, labels) => {
    expect(matches(sel(text), labels)).toBe(false);
  });

  it('matches != and notin on objects without the label, as Kubernetes does', () => {
    expect(matches(sel('a!=b'), {})).toBe(true);
    expect(matches(sel('a!=b'), { other: 'x' })).toBe(true);
    expect(matches(sel('a notin (x,y)'), { other: 'x' })).toBe(true);
    expect(matches(sel('a notin (x,y)'), { a: 'x' })).toBe(false);
  });

  it('does not match in or = on objects without the label', () => {
    expect(matches(sel('a in (x,y)'), {})).toBe(false);
    expect(matches(sel('a=x'), { b: 'x' })).toBe(false);
    // Not even the empty value: the label must be present.
    expect(matches(sel('a in ()'), {})).toBe(false);
  });

  it('ANDs all requirements', () => {
    const s = sel('env=prod,tier in (web,api),!canary');
    expect(matches(s, { env: 'prod', tier: 'web' })).toBe(true);
    expect(matches(s, { env: 'prod', tier: 'db' })).toBe(false);
    expect(matches(s, { env: 'dev', tier: 'web' })).toBe(false);
    expect(matches(s, { env: 'prod', tier: 'web', canary: 'true' })).toBe(false);
  });

  it('treats absent labels as the empty map', () => {
    expect(matches(sel(''), undefined)).toBe(true);
    expect(matches(sel('!x'), undefined)).toBe(true);
    expect(matches(sel('x!=y'), undefined)).toBe(true);
    expect(matches(sel('x'), undefined)).toBe(false);
    expect(matches(sel('x=y'), undefined)).toBe(false);
  });

  it('does not see inherited object properties as labels', () => {
    expect(matches(sel('constructor'), {})).toBe(false);
    expect(matches(sel('!toString'), {})).toBe(true);
  });
});

describe('selectorToString', () => {
  it.each([
    ['x=a,y=b,z=c', 'x=a,y=b,z=c'],
    ['x!=a,y=b', 'x!=a,y=b'],
    ['x==abc', 'x=abc'],
    ['x=', 'x='],
    ['x= ,z= ', 'x=,z='],
    ['!x', '!x'],
    ['x in (def,abc),y notin (jkl),z', 'x in (abc,def),y!=jkl,z'],
    ['x notin (abc,def),y!=jkl,!z', 'x notin (abc,def),y!=jkl,!z'],
    ['x in (abc)', 'x=abc'],
    ['z notin ()', 'z!='],
    ['b=1,a=2', 'a=2,b=1'],
    ['', ''],
  ])('writes %j as %j', (text, expected) => {
    expect(selectorToString(sel(text))).toBe(expected);
  });

  it.each(['a=b,c==d,e!=f,g in (x,y),h notin (x),i,!j', 'example.com/role in (edge,gateway),!example.com/draining', 'x in (a,,b),y notin (,c)', 'k=v'])(
    'round-trips %j through parseSelector',
    (text) => {
      const once = sel(text);
      expect(sel(selectorToString(once))).toEqual(once);
    },
  );

  it('sorts requirements of a hand-built selector', () => {
    expect(
      selectorToString({
        requirements: [
          { key: 'b', operator: 'Exists', values: [] },
          { key: 'a', operator: 'NotIn', values: ['y', 'x'] },
        ],
      }),
    ).toBe('a notin (x,y),b');
  });
});

describe('selectorFromMap', () => {
  it('requires every key to have exactly its value', () => {
    const s = selectorFromMap({ zone: 'north', 'example.com/gpu': 'true' });
    expect(s.requirements).toEqual([
      { key: 'example.com/gpu', operator: 'In', values: ['true'] },
      { key: 'zone', operator: 'In', values: ['north'] },
    ]);
    expect(matches(s, { zone: 'north', 'example.com/gpu': 'true', extra: 'x' })).toBe(true);
    expect(matches(s, { zone: 'north' })).toBe(false);
    expect(matches(s, { zone: 'south', 'example.com/gpu': 'true' })).toBe(false);
  });

  it('matches everything when empty', () => {
    expect(selectorFromMap({})).toEqual({ requirements: [] });
    expect(matches(selectorFromMap({}), { any: 'thing' })).toBe(true);
  });

  it('writes as equality requirements', () => {
    expect(selectorToString(selectorFromMap({ b: '2', a: '1' }))).toBe('a=1,b=2');
  });
});

describe('selectorFromLabelSelector', () => {
  it('treats an absent and an empty selector as matching everything', () => {
    expect(selectorFromLabelSelector(undefined)).toEqual({ requirements: [] });
    expect(matches(selectorFromLabelSelector(undefined), { a: 'b' })).toBe(true);
    expect(matches(selectorFromLabelSelector({}), { a: 'b' })).toBe(true);
    expect(matches(selectorFromLabelSelector({ matchLabels: {}, matchExpressions: [] }), {})).toBe(true);
  });

  it('combines matchLabels and matchExpressions, sorted by key', () => {
    const s = selectorFromLabelSelector({
      matchLabels: { app: 'web' },
      matchExpressions: [
        { key: 'tier', operator: 'In', values: ['front', 'edge'] },
        { key: 'canary', operator: 'DoesNotExist' },
        { key: 'env', operator: 'NotIn', values: ['dev'] },
        { key: 'example.com/zone', operator: 'Exists', values: [] },
      ],
    });
    expect(s.requirements).toEqual([
      { key: 'app', operator: 'In', values: ['web'] },
      { key: 'canary', operator: 'DoesNotExist', values: [] },
      { key: 'env', operator: 'NotIn', values: ['dev'] },
      { key: 'example.com/zone', operator: 'Exists', values: [] },
      { key: 'tier', operator: 'In', values: ['edge', 'front'] },
    ]);
    expect(matches(s, { app: 'web', tier: 'edge', 'example.com/zone': 'a' })).toBe(true);
    expect(matches(s, { app: 'web', tier: 'edge', 'example.com/zone': 'a', env: 'dev' })).toBe(false);
    expect(matches(s, { app: 'web', tier: 'edge' })).toBe(false);
    expect(selectorToString(s)).toBe('app=web,!canary,env!=dev,example.com/zone,tier in (edge,front)');
  });

  it('requires values for In and NotIn', () => {
    const err = labelSelectorError({ matchExpressions: [{ key: 'a', operator: 'Exists' }, { key: 'b', operator: 'In', values: [] }] });
    expect(err.message).toBe('matchExpressions[1].values: must be non-empty for operator In');
    expect(err.field).toBe('matchExpressions[1].values');
    expect(err.position).toBeUndefined();
    expect(labelSelectorError({ matchExpressions: [{ key: 'b', operator: 'NotIn' }] }).message).toBe(
      'matchExpressions[0].values: must be non-empty for operator NotIn',
    );
  });

  it('forbids values for Exists and DoesNotExist', () => {
    expect(labelSelectorError({ matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] }).message).toBe(
      'matchExpressions[0].values: must be empty for operator Exists',
    );
    expect(labelSelectorError({ matchExpressions: [{ key: 'a', operator: 'DoesNotExist', values: ['x'] }] }).field).toBe('matchExpressions[0].values');
  });

  it('rejects unknown operators, including wrongly cased ones', () => {
    for (const operator of ['Gt', 'in', 'Equals', '']) {
      const err = labelSelectorError({ matchExpressions: [{ key: 'a', operator, values: ['1'] }] });
      expect(err.field).toBe('matchExpressions[0].operator');
      expect(err.message).toContain(`Unsupported value: ${JSON.stringify(operator)}`);
      expect(err.message).toContain('"In", "NotIn", "Exists", "DoesNotExist"');
    }
  });

  it('validates keys and values', () => {
    expect(labelSelectorError({ matchExpressions: [{ key: 'bad key', operator: 'Exists' }] }).field).toBe('matchExpressions[0].key');
    const valueErr = labelSelectorError({ matchExpressions: [{ key: 'k', operator: 'In', values: ['ok', 'not ok'] }] });
    expect(valueErr.field).toBe('matchExpressions[0].values[1]');
    expect(valueErr.message).toContain('Invalid value: "not ok"');
    expect(labelSelectorError({ matchLabels: { k: 'x'.repeat(64) } }).message).toContain('must be no more than 63 characters');
    expect(labelSelectorError({ matchLabels: { '-k': 'v' } }).field).toBe('matchLabels[-k]');
  });
});

describe('labelSelectorAsSelector', () => {
  it('makes an absent selector match nothing, as Kubernetes does for a nil selector', () => {
    const s = labelSelectorAsSelector(undefined);
    expect(matches(s, {})).toBe(false);
    expect(matches(s, { app: 'web' })).toBe(false);
    expect(equalityRequirements(s)).toEqual([]);
    expect(selectorToString(s)).toBe('');
  });

  it('makes an empty selector match everything', () => {
    expect(matches(labelSelectorAsSelector({}), { app: 'web' })).toBe(true);
    expect(matches(labelSelectorAsSelector({}), undefined)).toBe(true);
  });

  it('converts and validates a present selector like selectorFromLabelSelector', () => {
    const ls: LabelSelector = { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }] };
    expect(labelSelectorAsSelector(ls)).toEqual(selectorFromLabelSelector(ls));
    expect(() => labelSelectorAsSelector({ matchExpressions: [{ key: 'a', operator: 'In' }] })).toThrow(SelectorError);
  });
});

describe('equalityRequirements', () => {
  it('returns the requirements that pin a key to one value', () => {
    expect(equalityRequirements(sel('app=web,tier in (edge),zone in (a,b),env!=dev,canary,!old'))).toEqual([
      ['app', 'web'],
      ['tier', 'edge'],
    ]);
  });

  it('includes a pinned empty value, since the label must still be present', () => {
    expect(equalityRequirements(sel('x='))).toEqual([['x', '']]);
  });

  it('returns nothing for selectors without equality requirements', () => {
    expect(equalityRequirements(sel(''))).toEqual([]);
    expect(equalityRequirements(sel('a notin (b),c'))).toEqual([]);
  });

  it('covers matchLabels and nodeSelector maps', () => {
    expect(equalityRequirements(selectorFromMap({ b: '2', a: '1' }))).toEqual([
      ['a', '1'],
      ['b', '2'],
    ]);
    expect(equalityRequirements(selectorFromLabelSelector({ matchLabels: { app: 'web' } }))).toEqual([['app', 'web']]);
  });

  it('is a sound prefilter: every object it excludes is also rejected by matches', () => {
    const s = sel('app=web,tier notin (db)');
    const objects: Record<string, string>[] = [{ app: 'web' }, { app: 'api' }, { app: 'web', tier: 'db' }, {}];
    for (const labels of objects) {
      const passes = equalityRequirements(s).every(([k, v]) => labels[k] === v);
      if (!passes) expect(matches(s, labels)).toBe(false);
    }
  });
});
