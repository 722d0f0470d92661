import path from 'node:path';
import { addNetns, addVeth, delNetnsSync, emptyNetnsSync, ip, mustRunIn, NSENTER, netnsPath, requireLabTools, sysctl } from './netns.js';
import { REPO, spawnLogged, tempDir, waitFor, type ManagedProcess } from './processes.js';

// The service proxy's lab: a device namespace whose table the proxy programs, with pods around
// it in namespaces of their own, all made here and removed at teardown. The device has a pod
// bridge (its pod CIDR, 10.42.1.0/24: a client pod and a local endpoint pod), a second bridge
// that stands for the overlay to other devices' pods (10.42.2.0/24: endpoint pods on "b"), and
// an outside leg (192.0.2.1/24) with an outside client at 192.0.2.2 for node ports.

export const DEVICE_ADDRESS = '192.0.2.1';
export const OUTSIDE_ADDRESS = '192.0.2.2';
export const POD_CIDR = '10.42.1.0/24';
export const CLUSTER_CIDR = '10.42.0.0/16';
/** The port every endpoint pod serves on, TCP and UDP: it answers with its name and the address it saw. */
export const SERVE_PORT = 8080;

export interface ProxyLabPod {
  name: string;
  ns: string;
  ip: string;
  /** The node it stands for: 'a' (the device under test) or 'b' (another, over the overlay). */
  node: string;
}

let sequence = 0;

/**
 * A TCP and UDP server on one port that answers each connection or datagram with
 * `name client-address`, and a client that makes many connections (or sends datagrams) and
 * prints what came back, one JSON line: a lab's traffic without any image or tool beyond node.
 */
const SERVER = `
const net = require('node:net');
const dgram = require('node:dgram');
const [name, port] = process.argv.slice(1);
let bound = 0;
const ready = () => { if (++bound === 2) console.log('ready'); };
net.createServer((s) => { s.end(name + ' ' + s.remoteAddress.replace('::ffff:', '')); s.on('error', () => {}); }).listen(Number(port), '0.0.0.0', ready);
const u = dgram.createSocket('udp4');
u.on('message', (m, r) => u.send(name + ' ' + r.address, r.port, r.address));
u.bind(Number(port), '0.0.0.0', ready);
process.on('SIGTERM', () => process.exit(0));
`;

const CLIENT = `
const net = require('node:net');
const dgram = require('node:dgram');
const [proto, host, port, count, timeoutMs, localPort] = process.argv.slice(1);
const one = () => new Promise((resolve) => {
  const t0 = process.hrtime.bigint();
  if (proto === 'udp') {
    const s = dgram.createSocket('udp4');
    const done = (r) => { clearTimeout(timer); s.close(); resolve(r); };
    const timer = setTimeout(() => done({ error: 'ETIMEDOUT' }), Number(timeoutMs));
    s.on('message', (m) => done({ reply: m.toString() }));
    s.on('error', (e) => done({ error: e.code }));
    s.bind(Number(localPort || 0), () => s.connect(Number(port), host, () => s.send('ping')));
    return;
  }
  const s = net.connect({ host, port: Number(port) });
  let data = '';
  let connectUs;
  const timer = setTimeout(() => { s.destroy(); resolve({ error: 'ETIMEDOUT' }); }, Number(timeoutMs));
  s.on('connect', () => { connectUs = Number(process.hrtime.bigint() - t0) / 1000; });
  s.on('data', (d) => (data += d));
  s.on('end', () => { clearTimeout(timer); resolve({ reply: data, connectUs }); });
  s.on('error', (e) => { clearTimeout(timer); resolve({ error: e.code }); });
});
(async () => {
  const out = [];
  for (let i = 0; i < Number(count); i++) out.push(await one());
  console.log(JSON.stringify(out));
})();
`;

export interface Reply {
  reply?: string;
  error?: string;
  /** Microseconds from connect() to the connection (TCP). */
  connectUs?: number;
}

export class ProxyLab {
  readonly device: string;
  readonly client: ProxyLabPod;
  readonly outside: string;
  readonly pods: ProxyLabPod[] = [];
  private readonly namespaces: string[] = [];
  private readonly servers: ManagedProcess[] = [];
  private readonly dir = tempDir('proxy-lab');
  private readonly onExit = (): void => this.teardownSync();
  private readonly id = `${process.pid}-${++sequence}`;
  private nextHost = new Map<string, number>([['a', 20], ['b', 11]]);

  private constructor() {
    this.device = `fpx-dev-${this.id}`;
    this.outside = `fpx-out-${this.id}`;
    this.client = { name: 'client', ns: `fpx-cli-${this.id}`, ip: '10.42.1.10', node: 'a' };
    process.on('exit', this.onExit);
  }

  static async create(): Promise<ProxyLab> {
    requireLabTools();
    const lab = new ProxyLab();
    try {
      await lab.build();
    } catch (err) {
      lab.teardownSync();
      throw err;
    }
    return lab;
  }

  /** The command that runs a tool inside the device's namespace (the proxy's plane is given it). */
  get deviceWrap(): string[] {
    return [NSENTER, `--net=${netnsPath(this.device)}`, '--'];
  }

  private async netns(ns: string): Promise<void> {
    this.namespaces.push(ns);
    await addNetns(ns);
  }

  private async build(): Promise<void> {
    const dev = this.device;
    await this.netns(dev);
    await sysctl(dev, 'net.ipv4.ip_forward', '1');
    for (const [br, address] of [['br-pod', '10.42.1.1/24'], ['br-far', '10.42.2.1/24']] as const) {
      await ip(dev, 'link', 'add', br, 'type', 'bridge');
      await ip(dev, 'addr', 'add', address, 'dev', br);
      await ip(dev, 'link', 'set', br, 'up');
    }
    await this.netns(this.outside);
    await addVeth({ ns: dev, name: 'eth0' }, { ns: this.outside, name: 'eth0' });
    await ip(dev, 'addr', 'add', `${DEVICE_ADDRESS}/24`, 'dev', 'eth0');
    await ip(dev, 'link', 'set', 'eth0', 'up');
    await ip(this.outside, 'addr', 'add', `${OUTSIDE_ADDRESS}/24`, 'dev', 'eth0');
    await ip(this.outside, 'link', 'set', 'eth0', 'up');
    await ip(this.outside, 'route', 'add', 'default', 'via', DEVICE_ADDRESS);
    // The device's uplink: traffic to a virtual IP with no endpoint is routed (then refused by
    // the proxy's filter chains), not dropped for want of a route.
    await ip(dev, 'route', 'add', 'default', 'via', OUTSIDE_ADDRESS);
    await this.plug(this.client);
  }

  /** A pod namespace on the device's pod bridge (node a) or on the far bridge (node b). */
  private async plug(pod: ProxyLabPod): Promise<void> {
    await this.netns(pod.ns);
    const br = pod.node === 'a' ? 'br-pod' : 'br-far';
    const port = `v${this.namespaces.length}`;
    await addVeth({ ns: pod.ns, name: 'eth0' }, { ns: this.device, name: port });
    await ip(this.device, 'link', 'set', port, 'master', br, 'up');
    await ip(pod.ns, 'addr', 'add', `${pod.ip}/24`, 'dev', 'eth0');
    await ip(pod.ns, 'link', 'set', 'eth0', 'up');
    await ip(pod.ns, 'route', 'add', 'default', 'via', pod.node === 'a' ? '10.42.1.1' : '10.42.2.1');
  }

  /** An endpoint pod serving SERVE_PORT (TCP and UDP), answering with its name. */
  async addPod(name: string, node: 'a' | 'b'): Promise<ProxyLabPod> {
    const host = this.nextHost.get(node)!;
    this.nextHost.set(node, host + 1);
    const pod: ProxyLabPod = { name, ns: `fpx-${name}-${this.id}`.slice(0, 40), ip: `${node === 'a' ? '10.42.1' : '10.42.2'}.${host}`, node };
    await this.plug(pod);
    await this.serve(pod.ns, name);
    this.pods.push(pod);
    return pod;
  }

  /** Serves SERVE_PORT in any of the lab's namespaces (the client pod too: a pod reaching itself). */
  async serve(ns: string, name: string): Promise<void> {
    const proc = spawnLogged(['-e', SERVER, name, String(SERVE_PORT)], path.join(this.dir.path, `${name}.log`), REPO, {}, undefined, [NSENTER, `--net=${netnsPath(ns)}`, '--']);
    this.servers.push(proc);
    await waitFor(`${name}'s server`, () => {
      if (proc.exitCode !== undefined) throw new Error(`${name}'s server exited: ${proc.log()}`);
      return proc.log().includes('ready');
    }, 10_000, 50);
  }

  /** `count` connections (or datagrams) from namespace `ns` to host:port, one after another. */
  request(ns: string, proto: 'tcp' | 'udp', host: string, port: number, count = 1, opts: { timeoutMs?: number; localPort?: number } = {}): Promise<Reply[]> {
    return requestFrom(ns, proto, host, port, count, opts);
  }

  async teardown(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop(2_000)));
    this.teardownSync();
  }

  private teardownSync(): void {
    for (const ns of this.namespaces.reverse()) {
      emptyNetnsSync(ns);
      delNetnsSync(ns);
    }
    this.namespaces.length = 0;
    this.dir.remove();
    process.off('exit', this.onExit);
  }
}

/** `count` TCP connections (or UDP datagrams) from namespace `ns` to host:port, one after another; what each got back. */
export async function requestFrom(ns: string, proto: 'tcp' | 'udp', host: string, port: number, count = 1, opts: { timeoutMs?: number; localPort?: number } = {}): Promise<Reply[]> {
  const out = await mustRunIn(ns, [process.execPath, '-e', CLIENT, proto, host, String(port), String(count), String(opts.timeoutMs ?? 2_000), String(opts.localPort ?? 0)], { timeoutMs: 120_000 });
  return JSON.parse(out) as Reply[];
}

/** How many replies came from each endpoint name. */
export function tally(replies: readonly Reply[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of replies) {
    const key = r.reply ? r.reply.split(' ')[0]! : `error:${r.error}`;
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}
