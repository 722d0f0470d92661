import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ip, mustRunIn, removeWireguardSocket, WG, WIREGUARD_GO } from './netns.js';

// WireGuard set up by hand, with the same implementation the agents use (wireguard-go): the
// lab's self-test proves the lab carries it, and the overlay benchmark measures it as the floor
// the agents' tunnels are compared with.

let counter = 0;

/**
 * A WireGuard interface name unique on the machine: wireguard-go's control socket lives in one
 * folder for every namespace. The whole pid (at most 7 digits), so that test files running at
 * the same time in different processes never share a name. At most 15 characters, as the
 * kernel allows.
 */
export function uniqueIfname(prefix: string): string {
  const name = `${prefix}${process.pid}x${++counter}`;
  if (name.length > 15) throw new Error(`interface name ${name} is longer than 15 characters`);
  return name;
}

export function genKeyPair(): { privateKey: string; publicKey: string } {
  const privateKey = execFileSync(WG, ['genkey'], { encoding: 'utf8' }).trim();
  const publicKey = execFileSync(WG, ['pubkey'], { input: `${privateKey}\n`, encoding: 'utf8' }).trim();
  return { privateKey, publicKey };
}

export interface TunnelEnd {
  ns: string;
  /** This end's underlay address (where the other end sends its packets). */
  underlay: string;
  /** This end's address inside the tunnel. */
  address: string;
}

export interface HandTunnel {
  a: TunnelEnd & { ifname: string };
  b: TunnelEnd & { ifname: string };
  /** Deletes both interfaces (each wireguard-go exits with its interface) and their sockets. */
  remove(): Promise<void>;
}

/**
 * Starts wireguard-go in `ns` for a new interface and configures it. `wg` reads the private key
 * from a file (stdin is a socket here, which it cannot open): a 0600 file, removed at once.
 */
async function bringUp(end: TunnelEnd, ifname: string, port: number, privateKey: string, peer: { publicKey: string; endpoint: string; allowed: string }, mtu: number): Promise<void> {
  await mustRunIn(end.ns, [WIREGUARD_GO, ifname], { timeoutMs: 10_000 });
  const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flt-wgkey-'));
  const keyFile = path.join(keyDir, 'private');
  fs.writeFileSync(keyFile, `${privateKey}\n`, { mode: 0o600 });
  try {
    await mustRunIn(end.ns, [WG, 'set', ifname, 'listen-port', String(port), 'private-key', keyFile, 'peer', peer.publicKey, 'endpoint', peer.endpoint, 'allowed-ips', peer.allowed, 'persistent-keepalive', '25']);
  } finally {
    fs.rmSync(keyDir, { recursive: true, force: true });
  }
  await ip(end.ns, 'addr', 'add', `${end.address}/32`, 'dev', ifname);
  await ip(end.ns, 'link', 'set', ifname, 'mtu', String(mtu), 'up');
  await ip(end.ns, 'route', 'add', `${peer.allowed}`, 'dev', ifname);
}

/** A point-to-point WireGuard tunnel between two namespaces, configured by hand. */
export async function handTunnel(a: TunnelEnd, b: TunnelEnd, opts: { port?: number; mtu?: number } = {}): Promise<HandTunnel> {
  const port = opts.port ?? 51999;
  const mtu = opts.mtu ?? 1420;
  const keysA = genKeyPair();
  const keysB = genKeyPair();
  const ifA = uniqueIfname('hwa');
  const ifB = uniqueIfname('hwb');
  const remove = async (): Promise<void> => {
    for (const [ns, ifname] of [[a.ns, ifA], [b.ns, ifB]] as const) {
      await ip(ns, 'link', 'del', ifname).catch(() => undefined);
      removeWireguardSocket(ifname);
    }
  };
  try {
    await bringUp(a, ifA, port, keysA.privateKey, { publicKey: keysB.publicKey, endpoint: `${b.underlay}:${port}`, allowed: `${b.address}/32` }, mtu);
    await bringUp(b, ifB, port, keysB.privateKey, { publicKey: keysA.publicKey, endpoint: `${a.underlay}:${port}`, allowed: `${a.address}/32` }, mtu);
  } catch (err) {
    await remove();
    throw err;
  }
  return { a: { ...a, ifname: ifA }, b: { ...b, ifname: ifB }, remove };
}
