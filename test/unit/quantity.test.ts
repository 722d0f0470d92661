import { describe, it, expect } from 'vitest';
import { Quantity, QuantityError, bytes, cpuToMilli, parseQuantity } from '../../shared/quantities/index.js';

// Cases after Kubernetes' staging/src/k8s.io/apimachinery/pkg/api/resource/quantity_test.go.

describe('parseQuantity: values', () => {
  it.each([
    ['0', 0],
    ['1', 1],
    ['9', 9],
    // binary suffixes
    ['1Ki', 1024],
    ['8Ki', 8 * 1024],
    ['7Mi', 7 * 1024 ** 2],
    ['64Mi', 67108864],
    ['6Gi', 6 * 1024 ** 3],
    ['5Ti', 5 * 1024 ** 4],
    ['4Pi', 4 * 1024 ** 5],
    ['3Ei', 3 * 1024 ** 6],
    // decimal suffixes
    ['8k', 8000],
    ['50k', 50000],
    ['7M', 7e6],
    ['1G', 1e9],
    ['6G', 6e9],
    ['5T', 5e12],
    ['300T', 3e14],
    ['2P', 2e15],
    ['1E', 1e18],
    // exponents
    ['1e3', 1000],
    ['1E3', 1000],
    ['1E6', 1e6],
    ['1e9', 1e9],
    ['1.3E+6', 1.3e6],
    ['1.2e3', 1200],
    // fractions
    ['100.035k', 100035],
    ['10.035M', 10035000],
    ['7.123456M', 7123456],
    ['6.987654321G', 6987654321],
    ['0.5Mi', 524288],
    ['1.5Gi', 1.5 * 1024 ** 3],
    ['1.', 1],
    ['1.G', 1e9],
    ['+5', 5],
    ['-1', -1],
    ['-64Mi', -67108864],
  ])('%s is %d', (text, expected) => {
    expect(parseQuantity(text).value()).toBe(expected);
  });

  it('rounds fractional values up to a whole number, as Kubernetes Value() does', () => {
    expect(parseQuantity('0.5').value()).toBe(1);
    expect(parseQuantity('1m').value()).toBe(1);
    expect(parseQuantity('9.01').value()).toBe(10);
    expect(parseQuantity('100.035Ki').value()).toBe(102436);
    // Away from zero for negatives, as Kubernetes' RoundUp.
    expect(parseQuantity('-9.01').value()).toBe(-10);
  });
});

describe('parseQuantity: milli', () => {
  it.each([
    ['250m', 250],
    ['0.5', 500],
    ['.5', 500],
    ['0.1', 100],
    ['0.3', 300],
    ['1', 1000],
    ['2', 2000],
    ['1.5', 1500],
    ['100m', 100],
    ['1000m', 1000],
    ['1e3', 1000000],
    ['1E-3', 1],
    ['0.5e-2', 5],
    ['5n', 1],
    ['4u', 1],
    ['1500u', 2],
    ['1k', 1000000],
    ['.001', 1],
    ['0.0005k', 500],
    ['-250m', -250],
    ['0m', 0],
    ['-0', 0],
  ])('%s is %d milli', (text, expected) => {
    expect(parseQuantity(text).milli()).toBe(expected);
  });

  it('rounds sub-milli amounts up rather than to nearest, so that asking for some gets some', () => {
    expect(parseQuantity('0.0001').milli()).toBe(1);
    expect(parseQuantity('1n').milli()).toBe(1);
    expect(parseQuantity('100.1m').milli()).toBe(101);
  });

  it('is exact where floating point would not be', () => {
    // 0.1 * 1000 in doubles is 100.00000000000001, which a naive ceil turns into 101.
    expect(parseQuantity('0.1').milli()).toBe(100);
    expect(parseQuantity('0.7').milli()).toBe(700);
    expect(parseQuantity('1.1').milli()).toBe(1100);
    expect(parseQuantity('0.1Ki').milli()).toBe(102400);
  });

  it('does not produce negative zero', () => {
    expect(Object.is(parseQuantity('-0').milli(), 0)).toBe(true);
    expect(Object.is(parseQuantity('-0Mi').value(), 0)).toBe(true);
  });
});

describe('parseQuantity: numbers', () => {
  it('accepts numbers, as YAML gives `cpu: 2`', () => {
    expect(parseQuantity(2).milli()).toBe(2000);
    expect(parseQuantity(0.5).milli()).toBe(500);
    expect(parseQuantity(0.1).milli()).toBe(100);
    expect(parseQuantity(1e21).value()).toBe(1e21);
    expect(parseQuantity(-3).value()).toBe(-3);
    expect(parseQuantity(1e-7).milli()).toBe(1);
  });

  it('rejects non-finite numbers', () => {
    for (const n of [NaN, Infinity, -Infinity]) {
      expect(() => parseQuantity(n)).toThrow(QuantityError);
    }
    expect(() => parseQuantity(NaN)).toThrow("'NaN' is not a valid quantity: must be a finite number");
  });
});

describe('parseQuantity: invalid input', () => {
  it.each(['', '1.2.3', '1.1.M', '1+1.0M', '0.1mi', '0.1am', 'aoeu', '.5i', '1i', '-3.01i', '-3.01e-', '12x', '1K', '1KB', '1Mb', '1e', '1E+', '1Ee3', '1m3', 'Mi', 'k', '.', '-', '+', '-.', ' 1', '1 ', '1 Mi', '0x10', '1,5', '--1', 'Infinity', 'NaN'])(
    'rejects %j',
    (text) => {
      expect(() => parseQuantity(text)).toThrow(QuantityError);
    },
  );

  it('quotes the input and says what is wrong', () => {
    expect(() => parseQuantity('12x')).toThrow(/^'12x' is not a valid quantity: unexpected 'x' after the number; expected a suffix/);
    expect(() => parseQuantity('1.2.3')).toThrow(/^'1\.2\.3' is not a valid quantity: unexpected '\.3' after the number/);
    expect(() => parseQuantity('Mi')).toThrow("'Mi' is not a valid quantity: must start with a number");
    expect(() => parseQuantity('')).toThrow("'' is not a valid quantity: must not be empty");
    expect(() => parseQuantity(' 1')).toThrow("' 1' is not a valid quantity: must not have leading or trailing whitespace");
  });

  it('throws a QuantityError that is an Error', () => {
    try {
      parseQuantity('bogus');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(QuantityError);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).name).toBe('QuantityError');
    }
  });

  it('rejects exponents out of range rather than wrapping them', () => {
    expect(() => parseQuantity('1e4294967297')).toThrow(/out of range/);
    expect(() => parseQuantity('1e400')).toThrow(/too large/);
    expect(parseQuantity('0e400').value()).toBe(0);
  });
});

describe('Quantity.toString', () => {
  it.each([
    ['0', '0'],
    ['0Mi', '0'],
    ['1Ki', '1Ki'],
    ['1Gi', '1Gi'],
    ['1024Mi', '1Gi'],
    ['300Mi', '300Mi'],
    ['307200Ki', '300Mi'],
    ['1025Ki', '1025Ki'],
    ['0.5Mi', '512Ki'],
    ['1.5Gi', '1536Mi'],
    ['1000M', '1G'],
    ['0.001T', '1G'],
    ['1G', '1G'],
    ['50k', '50k'],
    ['2000', '2k'],
    ['100.035k', '100035'],
    ['0.5', '500m'],
    ['1.08', '1080m'],
    ['1080000000n', '1080m'],
    ['1000u', '1m'],
    ['250m', '250m'],
    ['12E', '12E'],
    ['1000E', '1e21'],
    ['1e3', '1e3'],
    ['1.5e3', '1500'],
    ['80e-3', '80e-3'],
    ['0.001e0', '1e-3'],
    ['1000e-12', '1e-9'],
    ['.001Ki', '1024m'],
    ['-1Gi', '-1Gi'],
    ['-0.5', '-500m'],
    ['-0', '0'],
  ])('writes %s as %s', (text, expected) => {
    expect(parseQuantity(text).toString()).toBe(expected);
  });

  it('writes a binary quantity below 1024 in decimal', () => {
    expect(parseQuantity('0.5Ki').toString()).toBe('512');
    expect(parseQuantity('100.035Ki').toString()).toBe('102435840m');
  });

  it('rounds amounts finer than a nano up to whole nanos, as Kubernetes does on parse', () => {
    expect(parseQuantity('3.001n').toString()).toBe('4n');
    expect(parseQuantity('0.0000000001').toString()).toBe('1n');
    expect(parseQuantity('0.00000012345').toString()).toBe('124n');
  });

  it('round-trips through parseQuantity', () => {
    for (const text of ['64Mi', '250m', '1e3', '1.5Gi', '100.035Ki', '7.123456M', '-2.5', '1n', '12E']) {
      const q = parseQuantity(text);
      expect(parseQuantity(q.toString()).compare(q)).toBe(0);
      expect(parseQuantity(q.toString()).toString()).toBe(q.toString());
    }
  });

  it('serialises to JSON as its canonical string', () => {
    expect(JSON.stringify({ memory: parseQuantity('1024Mi') })).toBe('{"memory":"1Gi"}');
  });
});

describe('Quantity: format, toNumber and compare', () => {
  it('remembers how the quantity was written', () => {
    expect(parseQuantity('1Gi').format).toBe('BinarySI');
    expect(parseQuantity('1G').format).toBe('DecimalSI');
    expect(parseQuantity('1').format).toBe('DecimalSI');
    expect(parseQuantity('1e9').format).toBe('DecimalExponent');
    // A binary amount below one is shown in decimal, as in Kubernetes.
    expect(parseQuantity('0.0001Ki').format).toBe('DecimalSI');
  });

  it('gives the unrounded value as a double', () => {
    expect(parseQuantity('500m').toNumber()).toBe(0.5);
    expect(parseQuantity('1.5Ki').toNumber()).toBe(1536);
    expect(parseQuantity('-1e-3').toNumber()).toBe(-0.001);
  });

  it('compares exactly across formats', () => {
    expect(parseQuantity('1Gi').compare(parseQuantity('1024Mi'))).toBe(0);
    expect(parseQuantity('1G').compare(parseQuantity('1Gi'))).toBe(-1);
    expect(parseQuantity('100m').compare(parseQuantity('50m'))).toBe(1);
    expect(parseQuantity('10000T').compare(parseQuantity('100Gi'))).toBe(1);
    expect(parseQuantity('0.1').compare(parseQuantity('100m'))).toBe(0);
    expect(parseQuantity('-1').compare(parseQuantity('0'))).toBe(-1);
  });

  it('is a Quantity', () => {
    expect(parseQuantity('1')).toBeInstanceOf(Quantity);
    expect(Quantity.parse('2Ki').value()).toBe(2048);
  });
});

describe('cpuToMilli and bytes', () => {
  it('converts CPU quantities to millicores', () => {
    expect(cpuToMilli('250m')).toBe(250);
    expect(cpuToMilli('0.5')).toBe(500);
    expect(cpuToMilli('2')).toBe(2000);
    expect(cpuToMilli(1)).toBe(1000);
    expect(cpuToMilli(0.25)).toBe(250);
  });

  it('converts memory quantities to bytes', () => {
    expect(bytes('64Mi')).toBe(67108864);
    expect(bytes('1G')).toBe(1_000_000_000);
    expect(bytes('128974848')).toBe(128974848);
    expect(bytes('129e6')).toBe(129_000_000);
    expect(bytes('123Mi')).toBe(128974848);
    expect(bytes(512)).toBe(512);
  });

  it('throws QuantityError for invalid input', () => {
    expect(() => cpuToMilli('one')).toThrow(QuantityError);
    expect(() => bytes('64MB')).toThrow(QuantityError);
  });
});
