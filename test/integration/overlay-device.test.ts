import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { engineContainers, type EngineContainer } from '../harness/fleet.js';
import { TEST_IMAGE, buildTestImages } from '../harness/images.js';
import { startAgent, stopAll, tempDir, waitFor, type ManagedProcess, type RunningHub } from '../harness/processes.js';
import { publicKeyOf } from '../../shared/net/keys.js';

// The device's side of the overlay (docs/ARCHITECTURE.md, 'The pod network'), on one device: a
// network namespace with its own dockerd, and the agent inside it. The desired set, with its
// `network`, is on the device's disk, as it is after the hub went away: the agent builds the
// data plane from it alone (the hub's allocation is tested on the hub's side). Every check reads
// the namespace itself: the interface, the engine's network, the routes, the nft table.

const execFileP = promisify(execFile);
const IP = '/usr/sbin/ip';
const NODE = 'edge';
const IFACE = `fltt${process.pid % 1_000_000}`;
const POD_CIDR = '10.42.3.0/24';
const CLUSTER_CIDR = '10.42.0.0/16';
const PORT = 51899;
const NETWORK = 'flotilla-10.42.3.0-24';
const dirs = tempDir('overlay');
const stateDir = join(dirs.path, 'state');
let dockerd: TestDockerd;
let agent: ManagedProcess;

// The agent never reaches this hub: it runs from its disk. A port in the namespace nothing listens on.
const NO_HUB = { process: undefined, dataDir: '', apiPort: 0, mqttPort: 1, apiUrl: '', mqttUrl: 'mqtt://127.0.0.1:1', adminToken: '', joinToken: 'unused' } as unknown as RunningHub;

function runAgent(overlay: 'wireguard' | 'none' = 'wireguard', env: Record<string, string> = {}): ManagedProcess {
  return startAgent({ hub: NO_HUB, hubUrl: NO_HUB.mqttUrl, name: NODE, stateDir, dockerHost: dockerd.dockerHost, netns: dockerd.netns, env, extraArgs: ['--overlay', overlay, '--wireguard-interface', IFACE, '--wireguard-port', String(PORT)] });
}

/** A PATH with the network tools but no wireguard-go: on this kernel (no WireGuard module) the device cannot make the interface. */
function pathWithoutWireguardGo(): string {
  const bin = join(dirs.path, 'bin');
  mkdirSync(bin, { recursive: true });
  for (const tool of ['/usr/sbin/ip', '/usr/bin/wg', '/usr/sbin/nft']) symlinkSync(tool, join(bin, tool.split('/').pop()!));
  return bin;
}

/** Runs a command inside the device's namespace. */
async function inDevice(cmd: string, ...args: string[]): Promise<string> {
  return (await execFileP(IP, ['netns', 'exec', dockerd.netns, cmd, ...args])).stdout;
}
async function inDeviceOrEmpty(cmd: string, ...args: string[]): Promise<string> {
  return inDevice(cmd, ...args).catch(() => '');
}

/** Credentials and a desired set on disk, as a device that joined and then lost its hub has them. */
function seedState(podCIDR = POD_CIDR, rev = 7): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const desired = {
    v: 1,
    rev,
    pods: [{ uid: 'uid-web', name: 'web', namespace: 'default', spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'app', image: TEST_IMAGE, command: ['sleep', '3600'] }] } }],
    configs: [],
    secrets: [],
    network: { podCIDR, clusterCIDR: CLUSTER_CIDR },
  };
  const credentials = { hub: NO_HUB.mqttUrl, node: NODE, username: `node:${NODE}`, password: 'unused' };
  for (const [name, value] of [['credentials.json', credentials], ['desired.json', desired], ['desired-revision.json', { rev }]] as const) {
    for (const file of [name, `${name}.bak`]) writeFileSync(join(stateDir, file), JSON.stringify(value), { mode: 0o600 });
  }
}

interface LinkJson {
  ifname: string;
  mtu: number;
  flags: string[];
}
async function link(name: string): Promise<LinkJson | undefined> {
  const out = await inDeviceOrEmpty(IP, '-j', 'link', 'show', 'dev', name);
  return out ? (JSON.parse(out) as LinkJson[])[0] : undefined;
}
async function ownRoutes(): Promise<{ dst: string; dev: string; prefsrc?: string }[]> {
  return JSON.parse((await inDevice(IP, '-4', '-j', 'route', 'show', 'table', 'all', 'proto', '241')) || '[]') as { dst: string; dev: string; prefsrc?: string }[];
}
async function overlayNetworks(): Promise<string[]> {
  return (await dockerd.docker.listNetworks({ filters: { label: ['flotilla.network=overlay'] } })).map((n) => n.Name);
}
async function infra(): Promise<EngineContainer | undefined> {
  return (await engineContainers(dockerd.docker, { 'flotilla.node': NODE, 'flotilla.container': 'POD' })).find((c) => c.state === 'running');
}
async function podIP(id: string, network: string): Promise<string | undefined> {
  return (await dockerd.docker.getContainer(id).inspect()).NetworkSettings.Networks[network]?.IPAddress || undefined;
}
/** Log lines of the agent's with this message. */
function logLines(proc: ManagedProcess, msg: string): Record<string, unknown>[] {
  return proc.log().split('\n').filter((l) => l.includes(`"msg":${JSON.stringify(msg)}`)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Ends a wireguard-go left behind by a failed test, by pid, found by this test's interface name. */
function killStrayDaemon(): void {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (cmdline[0]?.endsWith('wireguard-go') && cmdline.includes(IFACE)) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'overlay' });
  await buildTestImages(dockerd.docker);
  seedState();
}, 120_000);

afterAll(async () => {
  await stopAll();
  // The interface first: it ends wireguard-go, which would keep the namespace alive.
  if (dockerd) await inDeviceOrEmpty(IP, 'link', 'del', 'dev', IFACE);
  killStrayDaemon();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('a device with the overlay on', () => {
  it('reports that it cannot make the interface, makes no pod, and tries again only after a back-off', async () => {
    const kernelHasWireguard = await inDevice(IP, 'link', 'add', 'dev', `${IFACE}k`, 'type', 'wireguard').then(() => true, () => false);
    if (kernelHasWireguard) await inDevice(IP, 'link', 'del', 'dev', `${IFACE}k`);
    // Only meaningful where the kernel cannot make it either; the harness machines have no module.
    expect(kernelHasWireguard).toBe(false);
    agent = runAgent('wireguard', { PATH: pathWithoutWireguardGo() });
    const line = await waitFor('the failure reported', () => logLines(agent, 'pod network not ready').find((l) => l.reason === 'WireGuardUnavailable'), 60_000, 250);
    expect(line.message).toContain('wireguard-go is not installed');
    // Resyncs come every 10 s; attempts wait 10 s, then 20 s…: in 14 s, at most two.
    await new Promise((r) => setTimeout(r, 14_000));
    expect(logLines(agent, 'reconciled').length).toBeGreaterThanOrEqual(2);
    const attempts = logLines(agent, 'network step failed').filter((l) => l.action === 'createInterface').length;
    expect(attempts).toBeGreaterThanOrEqual(1);
    expect(attempts).toBeLessThanOrEqual(2);
    expect(await infra()).toBeUndefined();
    expect(await link(IFACE)).toBeUndefined();
    await agent.stop();
    agent = runAgent();
  });

  it('makes the WireGuard interface with the key from its state directory, its port and MTU 1420', async () => {
    // Made, then configured: wait for its key, not only for the interface.
    const dump = await waitFor('the interface with its key', async () => {
      const out = await inDevice('wg', 'show', IFACE, 'dump').catch(() => '');
      return out && !out.startsWith('(none)') ? out : undefined;
    }, 60_000, 250);
    const key = readFileSync(join(stateDir, 'wireguard.key'), 'utf8').trim();
    const [privateKey, publicKey, port] = dump.split('\n')[0]!.split('\t');
    expect(privateKey).toBe(key);
    expect(publicKey).toBe(publicKeyOf(key));
    expect(Number(port)).toBe(PORT);
    await waitFor('the link up with MTU 1420', async () => {
      const l = await link(IFACE);
      return l?.mtu === 1420 && l.flags.includes('UP');
    }, 30_000, 250);
  });

  it('puts the pod on an engine network of the pod CIDR with MTU 1420, and routes the cluster CIDR through the tunnel', async () => {
    const sandbox = await waitFor('the pod sandbox running', () => infra(), 60_000, 250);
    const network = await dockerd.docker.getNetwork(NETWORK).inspect();
    expect(network.IPAM?.Config?.[0]).toMatchObject({ Subnet: POD_CIDR, Gateway: '10.42.3.1' });
    expect(network.Options?.['com.docker.network.driver.mtu']).toBe('1420');
    expect(network.Labels).toMatchObject({ 'flotilla.network': 'overlay', 'flotilla.node': NODE });
    expect(await podIP(sandbox.id, NETWORK)).toMatch(/^10\.42\.3\.\d+$/);
    const routes = await waitFor('the cluster route', async () => ((await ownRoutes()).length > 0 ? ownRoutes() : undefined), 30_000, 250);
    expect(routes).toEqual([expect.objectContaining({ dst: CLUSTER_CIDR, dev: IFACE, prefsrc: '10.42.3.1' })]);
    const table = await inDevice('nft', 'list', 'table', 'ip', 'flotilla');
    expect(table).toContain(`ip saddr ${POD_CIDR} ip daddr != ${CLUSTER_CIDR} masquerade`);
    expect((await inDevice('cat', '/proc/sys/net/ipv4/ip_forward')).trim()).toBe('1');
  });

  it('a restarted agent finds everything in place: no network step, no pod restarted', async () => {
    const before = await infra();
    await agent.stop();
    agent = runAgent();
    await waitFor('the pod network ready after the restart', () => logLines(agent, 'pod network ready').length > 0, 60_000, 250);
    // A few more passes (each resync is one).
    await waitFor('a reconcile', () => logLines(agent, 'reconciled').length >= 2, 60_000, 250);
    expect(logLines(agent, 'network step')).toEqual([]);
    expect((await infra())?.id).toBe(before!.id);
  });

  it('rebuilds the interface and its route after they are gone (a reboot), leaving the pod running', async () => {
    const before = await infra();
    await inDevice(IP, 'link', 'del', 'dev', IFACE);
    await waitFor('the interface made again', async () => (await link(IFACE))?.mtu === 1420 && (await ownRoutes()).some((r) => r.dst === CLUSTER_CIDR), 60_000, 250);
    expect(logLines(agent, 'network step').map((l) => l.action)).toEqual(expect.arrayContaining(['createInterface', 'configureInterface', 'linkUp', 'replaceRoute']));
    expect((await infra())?.id).toBe(before!.id);
  });

  it('moves to a new pod CIDR: a new network, the pod moved onto it, the route and table follow, the old network goes', async () => {
    const before = await infra();
    await agent.stop();
    seedState('10.42.4.0/24', 8);
    agent = runAgent();
    const moved = await waitFor('the pod on the new network', async () => {
      const sandbox = await infra();
      return sandbox && (await podIP(sandbox.id, 'flotilla-10.42.4.0-24'))?.startsWith('10.42.4.') ? sandbox : undefined;
    }, 60_000, 250);
    await waitFor('the old network gone', async () => !(await overlayNetworks()).includes(NETWORK), 30_000, 250);
    expect(await ownRoutes()).toEqual([expect.objectContaining({ dst: CLUSTER_CIDR, dev: IFACE, prefsrc: '10.42.4.1' })]);
    expect(await inDevice('nft', 'list', 'table', 'ip', 'flotilla')).toContain('ip saddr 10.42.4.0/24 ip daddr != 10.42.0.0/16 masquerade');
    // The sandbox was made anew, as the kubelet recreates a sandbox whose network changed.
    expect(moved.id).not.toBe(before!.id);
  });

  it('reports a route of the device that overlaps the cluster CIDR as NetworkUnavailable, naming it, and restarts no pod', async () => {
    const before = await infra();
    await inDevice(IP, 'route', 'add', '10.0.0.0/8', 'dev', 'lo');
    try {
      const line = await waitFor('the conflict reported', () => logLines(agent, 'pod network not ready').find((l) => l.reason === 'CIDRConflict'), 60_000, 250);
      expect(line.message).toContain('route 10.0.0.0/8 dev lo');
      // What was built stays; the pod runs on.
      expect((await infra())?.id).toBe(before!.id);
      expect(await link(IFACE)).toBeDefined();
    } finally {
      await inDevice(IP, 'route', 'del', '10.0.0.0/8', 'dev', 'lo');
    }
    const readyAgain = logLines(agent, 'pod network ready').length;
    await waitFor('ready again once the route is gone', () => logLines(agent, 'pod network ready').length > readyAgain, 60_000, 250);
    expect((await infra())?.id).toBe(before!.id);
  });

  it('with --overlay none, removes everything of the overlay and moves the pod to the local bridge', async () => {
    await agent.stop();
    agent = runAgent('none');
    await waitFor('the pod moved to the local bridge', async () => {
      const sandbox = await infra();
      return sandbox && (await podIP(sandbox.id, 'flotilla'))?.startsWith('10.88.');
    }, 60_000, 250);
    await waitFor('nothing of the overlay left', async () => (await overlayNetworks()).length === 0 && !(await link(IFACE)), 60_000, 250);
    expect(await ownRoutes()).toEqual([]);
    expect(await inDeviceOrEmpty('nft', 'list', 'table', 'ip', 'flotilla')).toBe('');
    expect((await inDevice(IP, '-j', 'link', 'show')).includes(IFACE)).toBe(false);
  });
});
