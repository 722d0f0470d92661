import fs from 'node:fs';
import path from 'node:path';
import { startDockerd, type TestDockerd } from './dockerd.js';
import { buildTestImages } from './images.js';
import { addNetns, addVeth, delNetnsSync, emptyNetnsSync, ip, liveWireguardGo, mustRunIn, netnsExists, NFT, removeWireguardSocket, requireLabTools, sysctl, deleteTunLinksSync } from './netns.js';
import { tempDir } from './processes.js';
import { uniqueIfname } from './wireguard.js';

// The device lab: one test's network of namespaces, all in documentation address ranges. An
// "internet" namespace holds a bridge; the hub's namespace hangs on it at 203.0.113.1, public
// devices at 203.0.113.10 and up, NAT routers' outside legs at 203.0.113.100 and up. A NAT
// router is a namespace with nftables `masquerade fully-random` on its outside leg (a symmetric
// NAT: every destination gets its own random port) and a LAN bridge on a /27 of
// 198.51.100.0/24; devices behind it route through it. A device's namespace is its harness
// dockerd's own, so its agent, its engine and its pods' bridge share it as on real hardware.
// Nothing is ever added to the host's namespace; teardown empties and removes every namespace,
// even when the test failed.

export const HUB_ADDRESS = '203.0.113.1';
const INTERNET_PREFIX = '203.0.113';
const INTERNET_BITS = 24;
const LAN_PREFIX = '198.51.100';
const LAN_BITS = 27;
const MAX_ROUTERS = 8;

export interface LabRouter {
  name: string;
  ns: string;
  publicAddress: string;
  /** The router's address on its LAN: its devices' default gateway. */
  lanAddress: string;
  /** First address of its /27 slice of 198.51.100.0/24. */
  lanBase: number;
  devices: number;
  /**
   * The NAT's public address changes, as a cellular operator's does: the old address is
   * removed (the kernel drops the mappings masqueraded to it), the new one added and the nft
   * table made again, so no old mapping keeps working.
   */
  changePublicAddress(): Promise<string>;
}

export interface LabDevice {
  /** The node name its agent joins with. */
  name: string;
  /** Its network namespace: the harness dockerd's. */
  ns: string;
  dockerd: TestDockerd;
  /** Its own address on the network it sits on (public, or the router's LAN). */
  address: string;
  router?: LabRouter;
  /** The WireGuard interface its agent is to make: unique on the machine. */
  wgIfname: string;
  wgPort: number;
  stateDir: string;
  /** Where its agent's logs go. */
  dir: string;
}

let labSequence = 0;

export class Lab {
  readonly internetNs: string;
  readonly hubNs: string;
  readonly routers: LabRouter[] = [];
  readonly devices: LabDevice[] = [];
  readonly dirs: { path: string; remove: () => void };
  private readonly ownNamespaces: string[] = [];
  private readonly ifnames: string[] = [];
  private readonly beforeTeardown: (() => Promise<void>)[] = [];
  private nextPublic = 10;
  private nextRouterPublic = 100;
  private tornDown = false;
  private readonly onExit = (): void => this.teardownSync();

  private readonly id: string;

  private constructor(readonly label: string) {
    this.id = `${process.pid}-${++labSequence}`;
    this.internetNs = `flab-${label}-net-${this.id}`;
    this.hubNs = `flab-${label}-hub-${this.id}`;
    this.dirs = tempDir(`lab-${label}`);
    // A run that ends without teardown() must not leave namespaces or daemons behind.
    process.on('exit', this.onExit);
  }

  /** The internet bridge and the hub's namespace on it; each lab has its own. */
  static async create(label: string): Promise<Lab> {
    requireLabTools();
    const lab = new Lab(label.toLowerCase().replace(/[^a-z0-9]+/g, '').slice(0, 8));
    try {
      await lab.ownNetns(lab.internetNs);
      await ip(lab.internetNs, 'link', 'add', 'br0', 'type', 'bridge');
      await ip(lab.internetNs, 'link', 'set', 'br0', 'up');
      await lab.ownNetns(lab.hubNs);
      await lab.plugIntoInternet(lab.hubNs, 'eth0', 'hub', HUB_ADDRESS);
    } catch (err) {
      await lab.teardown();
      throw err;
    }
    return lab;
  }

  private async ownNetns(ns: string): Promise<void> {
    this.ownNamespaces.push(ns);
    await addNetns(ns);
  }

  /** A veth from `ns` to the internet bridge, addressed `address`/24. */
  private async plugIntoInternet(ns: string, ifname: string, bridgePort: string, address: string): Promise<void> {
    await addVeth({ ns, name: ifname }, { ns: this.internetNs, name: bridgePort });
    await ip(this.internetNs, 'link', 'set', bridgePort, 'master', 'br0', 'up');
    await ip(ns, 'addr', 'add', `${address}/${INTERNET_BITS}`, 'dev', ifname);
    await ip(ns, 'link', 'set', ifname, 'up');
  }

  /** A unique WireGuard interface name, removed (with its socket) at teardown. */
  ifname(prefix: string): string {
    const name = uniqueIfname(prefix);
    this.ifnames.push(name);
    return name;
  }

  /** Runs before the namespaces go (hub and agent processes are stopped there). */
  onTeardown(fn: () => Promise<void>): void {
    this.beforeTeardown.push(fn);
  }

  /** A NAT router: outside leg on the internet, a LAN bridge for the devices behind it. */
  async addRouter(name: string): Promise<LabRouter> {
    if (this.routers.length >= MAX_ROUTERS) throw new Error(`a lab has at most ${MAX_ROUTERS} routers`);
    const ns = `flab-${this.label}-r${this.routers.length}-${this.id}`;
    await this.ownNetns(ns);
    const lanBase = this.routers.length * 32;
    const publicAddress = `${INTERNET_PREFIX}.${this.nextRouterPublic++}`;
    const lanAddress = `${LAN_PREFIX}.${lanBase + 1}`;
    await this.plugIntoInternet(ns, 'wan', `r${this.routers.length}`, publicAddress);
    await ip(ns, 'link', 'add', 'lan', 'type', 'bridge');
    await ip(ns, 'addr', 'add', `${lanAddress}/${LAN_BITS}`, 'dev', 'lan');
    await ip(ns, 'link', 'set', 'lan', 'up');
    await sysctl(ns, 'net.ipv4.ip_forward', '1');
    await loadNat(ns);
    const router: LabRouter = {
      name,
      ns,
      publicAddress,
      lanAddress,
      lanBase,
      devices: 0,
      changePublicAddress: async () => {
        const next = `${INTERNET_PREFIX}.${this.nextRouterPublic++}`;
        await ip(ns, 'addr', 'del', `${router.publicAddress}/${INTERNET_BITS}`, 'dev', 'wan');
        await ip(ns, 'addr', 'add', `${next}/${INTERNET_BITS}`, 'dev', 'wan');
        await loadNat(ns);
        router.publicAddress = next;
        return next;
      },
    };
    this.routers.push(router);
    return router;
  }

  /**
   * A device: a harness dockerd (with the test images) whose namespace gets a leg on the
   * internet (public) or on `router`'s LAN with a default route through it.
   */
  async addDevice(name: string, opts: { router?: LabRouter; wgPort?: number } = {}): Promise<LabDevice> {
    const dockerd = await startDockerd({ name });
    const dir = path.join(this.dirs.path, name);
    fs.mkdirSync(dir, { recursive: true });
    const device: LabDevice = { name, ns: dockerd.netns, dockerd, address: '', wgIfname: this.ifname('fwg'), wgPort: opts.wgPort ?? 51820, stateDir: path.join(dir, 'state'), dir };
    if (opts.router) device.router = opts.router;
    this.devices.push(device);
    const router = opts.router;
    if (router) {
      const index = router.devices++;
      if (index >= 20) throw new Error(`router ${router.name} has no LAN address left`);
      device.address = `${LAN_PREFIX}.${router.lanBase + 10 + index}`;
      const port = `d${index}`;
      await addVeth({ ns: device.ns, name: 'eth0' }, { ns: router.ns, name: port });
      await ip(router.ns, 'link', 'set', port, 'master', 'lan', 'up');
      await ip(device.ns, 'addr', 'add', `${device.address}/${LAN_BITS}`, 'dev', 'eth0');
      await ip(device.ns, 'link', 'set', 'eth0', 'up');
      await ip(device.ns, 'route', 'add', 'default', 'via', router.lanAddress);
    } else {
      device.address = `${INTERNET_PREFIX}.${this.nextPublic++}`;
      await this.plugIntoInternet(device.ns, 'eth0', `p${this.nextPublic}`, device.address);
    }
    await buildTestImages(dockerd.docker);
    return device;
  }

  /**
   * Stops what runs in the lab, deletes every WireGuard interface (each wireguard-go exits with
   * its own) and every namespace, and checks that nothing of the lab is left.
   */
  async teardown(): Promise<void> {
    if (this.tornDown) return;
    this.tornDown = true;
    const errors: unknown[] = [];
    for (const fn of this.beforeTeardown.reverse()) await fn().catch((err: unknown) => errors.push(err));
    for (const device of this.devices) deleteTunLinksSync(device.ns);
    for (const device of this.devices) await device.dockerd.stop().catch((err: unknown) => errors.push(err));
    this.teardownSync();
    // Nothing of the lab may outlive it: a leak would pile up over a CI run.
    const namespaces = this.leftovers().namespaces.filter(netnsExists);
    if (namespaces.length > 0) errors.push(new Error(`namespaces left: ${namespaces.join(', ')}`));
    const deadline = Date.now() + 5_000;
    while (liveWireguardGo(this.ifnames).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const daemons = liveWireguardGo(this.ifnames);
    if (daemons.length > 0) errors.push(new Error(`wireguard-go left running: pids ${daemons.join(', ')}`));
    if (!process.env.FLOTILLA_TEST_KEEP) this.dirs.remove();
    if (errors.length > 0) throw new AggregateError(errors, `lab ${this.label}: teardown failed`);
  }

  /** What can be done without awaiting: the lab's own namespaces and the interface sockets. */
  private teardownSync(): void {
    for (const device of this.devices) emptyNetnsSync(device.ns);
    for (const ns of this.ownNamespaces) {
      emptyNetnsSync(ns);
      delNetnsSync(ns);
    }
    for (const name of this.ifnames) removeWireguardSocket(name);
    process.off('exit', this.onExit);
  }

  /** The names of everything the lab made, for checking that teardown left nothing. */
  leftovers(): { namespaces: string[]; ifnames: string[] } {
    return { namespaces: [...this.ownNamespaces, ...this.devices.map((d) => d.ns)], ifnames: [...this.ifnames] };
  }
}

/**
 * (Re)loads the router's NAT: masquerade with fully random ports on the outside leg (a symmetric
 * NAT). Mappings made to an address that is then removed are dropped by the kernel itself
 * (masquerade's address notifier), so a flow that goes on after an address change gets a new
 * mapping on the new address; the lab's self-test checks exactly that.
 */
async function loadNat(ns: string): Promise<void> {
  const ruleset = [
    'table ip lab',
    'delete table ip lab',
    'table ip lab {',
    '  chain post { type nat hook postrouting priority srcnat; policy accept; oifname "wan" masquerade fully-random; }',
    '}',
  ].join('\n');
  await mustRunIn(ns, [NFT, '-f', '-'], { input: `${ruleset}\n` });
}
