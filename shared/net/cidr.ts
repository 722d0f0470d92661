/**
 * IPv4 CIDR arithmetic for the pod network: the hub carves node blocks out of the cluster CIDR,
 * and a device checks a block against the routes and addresses it already has. IPv4 only, as
 * the overlay is (docs/ARCHITECTURE.md, 'The pod network').
 */
export interface Cidr {
  /** The network address as an unsigned 32-bit number (host bits cleared). */
  base: number;
  /** Prefix length, 0–32. */
  bits: number;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** An IPv4 address as an unsigned 32-bit number; undefined when `text` is not one. */
export function parseIPv4(text: string): number | undefined {
  const m = IPV4.exec(text);
  if (!m) return undefined;
  const octets = m.slice(1).map(Number);
  if (octets.some((o, i) => o > 255 || (m[i + 1]!.length > 1 && m[i + 1]!.startsWith('0')))) return undefined;
  return ((octets[0]! << 24) >>> 0) + (octets[1]! << 16) + (octets[2]! << 8) + octets[3]!;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function mask(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

/**
 * Parses `a.b.c.d/n`. With `strict` (the default) host bits must be zero, as Kubernetes'
 * --cluster-cidr requires; otherwise they are cleared (an interface address such as 10.0.0.5/24).
 */
export function parseCidr(text: string, strict = true): Cidr | { error: string } {
  const slash = text.indexOf('/');
  if (slash < 0) return { error: `'${text}' is not a CIDR (a.b.c.d/n)` };
  const ip = parseIPv4(text.slice(0, slash));
  const bitsText = text.slice(slash + 1);
  if (ip === undefined) return { error: `'${text}': '${text.slice(0, slash)}' is not an IPv4 address` };
  if (!/^\d{1,2}$/.test(bitsText) || Number(bitsText) > 32) return { error: `'${text}': the prefix length must be 0 to 32` };
  const bits = Number(bitsText);
  const base = (ip & mask(bits)) >>> 0;
  if (strict && base !== ip) return { error: `'${text}' has host bits set: the network is ${formatIPv4(base)}/${bits}` };
  return { base, bits };
}

/** parseCidr that throws: for values this side made itself. */
export function cidr(text: string): Cidr {
  const parsed = parseCidr(text, false);
  if ('error' in parsed) throw new Error(parsed.error);
  return parsed;
}

export function formatCidr(c: Cidr): string {
  return `${formatIPv4(c.base)}/${c.bits}`;
}

/** The number of addresses in the block. */
export function size(c: Cidr): number {
  return 2 ** (32 - c.bits);
}

export function last(c: Cidr): number {
  return c.base + size(c) - 1;
}

export function containsAddress(c: Cidr, ip: number): boolean {
  return ((ip & mask(c.bits)) >>> 0) === c.base;
}

/** True when every address of `inner` lies in `outer`. */
export function containsCidr(outer: Cidr, inner: Cidr): boolean {
  return inner.bits >= outer.bits && containsAddress(outer, inner.base);
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return containsAddress(a, b.base) || containsAddress(b, a.base);
}

/** How many blocks of `/bits` the CIDR holds; 0 when `bits` is shorter than its own prefix. */
export function subnetCount(c: Cidr, bits: number): number {
  return bits < c.bits || bits > 32 ? 0 : 2 ** (bits - c.bits);
}

/** The `index`-th block of `/bits` inside `c` (0-based). */
export function subnet(c: Cidr, bits: number, index: number): Cidr {
  return { base: c.base + index * 2 ** (32 - bits), bits };
}

/** The position of `inner` among the `/inner.bits` blocks of `outer`; undefined when it is not one of them. */
export function subnetIndex(outer: Cidr, inner: Cidr): number | undefined {
  if (!containsCidr(outer, inner)) return undefined;
  return (inner.base - outer.base) / size(inner);
}

/** The block's n-th address (1: the first host, a bridge's gateway). */
export function nthAddress(c: Cidr, n: number): string {
  return formatIPv4(c.base + n);
}
