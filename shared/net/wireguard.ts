import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError, run } from './exec.js';

/**
 * A WireGuard interface driven through iproute2 and wireguard-tools: the kernel's where the
 * module exists, Debian's wireguard-go (a userspace daemon behind a tun device) otherwise. Both
 * the agent's interface and the hub's relay use this; neither keeps state of its own about the
 * interface, so a restarted process reads back what is there (level-triggered).
 */
export type WireguardImplementation = 'kernel' | 'wireguard-go';

export interface WireguardTools {
  ip: string;
  wg: string;
  wireguardGo: string;
}

export const DEFAULT_TOOLS: WireguardTools = { ip: 'ip', wg: 'wg', wireguardGo: 'wireguard-go' };

/** One peer as it is to be configured. */
export interface WgPeerConfig {
  publicKey: string;
  /** ip:port; absent: WireGuard learns it from the peer's handshake (roaming). */
  endpoint?: string;
  allowedIPs: readonly string[];
  keepaliveSeconds?: number;
}

/** One peer as the interface reports it (`wg show IFACE dump`). */
export interface WgPeerState {
  publicKey: string;
  endpoint?: string;
  allowedIPs: string[];
  /** Milliseconds since the epoch; 0 when no handshake yet. */
  latestHandshakeMs: number;
  rxBytes: number;
  txBytes: number;
  keepaliveSeconds?: number;
}

export interface WgInterfaceState {
  publicKey: string;
  listenPort: number;
  peers: WgPeerState[];
}

/** What kind an existing interface is, from `ip -d -j link show`; undefined when there is none. */
export async function interfaceKind(name: string, tools: WireguardTools = DEFAULT_TOOLS): Promise<WireguardImplementation | 'other' | undefined> {
  let out: string;
  try {
    out = await run(tools.ip, ['-d', '-j', 'link', 'show', 'dev', name]);
  } catch (err) {
    if (err instanceof CommandError && /does not exist|Cannot find device/i.test(err.stderr)) return undefined;
    throw err;
  }
  const [link] = JSON.parse(out) as { linkinfo?: { info_kind?: string } }[];
  const kind = link?.linkinfo?.info_kind;
  if (kind === 'wireguard') return 'kernel';
  // wireguard-go's device is a tun; only a tun that answers on wireguard's control socket is one.
  if (kind === 'tun') return (await show(name, tools)) ? 'wireguard-go' : 'other';
  return 'other';
}

/**
 * Makes the interface when it is missing: the kernel's module first, then wireguard-go (which
 * detaches and lives on after this process, as a kernel interface would; deleting the
 * interface ends it). An interface of the name that is not WireGuard is refused, never taken over.
 */
export async function ensureInterface(name: string, tools: WireguardTools = DEFAULT_TOOLS): Promise<{ implementation: WireguardImplementation; created: boolean }> {
  const kind = await interfaceKind(name, tools);
  if (kind === 'kernel' || kind === 'wireguard-go') return { implementation: kind, created: false };
  if (kind === 'other') throw new Error(`an interface named ${name} exists and is not a WireGuard interface: choose another name`);
  let kernelError = '';
  try {
    await run(tools.ip, ['link', 'add', 'dev', name, 'type', 'wireguard']);
    return { implementation: 'kernel', created: true };
  } catch (err) {
    kernelError = err instanceof CommandError ? err.stderr.trim() : (err as Error).message;
  }
  try {
    // Without WG_PROCESS_FOREGROUND wireguard-go forks and its first process returns once the
    // device is up. Without LOG_LEVEL the daemon keeps none of our pipes open (with it, it would
    // write to our stdout for ever, and this call would never see the pipe close).
    const env = { ...process.env };
    delete env['WG_PROCESS_FOREGROUND'];
    delete env['LOG_LEVEL'];
    // In a session of its own: the signal a terminal or a supervisor sends to the process group
    // of the hub or agent (Ctrl-C, `timeout`) must not end the daemon with it.
    await run(tools.wireguardGo, [name], { env, timeoutMs: 20_000, detached: true });
  } catch (err) {
    const why = err instanceof CommandError && err.exitCode === 'ENOENT' ? `${tools.wireguardGo} is not installed` : (err as Error).message;
    throw new Error(`cannot create WireGuard interface ${name}: the kernel has no WireGuard (${kernelError || 'refused'}) and ${why}`);
  }
  return { implementation: 'wireguard-go', created: true };
}

export async function deleteInterface(name: string, tools: WireguardTools = DEFAULT_TOOLS): Promise<void> {
  try {
    await run(tools.ip, ['link', 'del', 'dev', name]);
  } catch (err) {
    if (err instanceof CommandError && /does not exist|Cannot find device/i.test(err.stderr)) return;
    throw err;
  }
}

/** The configuration text `wg syncconf` reads: the whole interface, so that peers not listed are removed. */
export function configText(privateKey: string, listenPort: number, peers: readonly WgPeerConfig[]): string {
  const lines = ['[Interface]', `PrivateKey = ${privateKey}`, `ListenPort = ${listenPort}`];
  for (const p of peers) {
    lines.push('', '[Peer]', `PublicKey = ${p.publicKey}`);
    if (p.allowedIPs.length > 0) lines.push(`AllowedIPs = ${p.allowedIPs.join(', ')}`);
    if (p.endpoint) lines.push(`Endpoint = ${p.endpoint}`);
    if (p.keepaliveSeconds) lines.push(`PersistentKeepalive = ${p.keepaliveSeconds}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Makes the interface's key, port and peers exactly these (`wg syncconf`: peers not listed are
 * removed, the sessions of those kept are not disturbed). wg reads the configuration from a
 * file by name (Node's stdin pipes are sockets, which /dev/stdin cannot open): it is written in
 * a fresh directory only this user can read, and removed at once.
 */
export async function syncConfig(name: string, privateKey: string, listenPort: number, peers: readonly WgPeerConfig[], tools: WireguardTools = DEFAULT_TOOLS): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'flotilla-wg-'));
  try {
    const file = join(dir, `${name}.conf`);
    await writeFile(file, configText(privateKey, listenPort, peers), { mode: 0o600 });
    await run(tools.wg, ['syncconf', name, file], { timeoutMs: 60_000 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `wg show IFACE dump`, parsed; undefined when there is no such WireGuard interface. */
export async function show(name: string, tools: WireguardTools = DEFAULT_TOOLS): Promise<WgInterfaceState | undefined> {
  let out: string;
  try {
    out = await run(tools.wg, ['show', name, 'dump']);
  } catch (err) {
    if (err instanceof CommandError) return undefined;
    throw err;
  }
  return parseDump(out);
}

/**
 * The dump's first line is the interface (private key, public key, port, fwmark), each next one
 * a peer: public key, preshared key, endpoint, allowed ips, latest handshake (s), rx, tx, keepalive.
 */
export function parseDump(text: string): WgInterfaceState | undefined {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const head = lines[0]?.split('\t');
  if (!head || head.length < 3) return undefined;
  const peers: WgPeerState[] = [];
  for (const line of lines.slice(1)) {
    const f = line.split('\t');
    if (f.length < 8) continue;
    const keepalive = Number(f[7]);
    peers.push({
      publicKey: f[0]!,
      ...(f[2] && f[2] !== '(none)' ? { endpoint: f[2] } : {}),
      allowedIPs: f[3] && f[3] !== '(none)' ? f[3].split(',') : [],
      latestHandshakeMs: Number(f[4]) * 1000,
      rxBytes: Number(f[5]),
      txBytes: Number(f[6]),
      ...(Number.isFinite(keepalive) && keepalive > 0 ? { keepaliveSeconds: keepalive } : {}),
    });
  }
  return { publicKey: head[1]!, listenPort: Number(head[2]), peers };
}
