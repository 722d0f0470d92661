import { publicKeyOf } from '../../shared/net/keys.js';
import { OWN_ROUTE_PROTOCOL, type IpRoute } from '../../shared/net/ip.js';
import type { WgInterfaceState } from '../../shared/net/wireguard.js';
import type { NetPlane } from '../../agent/network/plane.js';
import type { PolicyPlane } from '../../agent/network/policy/enforcer.js';
import { POLICY_TABLE } from '../../agent/network/policy/nft.js';
import { parseFirewallMarker } from '../../agent/network/firewall.js';
import type { NetStep, ObservedNetwork } from '../../agent/network/plan.js';
import type { RuntimeNetwork } from '../../agent/runtime/runtime.js';
import type { MemoryRuntime } from './memory-runtime.js';

/**
 * A hollow device's network: the overlay's steps applied to a picture held in memory, as
 * memory-runtime.ts does for containers. The agent's overlay (key, peer book, path selector,
 * planner, report) runs as on a device; only the kernel's side is not there. Peers never
 * handshake, so every peer stays on trial: the bench measures the control plane, not tunnels.
 */
export class MemoryNetPlane implements NetPlane {
  private wg: WgInterfaceState | undefined;
  private link: { mtu: number; up: boolean } | undefined;
  private routes: IpRoute[] = [];
  private firewall: string | undefined;
  private readonly networks: RuntimeNetwork[] = [];
  private forwarding = false;
  /** Network policy on a hollow device: the agent's enforcer runs as on a device; its scripts are counted, not run. */
  readonly policy = new MemoryPolicyPlane();

  constructor(
    private readonly runtime: MemoryRuntime,
    private readonly address: string,
  ) {}

  observe(opts: Parameters<NetPlane['observe']>[0]): Promise<ObservedNetwork> {
    const networkUsers = new Map<string, number>();
    for (const c of opts.containers) if (c.networkMode) networkUsers.set(c.networkMode, (networkUsers.get(c.networkMode) ?? 0) + 1);
    return Promise.resolve({
      wgKind: this.wg ? 'wireguard-go' : undefined,
      ...(this.wg ? { wg: { ...this.wg, peers: [...this.wg.peers] } } : {}),
      ...(this.link ? { wgLink: { ...this.link } } : {}),
      routes: [...this.routes],
      addresses: [{ ifname: 'eth0', local: this.address, prefixlen: 24 }],
      firewall: this.firewall,
      networks: [...this.networks],
      networkUsers,
      forwarding: this.forwarding,
    });
  }

  async run(step: NetStep): Promise<void> {
    switch (step.action) {
      case 'createInterface':
        this.wg ??= { publicKey: '', listenPort: 0, peers: [] };
        this.link ??= { mtu: 1500, up: false };
        return;
      case 'configureInterface':
        this.wg = {
          publicKey: publicKeyOf(step.privateKey),
          listenPort: step.port,
          peers: step.peers.map((p) => ({ publicKey: p.publicKey, ...(p.endpoint ? { endpoint: p.endpoint } : {}), allowedIPs: [...p.allowedIPs], latestHandshakeMs: 0, rxBytes: 0, txBytes: 0, ...(p.keepaliveSeconds ? { keepaliveSeconds: p.keepaliveSeconds } : {}) })),
        };
        return;
      case 'linkUp':
        this.link = { mtu: step.mtu, up: true };
        return;
      case 'startHandshake':
        return;
      case 'createNetwork':
        await this.runtime.ensureNetwork(step.spec.name, step.spec.subnet);
        this.networks.push({ id: step.spec.name, name: step.spec.name, labels: { ...step.spec.labels }, subnet: step.spec.subnet, gateway: step.spec.gateway, options: { ...step.spec.options } });
        return;
      case 'removeNetwork': {
        const i = this.networks.findIndex((n) => n.name === step.name);
        if (i >= 0) this.networks.splice(i, 1);
        return;
      }
      case 'enableForwarding':
        this.forwarding = true;
        return;
      case 'replaceRoute':
        this.routes = [...this.routes.filter((r) => r.dst !== step.dst), { dst: step.dst, dev: step.dev, prefsrc: step.src, protocol: String(OWN_ROUTE_PROTOCOL) }];
        return;
      case 'deleteRoute':
        this.routes = this.routes.filter((r) => !(r.dst === step.dst && r.dev === step.dev));
        return;
      case 'applyFirewall':
        this.firewall = parseFirewallMarker(step.ruleset) ?? '';
        return;
      case 'deleteFirewall':
        this.firewall = undefined;
        return;
      case 'deleteInterface':
        this.wg = undefined;
        this.link = undefined;
        return;
    }
  }
}

/** The hollow device's policy table: whether there is one, and what the enforcer wrote (scripts, bytes). */
export class MemoryPolicyPlane implements PolicyPlane {
  scripts = 0;
  bytes = 0;
  private table = false;

  apply(script: string): Promise<void> {
    this.scripts++;
    this.bytes += script.length;
    this.table = !script.endsWith(`delete table inet ${POLICY_TABLE}\n`);
    return Promise.resolve();
  }

  tableExists(): Promise<boolean> {
    return Promise.resolve(this.table);
  }

  bridgeFiltering(): Promise<{ state: 'on' }> {
    return Promise.resolve({ state: 'on' });
  }
}
