import { readFile } from 'node:fs/promises';
import { CommandError, run } from '../../shared/net/exec.js';
import { listAddresses, listRoutes } from '../../shared/net/ip.js';
import { DEFAULT_TOOLS, show, type WgInterfaceState, type WireguardTools } from '../../shared/net/wireguard.js';
import type { ContainerRuntime, RuntimeContainer } from '../runtime/runtime.js';
import { NFT_TABLE, parseFirewallMarker } from './firewall.js';
import { LABEL_NETWORK, OVERLAY_NETWORK, type ObservedNetwork } from './plan.js';

interface IpLink {
  ifname: string;
  mtu?: number;
  flags?: string[];
  linkinfo?: { info_kind?: string };
}

/**
 * Reads what the data plane is now: the interface of the overlay's name (its kind, `wg show`,
 * MTU and state), every IPv4 route and address, the `ip flotilla` table's comment, the engine
 * networks the overlay made, which of them this node's containers use, and IPv4 forwarding.
 * Nothing here changes anything.
 */
export async function observeNetwork(opts: { interface: string; node: string; runtime: ContainerRuntime; containers: readonly RuntimeContainer[]; tools?: WireguardTools; nft?: string }): Promise<ObservedNetwork> {
  const tools = opts.tools ?? DEFAULT_TOOLS;
  const [links, routes, addresses, firewall, networks, forwarding] = await Promise.all([
    run(tools.ip, ['-d', '-j', 'link', 'show']).then((out) => JSON.parse(out || '[]') as IpLink[]),
    listRoutes(tools.ip),
    listAddresses(tools.ip),
    readFirewall(opts.nft ?? 'nft'),
    opts.runtime.listNetworks ? opts.runtime.listNetworks({ [LABEL_NETWORK]: OVERLAY_NETWORK, 'flotilla.node': opts.node }) : Promise.resolve([]),
    readFile('/proc/sys/net/ipv4/ip_forward', 'utf8').then((t) => t.trim() === '1', () => false),
  ]);
  const link = links.find((l) => l.ifname === opts.interface);
  let wgKind: ObservedNetwork['wgKind'];
  let wg: WgInterfaceState | undefined;
  if (link) {
    const kind = link.linkinfo?.info_kind;
    // wireguard-go's device is a tun: only one that answers on WireGuard's control socket is one.
    if (kind === 'wireguard' || kind === 'tun') wg = await show(opts.interface, tools);
    wgKind = kind === 'wireguard' ? 'kernel' : kind === 'tun' && wg ? 'wireguard-go' : 'other';
  }
  const networkUsers = new Map<string, number>();
  for (const c of opts.containers) if (c.networkMode) networkUsers.set(c.networkMode, (networkUsers.get(c.networkMode) ?? 0) + 1);
  return {
    wgKind,
    ...(wg ? { wg } : {}),
    ...(link ? { wgLink: { mtu: link.mtu ?? 0, up: (link.flags ?? []).includes('UP') } } : {}),
    routes,
    addresses,
    firewall,
    networks,
    networkUsers,
    forwarding,
  };
}

/** The `ip flotilla` table's comment; '' for a table without one; undefined when there is no table (or no nft). */
async function readFirewall(nft: string): Promise<string | undefined> {
  try {
    return parseFirewallMarker(await run(nft, ['list', 'table', 'ip', NFT_TABLE])) ?? '';
  } catch (err) {
    if (err instanceof CommandError) return undefined;
    throw err;
  }
}
