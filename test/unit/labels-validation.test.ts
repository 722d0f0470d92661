import { describe, it, expect } from 'vitest';
import {
  validateDns1123Label,
  validateDns1123Subdomain,
  validateLabels,
  validateLabelValue,
  validateQualifiedName,
} from '../../shared/labels/index.js';

// Cases after Kubernetes' pkg/util/validation/validation_test.go.

describe('validateDns1123Label', () => {
  it.each(['a', 'ab', 'abc', 'a1', 'a-1', 'a--1--2--b', '0', '01', '012', '1a', '1-a', '1--a--b--2', 'a'.repeat(63)])(
    'accepts %j',
    (value) => {
      expect(validateDns1123Label(value)).toEqual([]);
    },
  );

  it.each(['', 'A', 'ABC', 'aBc', 'A1', 'A-1', '1-A', '-', 'a-', '-a', '1-', '-1', '_', 'a_', '_a', 'a_b', '1_', '_1', '1_2', '.', 'a.', '.a', '1.', '.1', ' ', 'a ', ' a', 'a b', '1 2', 'a%b', 'ä'])(
    'rejects %j',
    (value) => {
      expect(validateDns1123Label(value).length).toBeGreaterThan(0);
    },
  );

  it('explains the character rule in Kubernetes words', () => {
    expect(validateDns1123Label('My_Name')).toEqual([
      "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name' or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    ]);
  });

  it('says "must not contain dots" for a valid subdomain used as a label', () => {
    expect(validateDns1123Label('a.b')).toEqual(['must not contain dots']);
    expect(validateDns1123Label('1.2')).toEqual(['must not contain dots']);
  });

  it('reports the length limit at 64 characters and not at 63', () => {
    expect(validateDns1123Label('a'.repeat(63))).toEqual([]);
    expect(validateDns1123Label('a'.repeat(64))).toEqual(['must be no more than 63 characters']);
  });

  it('reports length and character problems together', () => {
    const errs = validateDns1123Label('A'.repeat(64));
    expect(errs).toHaveLength(2);
    expect(errs[0]).toBe('must be no more than 63 characters');
    expect(errs[1]).toContain('a lowercase RFC 1123 label');
  });
});

describe('validateDns1123Subdomain', () => {
  it.each(['a', 'ab', 'a1', 'a-1', 'a.a', 'a.b.c', 'a1.b2', '1.a', '0.1.2.domain', 'a--1--2--b.c', 'example.com', 'a'.repeat(253), `${'a'.repeat(63)}.${'b'.repeat(63)}`])(
    'accepts %j',
    (value) => {
      expect(validateDns1123Subdomain(value)).toEqual([]);
    },
  );

  it.each(['', 'A', 'Example.com', 'a..b', 'a.-b', 'a-.b', '-a.b', 'a.b-', '.a', 'a.', '_', 'a_b', 'a.b_c', 'a b', 'a/b', 'a:b'])('rejects %j', (value) => {
    expect(validateDns1123Subdomain(value).length).toBeGreaterThan(0);
  });

  it('explains the rule with the subdomain wording', () => {
    expect(validateDns1123Subdomain('a..b')).toEqual([
      "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
    ]);
  });

  it('allows 253 characters and not 254', () => {
    expect(validateDns1123Subdomain('a'.repeat(253))).toEqual([]);
    expect(validateDns1123Subdomain('a'.repeat(254))).toEqual(['must be no more than 253 characters']);
  });

  it('does not limit the individual dot-separated labels, as Kubernetes does not', () => {
    expect(validateDns1123Subdomain(`${'a'.repeat(64)}.com`)).toEqual([]);
  });
});

describe('validateQualifiedName (label keys)', () => {
  it.each([
    'simple',
    'now-with-dashes',
    '1-starts-with-num',
    '1234',
    'simple/simple',
    'now-with-dashes/simple',
    'now-with-dashes/now-with-dashes',
    'now.with.dots/simple',
    'now-with.dashes-and.dots/simple',
    '1-num.2-num/3-num',
    '1234/5678',
    '1.2.3.4/5678',
    'Uppercase_Is_OK_123',
    'example.com/Uppercase_Is_OK_123',
    'requests.storage-foo',
    'app.kubernetes.io/name',
    'a'.repeat(63),
    `${'a'.repeat(253)}/${'b'.repeat(63)}`,
  ])('accepts %j', (value) => {
    expect(validateQualifiedName(value)).toEqual([]);
  });

  it.each([
    '',
    'nospecialchars%^=@',
    'cantendwithadash-',
    '-cantstartwithadash-',
    '_cantstartwithunderscore',
    'has space',
    'only/one/slash',
    'Example.com/abc',
    'example_com/abc',
    'example.com/',
    '/simple',
    'example.com/-abc',
    'a'.repeat(64),
    `${'a'.repeat(254)}/abc`,
  ])('rejects %j', (value) => {
    expect(validateQualifiedName(value).length).toBeGreaterThan(0);
  });

  it('limits the name part to 63 characters', () => {
    expect(validateQualifiedName('a'.repeat(64))).toEqual(['name part must be no more than 63 characters']);
    expect(validateQualifiedName(`example.com/${'a'.repeat(64)}`)).toEqual(['name part must be no more than 63 characters']);
  });

  it('limits the prefix as a DNS subdomain of at most 253 characters', () => {
    expect(validateQualifiedName(`${'a'.repeat(254)}/abc`)).toEqual(['prefix part must be no more than 253 characters']);
  });

  it('rejects an upper-case prefix with the subdomain rule, prefixed by "prefix part"', () => {
    const errs = validateQualifiedName('Example.com/abc');
    expect(errs).toHaveLength(1);
    expect(errs[0]).toMatch(/^prefix part a lowercase RFC 1123 subdomain must consist of/);
  });

  it('reports an empty prefix and an empty name part', () => {
    expect(validateQualifiedName('/simple')).toEqual(['prefix part must be non-empty']);
    const errs = validateQualifiedName('example.com/');
    expect(errs[0]).toBe('name part must be non-empty');
    // As in Kubernetes, the empty name also fails the pattern.
    expect(errs[1]).toMatch(/^name part must consist of alphanumeric characters, '-', '_' or '\.'/);
  });

  it('reports a second slash as a malformed qualified name', () => {
    const errs = validateQualifiedName('a/b/c');
    expect(errs).toHaveLength(1);
    expect(errs[0]).toMatch(/^a qualified name must consist of/);
    expect(errs[0]).toContain("with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')");
  });

  it('gives examples of good names in the character message', () => {
    expect(validateQualifiedName('bad-')).toEqual([
      "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName' or 'my.name' or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    ]);
  });
});

describe('validateLabelValue', () => {
  it.each(['', 'simple', 'now-with-dashes', '1-starts-with-num', 'end-with-num-1', '1234', 'UPPER_and.lower-Mixed', 'a', 'a'.repeat(63)])(
    'accepts %j',
    (value) => {
      expect(validateLabelValue(value)).toEqual([]);
    },
  );

  it.each(['nospecialchars%^=@', 'Tama-nui-te-rā', 'cantendwithadash-', '-cantstartwithadash', '_underscore', 'dot.', 'has space', 'has/slash', 'a'.repeat(64)])(
    'rejects %j',
    (value) => {
      expect(validateLabelValue(value).length).toBeGreaterThan(0);
    },
  );

  it('limits values to 63 characters', () => {
    expect(validateLabelValue('a'.repeat(64))).toEqual(['must be no more than 63 characters']);
  });

  it('says that the empty string is allowed', () => {
    expect(validateLabelValue('-x')[0]).toMatch(/^a valid label must be an empty string or consist of alphanumeric characters/);
  });
});

describe('validateLabels', () => {
  it('accepts an empty map and a valid map', () => {
    expect(validateLabels({})).toEqual([]);
    expect(validateLabels({ app: 'web', 'example.com/role': 'edge', empty: '' })).toEqual([]);
  });

  it('reports each bad key and bad value against its key', () => {
    const problems = validateLabels({ good: 'ok', 'bad key': 'ok', other: 'bad value' });
    expect(problems.map((p) => p.key)).toEqual(['bad key', 'other']);
    expect(problems[0]?.message).toMatch(/^invalid label key 'bad key': name part must consist of/);
    expect(problems[1]?.message).toMatch(/^invalid label value 'bad value': a valid label must be an empty string/);
  });

  it('reports both a bad key and a bad value of the same label', () => {
    const problems = validateLabels({ '-k': 'v-' });
    expect(problems).toHaveLength(2);
    expect(problems.every((p) => p.key === '-k')).toBe(true);
  });

  it('reports a too-long value with the length message', () => {
    expect(validateLabels({ k: 'v'.repeat(64) })).toEqual([{ key: 'k', message: `invalid label value '${'v'.repeat(64)}': must be no more than 63 characters` }]);
  });

  it('reports a value that is not a string, as YAML numbers would be', () => {
    const problems = validateLabels({ version: 2 } as unknown as Record<string, string>);
    expect(problems).toEqual([{ key: 'version', message: "invalid label value for 'version': must be a string, not number" }]);
  });
});
