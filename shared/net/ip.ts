import { CommandError, run } from './exec.js';

/**
 * The few iproute2 calls the pod network needs, with JSON output (`ip -j`). Routes this project
 * makes carry protocol number OWN_ROUTE_PROTOCOL, so it can find, keep and remove exactly its
 * own and never another's.
 */
export const OWN_ROUTE_PROTOCOL = 241;

export interface IpRoute {
  dst: string;
  dev?: string;
  gateway?: string;
  protocol?: string;
  prefsrc?: string;
  table?: string;
  type?: string;
}

export interface IpAddress {
  ifname: string;
  local: string;
  prefixlen: number;
}

/** Every IPv4 route of every table. `default` comes back as 0.0.0.0/0; a host route gets /32. */
export async function listRoutes(ip = 'ip'): Promise<IpRoute[]> {
  const routes = JSON.parse((await run(ip, ['-4', '-j', 'route', 'show', 'table', 'all'])) || '[]') as IpRoute[];
  return routes.map((r) => ({ ...r, dst: r.dst === 'default' ? '0.0.0.0/0' : r.dst.includes('/') ? r.dst : `${r.dst}/32` }));
}

/** Every IPv4 address of every interface. */
export async function listAddresses(ip = 'ip'): Promise<IpAddress[]> {
  const links = JSON.parse((await run(ip, ['-4', '-j', 'addr', 'show'])) || '[]') as { ifname: string; addr_info?: { local: string; prefixlen: number; family?: string }[] }[];
  return links.flatMap((l) => (l.addr_info ?? []).filter((a) => a.family === undefined || a.family === 'inet').map((a) => ({ ifname: l.ifname, local: a.local, prefixlen: a.prefixlen })));
}

/** True when the route is this project's (its protocol number, as ip prints it: a number or a name from rt_protos). */
export function isOwnRoute(r: IpRoute): boolean {
  return r.protocol === String(OWN_ROUTE_PROTOCOL);
}

export async function linkExists(name: string, ip = 'ip'): Promise<boolean> {
  try {
    await run(ip, ['link', 'show', 'dev', name]);
    return true;
  } catch (err) {
    if (err instanceof CommandError) return false;
    throw err;
  }
}

export async function setLinkUp(name: string, mtu: number, ip = 'ip'): Promise<void> {
  await run(ip, ['link', 'set', 'dev', name, 'mtu', String(mtu), 'up']);
}

/** Adds or changes a route of ours: `dst` through `dev`, with `src` as the source address chosen for this host's own packets. */
export async function replaceRoute(dst: string, dev: string, src?: string, ip = 'ip'): Promise<void> {
  await run(ip, ['route', 'replace', dst, 'dev', dev, ...(src ? ['src', src] : []), 'proto', String(OWN_ROUTE_PROTOCOL)]);
}

export async function deleteRoute(dst: string, dev: string | undefined, ip = 'ip'): Promise<void> {
  try {
    await run(ip, ['route', 'del', dst, ...(dev ? ['dev', dev] : []), 'proto', String(OWN_ROUTE_PROTOCOL)]);
  } catch (err) {
    if (err instanceof CommandError && /No such process|Cannot find device/i.test(err.stderr)) return;
    throw err;
  }
}

/** Turns IPv4 forwarding on in this network namespace (what a router of pod traffic needs). */
export async function enableForwarding(): Promise<void> {
  const { readFile, writeFile } = await import('node:fs/promises');
  if ((await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim() !== '1') await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
}
