/**
 * Kubernetes resource quantities ("250m", "64Mi", "1e3"), after
 * k8s.io/apimachinery/pkg/api/resource/quantity.go.
 *
 * A quantity is held exactly, as an integer mantissa and a power of ten (bigint arithmetic), so
 * that rounding agrees with Kubernetes: "0.1" is 100 milli, not the 101 that 0.1 * 1000 in floating
 * point would round up to. Results are handed out as JavaScript numbers, which are exact only up
 * to 2^53 (about 9 PiB in bytes, or 9e12 cores in milli); beyond that they lose precision, and a
 * quantity too large for a double at all is rejected. Unlike Kubernetes, binary quantities are not
 * capped at 2^63-1.
 */

export type QuantityFormat = 'DecimalSI' | 'BinarySI' | 'DecimalExponent';

/** Thrown for text that is not a quantity; the message quotes the input. */
export class QuantityError extends Error {
  override readonly name = 'QuantityError';
}

const DECIMAL_SUFFIXES = new Map<string, number>([
  ['n', -9],
  ['u', -6],
  ['m', -3],
  ['', 0],
  ['k', 3],
  ['M', 6],
  ['G', 9],
  ['T', 12],
  ['P', 15],
  ['E', 18],
]);
const BINARY_SUFFIXES = new Map<string, number>([
  ['Ki', 10],
  ['Mi', 20],
  ['Gi', 30],
  ['Ti', 40],
  ['Pi', 50],
  ['Ei', 60],
]);
const DECIMAL_SUFFIX_BY_EXPONENT = new Map([...DECIMAL_SUFFIXES].map(([s, e]) => [e, s]));
const BINARY_SUFFIX_BY_EXPONENT = new Map([...BINARY_SUFFIXES].map(([s, e]) => [e, s]));

const NUMBER_AND_SUFFIX = /^([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)$/s;
const EXPONENT_SUFFIX = /^[eE][+-]?[0-9]+$/;
/** Any double-representable quantity needs far less; the bound keeps 10n ** exponent cheap. */
const MAX_EXPONENT = 1000;
/** Kubernetes keeps nine decimal places: anything finer is rounded up to 1n. */
const NANO_SCALE = -9;

const SUFFIX_HINT = 'expected a suffix (n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei) or an exponent such as e3';

function pow10(n: number): bigint {
  return 10n ** BigInt(n);
}

/** mantissa / divisor rounded away from zero, which is how Kubernetes rounds (inf.RoundUp). */
function divideAwayFromZero(mantissa: bigint, divisor: bigint): bigint {
  const q = mantissa / divisor;
  if (mantissa % divisor === 0n) return q;
  return mantissa < 0n ? q - 1n : q + 1n;
}

export class Quantity {
  /** Value = mantissa × 10^scale; scale ≥ -9 once parsed. */
  private constructor(
    private readonly mantissa: bigint,
    private readonly scale: number,
    /** How the quantity was written, which decides how toString() writes it back. */
    readonly format: QuantityFormat,
  ) {}

  /** See parseQuantity. */
  static parse(input: string | number): Quantity {
    let text: string;
    if (typeof input === 'number') {
      if (!Number.isFinite(input)) throw new QuantityError(`'${input}' is not a valid quantity: must be a finite number`);
      text = String(input); // "1e+21" and "1e-7" are valid quantity syntax too
    } else if (typeof input === 'string') {
      text = input;
    } else {
      throw new QuantityError(`'${String(input)}' is not a valid quantity: must be a string or a number`);
    }
    const fail = (reason: string): never => {
      throw new QuantityError(`'${text}' is not a valid quantity: ${reason}`);
    };

    if (text.length === 0) fail('must not be empty');
    if (text.trim() !== text) fail('must not have leading or trailing whitespace');
    const m = NUMBER_AND_SUFFIX.exec(text);
    const sign = m?.[1] ?? '';
    const whole = m?.[2] ?? '';
    const fraction = m?.[3] ?? '';
    const suffix = m?.[4] ?? '';
    // Kubernetes' parser reads a bare "." or "Mi" as zero; its documented grammar and every real
    // manifest have digits, and a quantity without any is far more likely a mistake than a zero.
    if (whole.length + fraction.length === 0) fail("must start with a number, e.g. '1', '0.5' or '-2'");

    let exponent: number;
    let binaryExponent = 0;
    let format: QuantityFormat;
    const decimal = DECIMAL_SUFFIXES.get(suffix);
    const binary = BINARY_SUFFIXES.get(suffix);
    if (decimal !== undefined) {
      exponent = decimal;
      format = 'DecimalSI';
    } else if (binary !== undefined) {
      exponent = 0;
      binaryExponent = binary;
      format = 'BinarySI';
    } else if (EXPONENT_SUFFIX.test(suffix)) {
      exponent = Number(suffix.slice(1));
      if (Math.abs(exponent) > MAX_EXPONENT) fail(`exponent ${suffix.slice(1)} is out of range`);
      format = 'DecimalExponent';
    } else {
      exponent = 0;
      format = 'DecimalSI';
      fail(`unexpected '${suffix}' after the number; ${SUFFIX_HINT}`);
    }

    let mantissa = BigInt(whole + fraction || '0') << BigInt(binaryExponent);
    let scale = exponent - fraction.length;
    if (scale < NANO_SCALE) {
      // Kubernetes rounds non-zero amounts up rather than to nearest, "under the theory that if
      // you want some resources, you should get some resources".
      mantissa = divideAwayFromZero(mantissa, pow10(NANO_SCALE - scale));
      scale = NANO_SCALE;
    }
    if (sign === '-') mantissa = -mantissa;
    // Kubernetes switches a binary quantity below one to decimal: "0.0001Ki" is 102400u, not a fraction of Ki.
    if (format === 'BinarySI' && mantissa !== 0n && (mantissa < 0n ? -mantissa : mantissa) < pow10(-Math.min(scale, 0))) {
      format = 'DecimalSI';
    }

    const q = new Quantity(mantissa, scale, format);
    if (!Number.isFinite(q.toNumber())) fail('is too large');
    return q;
  }

  /** The value × 10^digits, rounded away from zero to an integer, exactly. */
  private scaled(digits: number): bigint {
    const e = this.scale + digits;
    return e >= 0 ? this.mantissa * pow10(e) : divideAwayFromZero(this.mantissa, pow10(-e));
  }

  /** Thousandths, rounded up (away from zero) as Kubernetes' MilliValue does: the unit of CPU. */
  milli(): number {
    return Number(this.scaled(3));
  }

  /** The value rounded up (away from zero) to an integer, as Kubernetes' Value does: the unit of bytes. */
  value(): number {
    return Number(this.scaled(0));
  }

  /** The nearest double to the exact value, unrounded: 0.5 for "500m". */
  toNumber(): number {
    return Number(`${this.mantissa}e${this.scale}`);
  }

  /** Negative, zero or positive as this quantity is less than, equal to or greater than `other`. Exact. */
  compare(other: Quantity): number {
    const scale = Math.min(this.scale, other.scale);
    const a = this.mantissa * pow10(this.scale - scale);
    const b = other.mantissa * pow10(other.scale - scale);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  /**
   * Kubernetes' canonical form: the largest suffix that keeps the number an integer, in the
   * quantity's own format ("1024Mi" → "1Gi", "1000M" → "1G", "0.5" → "500m", "1.5e3" → "1500").
   * A binary quantity below 1024, or with a fraction, is written in decimal to avoid rounding.
   */
  toString(): string {
    if (this.mantissa === 0n) return '0';
    const negative = this.mantissa < 0n;
    let mantissa = negative ? -this.mantissa : this.mantissa;
    let scale = this.scale;
    const prefix = negative ? '-' : '';
    while (mantissa % 10n === 0n) {
      mantissa /= 10n;
      scale++;
    }

    if (this.format === 'BinarySI' && scale >= 0) {
      let amount = mantissa * pow10(scale);
      if (amount >= 1024n) {
        let exponent = 0;
        while (exponent < 60 && amount % 1024n === 0n) {
          amount /= 1024n;
          exponent += 10;
        }
        return `${prefix}${amount}${BINARY_SUFFIX_BY_EXPONENT.get(exponent) ?? ''}`;
      }
    }

    // Decimal suffixes step by thousands, so bring the exponent down to a multiple of three.
    const extra = ((scale % 3) + 3) % 3;
    mantissa *= pow10(extra);
    scale -= extra;
    let suffix: string;
    if (this.format === 'DecimalExponent') suffix = scale === 0 ? '' : `e${scale}`;
    else suffix = DECIMAL_SUFFIX_BY_EXPONENT.get(scale) ?? `e${scale}`; // past "E", as Kubernetes does
    return `${prefix}${mantissa}${suffix}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

/**
 * Parses a Kubernetes quantity: an optionally signed decimal number ("2", "-1", "0.5", ".5", "1.")
 * followed by at most one of a decimal SI suffix (n u m k M G T P E), a binary SI suffix
 * (Ki Mi Gi Ti Pi Ei) or a decimal exponent (e3, E-3, e+6). Numbers are accepted too, as YAML gives
 * `cpu: 2` as a number. Negative quantities parse; whether they are allowed is for the caller.
 * @throws QuantityError quoting the input.
 */
export function parseQuantity(text: string | number): Quantity {
  return Quantity.parse(text);
}

/** A CPU quantity in millicores: "250m" → 250, "0.5" → 500, 2 → 2000. */
export function cpuToMilli(q: string | number): number {
  return parseQuantity(q).milli();
}

/** A memory or storage quantity in bytes: "64Mi" → 67108864, "1G" → 1000000000. */
export function bytes(q: string | number): number {
  return parseQuantity(q).value();
}
