import path from 'node:path';
import { BUSYBOX, NSENTER, netnsPath, mustRunIn } from './netns.js';
import { REPO, spawnLogged, waitFor, type ManagedProcess } from './processes.js';

// What address and port a packet arrives from, as the receiver sees it: how the lab proves its
// NAT routers translate (and translate symmetrically). A listener prints one JSON line per
// datagram; a sender sends from one fixed local port to several destinations.

export interface Observed {
  port: number;
  from: string;
  fromPort: number;
  body: string;
}

const LISTENER = `
const dgram = require('node:dgram');
for (const port of process.argv.slice(1).map(Number)) {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => console.log(JSON.stringify({ port, from: r.address, fromPort: r.port, body: m.toString() })));
  s.bind(port, () => console.log(JSON.stringify({ bound: port })));
}
process.on('SIGTERM', () => process.exit(0));
`;

const SENDER = `
const dgram = require('node:dgram');
const [localPort, body, ...targets] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
s.bind(Number(localPort), async () => {
  for (const t of targets) {
    const [host, port] = t.split(':');
    await new Promise((r) => s.send(body, Number(port), host, r));
  }
  s.close();
});
`;

export interface UdpListener {
  process: ManagedProcess;
  seen(): Observed[];
}

/** Listens on `ports` in namespace `ns` until the process is stopped. */
export async function listenUdp(ns: string, ports: number[], logDir: string): Promise<UdpListener> {
  const proc = spawnLogged(['-e', LISTENER, ...ports.map(String)], path.join(logDir, `udp-${ns}-${Date.now()}.log`), REPO, {}, undefined, [NSENTER, `--net=${netnsPath(ns)}`, '--']);
  const lines = (): Record<string, unknown>[] => proc.log().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  await waitFor('the UDP listener', () => {
    if (proc.exitCode !== undefined) throw new Error(`UDP listener exited: ${proc.log()}`);
    return lines().filter((l) => 'bound' in l).length === ports.length;
  }, 10_000, 50);
  return { process: proc, seen: () => lines().filter((l) => 'from' in l) as unknown as Observed[] };
}

/** Sends `body` from local port `localPort` in `ns` to every `host:port` target, one socket for all. */
export async function sendUdp(ns: string, localPort: number, body: string, targets: string[]): Promise<void> {
  await mustRunIn(ns, [process.execPath, '-e', SENDER, String(localPort), body, ...targets]);
}

/** One ping from `ns` to `address`; true when it was answered. */
export async function pingOnce(ns: string, address: string, timeoutSeconds = 2): Promise<boolean> {
  try {
    await mustRunIn(ns, [BUSYBOX, 'ping', '-c', '1', '-W', String(timeoutSeconds), address], { timeoutMs: (timeoutSeconds + 3) * 1000 });
    return true;
  } catch {
    return false;
  }
}
