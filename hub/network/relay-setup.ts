import { readFile } from 'node:fs/promises';
import { CommandError, isMissingCommand, run } from '../../shared/net/exec.js';
import { deleteRoute, enableForwarding, listRoutes, replaceRoute, setLinkUp } from '../../shared/net/ip.js';
import { deleteInterface, ensureInterface, interfaceKind, type WireguardImplementation, type WireguardTools } from '../../shared/net/wireguard.js';
import { OVERLAY_MTU } from '../../shared/protocol/network.js';
import { planRoutes } from './relay-plan.js';

// The relay's interface, route and forwarding on the hub host: made, or checked and repaired
// (the interface outlives the hub, so a start usually finds it in place).

/** What keeps the hub from making its relay: the message says what is missing. */
export class RelayUnavailable extends Error {
  override readonly name = 'RelayUnavailable';
}

const CAP_NET_ADMIN = 12;

/** Whether this process may make interfaces and routes (CAP_NET_ADMIN in its effective set). */
export async function hasNetAdmin(): Promise<boolean> {
  const status = await readFile('/proc/self/status', 'utf8');
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return hex !== undefined && (BigInt(`0x${hex}`) & (1n << BigInt(CAP_NET_ADMIN))) !== 0n;
}

/**
 * Makes the relay's interface (kernel WireGuard, else wireguard-go), sets it up with the
 * overlay's MTU, routes the cluster CIDR through it and turns IPv4 forwarding on: the relay
 * forwards between devices, packets in and out of the same interface. An interface this call
 * made is removed again when a later step fails, so a failed start leaves nothing behind.
 */
export async function bringUpRelay(iface: string, clusterCIDR: string, tools: WireguardTools): Promise<{ implementation: WireguardImplementation; created: boolean }> {
  if (!(await hasNetAdmin())) throw new RelayUnavailable('the hub lacks CAP_NET_ADMIN (run it as root, or grant it the capability)');
  try {
    await run(tools.wg, ['--version']);
  } catch (err) {
    throw new RelayUnavailable(isMissingCommand(err) ? `${tools.wg} is not installed (Debian: wireguard-tools)` : `${tools.wg} does not run: ${(err as Error).message}`);
  }
  let made: { implementation: WireguardImplementation; created: boolean };
  try {
    made = await ensureInterface(iface, tools);
  } catch (err) {
    throw new RelayUnavailable(isMissingCommand(err) ? `${tools.ip} is not installed (Debian: iproute2)` : (err as Error).message);
  }
  try {
    await setLinkUp(iface, OVERLAY_MTU, tools.ip);
    const routes = planRoutes(await listRoutes(tools.ip), iface, clusterCIDR);
    if (routes.conflict) throw new Error(`this host already routes the cluster CIDR ${clusterCIDR}${routes.conflict.dev ? ` through ${routes.conflict.dev}` : ''}: choose another --cluster-cidr, or remove that route`);
    for (const dst of routes.remove) await deleteRoute(dst, iface, tools.ip);
    if (routes.replace) await replaceRoute(clusterCIDR, iface, undefined, tools.ip);
    await enableForwarding().catch((err: unknown) => {
      throw new Error(`cannot turn IPv4 forwarding on (/proc/sys/net/ipv4/ip_forward): ${(err as Error).message}`);
    });
  } catch (err) {
    if (made.created) await deleteInterface(iface, tools).catch(() => undefined);
    throw err;
  }
  return made;
}

/**
 * With --relay off: removes the relay interface an earlier run left (and so its route and, for
 * wireguard-go, its daemon). Only a WireGuard interface of that name is removed; anything
 * else of the name is not the relay's. Returns what was removed, if anything.
 */
export async function removeRelay(iface: string, tools: WireguardTools): Promise<WireguardImplementation | undefined> {
  let kind: Awaited<ReturnType<typeof interfaceKind>>;
  try {
    kind = await interfaceKind(iface, tools);
  } catch (err) {
    // Without iproute2 or the right to look there is nothing the hub could have made.
    if (isMissingCommand(err) || err instanceof CommandError) return undefined;
    throw err;
  }
  if (kind !== 'kernel' && kind !== 'wireguard-go') return undefined;
  await deleteInterface(iface, tools);
  return kind;
}
