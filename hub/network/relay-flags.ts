import { parseIPv4 } from '../../shared/net/cidr.js';
/**
 * The relay's flags as the hub's command line takes them (docs/ARCHITECTURE.md, 'The relay'):
 * each parser returns the value or throws a message that the caller puts after the flag's name.
 */
export const RELAY_MODES = ['auto', 'on', 'off'] as const;
export type RelayMode = (typeof RELAY_MODES)[number];

export const DEFAULT_RELAY_INTERFACE = 'flotilla-relay';

/** Where devices reach the relay, as --relay-endpoint gives it; `port` absent means the relay's own port. */
export interface RelayEndpoint {
  host: string;
  port?: number;
}

export function parseRelayMode(value: string): RelayMode {
  if (!(RELAY_MODES as readonly string[]).includes(value)) throw new Error(`must be auto, on or off, not '${value}'`);
  return value as RelayMode;
}

/**
 * A Linux interface name: 1 to 15 bytes (IFNAMSIZ less its NUL), no '/', ':' or white space,
 * not '.' or '..' (the kernel's dev_valid_name), and, since it names a wireguard-go control
 * socket and an `ip` argument, nothing but letters, digits and '-', '_', '.'.
 */
export function parseInterfaceName(value: string): string {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(value) || value === '.' || value === '..') throw new Error(`'${value}' is not an interface name (1 to 15 letters, digits, '-', '_' or '.')`);
  return value;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** HOST or HOST:PORT, HOST an IPv4 address or a DNS name ([IPv6] is refused: the overlay is IPv4). */
export function parseRelayEndpoint(value: string): RelayEndpoint {
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(value);
  if (!m || !HOSTNAME.test(m[1]!)) throw new Error(`'${value}' is not HOST or HOST:PORT (an IPv4 address or a DNS name)`);
  // Digits and dots read as a DNS name too: 300.1.1.1 or 10.0.0 would reach no one.
  if (/^[\d.]+$/.test(m[1]!) && parseIPv4(m[1]!) === undefined) throw new Error(`'${value}': '${m[1]}' is not an IPv4 address`);
  if (m[2] === undefined) return { host: m[1]! };
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new Error(`'${value}': the port must be 1 to 65535`);
  return { host: m[1]!, port };
}
