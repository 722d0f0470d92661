import { InvalidArgumentError, Option } from 'commander';
import { WIREGUARD_DEFAULT_PORT } from '../../shared/protocol/network.js';
import { DEFAULT_RELAY_INTERFACE, parseInterfaceName, parseRelayEndpoint, parseRelayMode, type RelayEndpoint, type RelayMode } from '../network/relay-flags.js';

// The hub's relay flags (docs/ARCHITECTURE.md, 'The relay'). commander names the flag in a
// parser's error: "option '--relay-port <port>' argument '0' is invalid. …".

export interface RelayFlags {
  relay: RelayMode;
  relayPort: number;
  relayInterface: string;
  relayEndpoint?: RelayEndpoint;
}

function parser<T>(parse: (value: string) => T): (value: string) => T {
  return (value) => {
    try {
      return parse(value);
    } catch (err) {
      throw new InvalidArgumentError(`${(err as Error).message}.`);
    }
  };
}

function udpPort(value: string): number {
  const n = Number(value);
  if (!/^\d{1,5}$/.test(value) || n < 1 || n > 65535) throw new Error('a UDP port is a whole number from 1 to 65535');
  return n;
}

export const relayModeOption = () => new Option('--relay <mode>', 'the WireGuard relay between devices: auto (on where the hub can make a WireGuard interface, else a warning), on (failing to make it stops the start) or off').default('auto').argParser(parser(parseRelayMode));
export const relayPortOption = () => new Option('--relay-port <port>', "the relay's UDP port").default(WIREGUARD_DEFAULT_PORT).argParser(parser(udpPort));
export const relayInterfaceOption = () => new Option('--relay-interface <name>', "the relay's WireGuard interface").default(DEFAULT_RELAY_INTERFACE).argParser(parser(parseInterfaceName));
export const relayEndpointOption = () => new Option('--relay-endpoint <host[:port]>', 'where devices reach the relay (default: the host of their MQTT URL, with --relay-port)').argParser(parser(parseRelayEndpoint));

/** The relay's part of the hub configuration. */
export function relayConfig(o: RelayFlags): RelayFlags {
  return { relay: o.relay, relayPort: o.relayPort, relayInterface: o.relayInterface, ...(o.relayEndpoint ? { relayEndpoint: o.relayEndpoint } : {}) };
}
