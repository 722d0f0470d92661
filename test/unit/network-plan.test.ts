import { describe, expect, it } from 'vitest';
import { findConflicts } from '../../agent/network/conflicts.js';
import { firewallMarker, firewallRuleset, parseFirewallMarker } from '../../agent/network/firewall.js';
import { bridgeName, bridgeSpec, networkName, ownAddresses, planNetwork, type DesiredOverlay, type NetStep, type ObservedNetwork } from '../../agent/network/plan.js';
import { steadyNetworkReport } from '../../agent/network/overlay.js';
import { planSteps } from '../../agent/reconcile/plan.js';
import { containerSpecHash } from '../../agent/reconcile/hash.js';
import type { IpAddress, IpRoute } from '../../shared/net/ip.js';
import type { WgPeerConfig } from '../../shared/net/wireguard.js';
import { generatePrivateKey, publicKeyOf } from '../../shared/net/keys.js';
import { actualState, container, desiredPod, expectSteps, infraContainer, planContext, runtimeContainer, PAUSE_IMAGE, POD_NETWORK } from './builders.js';

// The overlay's data plane planner (agent/network/plan.ts): pure, from what is there and what is
// wanted to steps. Builders say what the device looks like.

const IFACE = 'flt-wg-test';
const POD_CIDR = '10.42.3.0/24';
const CLUSTER_CIDR = '10.42.0.0/16';
const PRIVATE = generatePrivateKey();
const PUBLIC = publicKeyOf(PRIVATE);
const PEER_KEY = publicKeyOf(generatePrivateKey());
const PEERS: WgPeerConfig[] = [{ publicKey: PEER_KEY, endpoint: '192.0.2.7:51820', allowedIPs: ['10.42.5.0/24'], keepaliveSeconds: 25 }];
const NET = networkName(POD_CIDR);
const BRIDGE = bridgeName(POD_CIDR);

function desired(o: Partial<DesiredOverlay> = {}): DesiredOverlay {
  return { overlay: 'wireguard', node: 'edge-1', interface: IFACE, port: 51820, privateKey: PRIVATE, publicKey: PUBLIC, network: { podCIDR: POD_CIDR, clusterCIDR: CLUSTER_CIDR }, peers: PEERS, routedGateway: false, ...o };
}

/** A device with nothing of the overlay: an uplink on a documentation range, loopback, a default route. */
function bareDevice(o: Partial<ObservedNetwork> = {}): ObservedNetwork {
  return {
    wgKind: undefined,
    routes: [route('0.0.0.0/0', 'eth0'), route('198.51.100.0/24', 'eth0', 'kernel'), route('127.0.0.0/8', 'lo', 'kernel', 'local')],
    addresses: [addr('lo', '127.0.0.1', 8), addr('eth0', '198.51.100.10', 24)],
    firewall: undefined,
    networks: [],
    networkUsers: new Map(),
    forwarding: false,
    ...o,
  };
}

function route(dst: string, dev: string | undefined, protocol = 'boot', table?: string): IpRoute {
  return { dst, ...(dev ? { dev } : {}), protocol, ...(table ? { table } : {}) };
}
function addr(ifname: string, local: string, prefixlen: number): IpAddress {
  return { ifname, local, prefixlen };
}

/** The device once every step of a fresh plan has run. */
function builtDevice(o: Partial<ObservedNetwork> = {}): ObservedNetwork {
  const spec = bridgeSpec('edge-1', POD_CIDR, false);
  const base = bareDevice();
  return {
    ...base,
    wgKind: 'wireguard-go',
    wg: { publicKey: PUBLIC, listenPort: 51820, peers: PEERS.map((p) => ({ publicKey: p.publicKey, endpoint: p.endpoint!, allowedIPs: [...p.allowedIPs], latestHandshakeMs: 0, rxBytes: 0, txBytes: 0, keepaliveSeconds: 25 })) },
    wgLink: { mtu: 1420, up: true },
    routes: [...base.routes, { dst: CLUSTER_CIDR, dev: IFACE, protocol: '241', prefsrc: '10.42.3.1' }, route(POD_CIDR, BRIDGE, 'kernel'), route('10.42.3.1/32', BRIDGE, 'kernel', 'local')],
    addresses: [...base.addresses, addr(BRIDGE, '10.42.3.1', 24)],
    firewall: firewallMarker(POD_CIDR, CLUSTER_CIDR),
    networks: [{ id: 'n1', name: spec.name, labels: spec.labels, subnet: POD_CIDR, gateway: '10.42.3.1', options: spec.options }],
    forwarding: true,
    ...o,
  };
}

const actions = (steps: readonly NetStep[]) => steps.map((s) => s.action);

describe('planNetwork: the overlay on', () => {
  it('builds everything on a fresh device, in order, and says which network pods join', () => {
    const plan = planNetwork(bareDevice(), desired());
    expect(actions(plan.steps)).toEqual(['createInterface', 'configureInterface', 'linkUp', 'createNetwork', 'enableForwarding', 'replaceRoute', 'applyFirewall']);
    expect(plan.ready).toBe(true);
    expect(plan.podNetwork).toBe('flotilla-10.42.3.0-24');
    const create = plan.steps.find((s) => s.action === 'createNetwork');
    expect(create).toMatchObject({ spec: { subnet: POD_CIDR, gateway: '10.42.3.1', labels: { 'flotilla.network': 'overlay', 'flotilla.node': 'edge-1' } } });
    const options = (create as Extract<NetStep, { action: 'createNetwork' }>).spec.options;
    expect(options['com.docker.network.driver.mtu']).toBe('1420');
    expect(options['com.docker.network.bridge.enable_ip_masquerade']).toBe('false');
    expect(options['com.docker.network.bridge.name']!.length).toBeLessThanOrEqual(15);
    expect(options['com.docker.network.bridge.gateway_mode_ipv4']).toBeUndefined();
    expect(plan.steps.find((s) => s.action === 'linkUp')).toMatchObject({ mtu: 1420 });
    expect(plan.steps.find((s) => s.action === 'replaceRoute')).toEqual({ action: 'replaceRoute', dst: CLUSTER_CIDR, dev: IFACE, src: '10.42.3.1' });
    expect(plan.steps.find((s) => s.action === 'configureInterface')).toMatchObject({ port: 51820, peers: PEERS });
  });

  it('asks for the routed gateway mode only of an engine that has it', () => {
    const plan = planNetwork(bareDevice(), desired({ routedGateway: true }));
    const create = plan.steps.find((s) => s.action === 'createNetwork') as Extract<NetStep, { action: 'createNetwork' }>;
    expect(create.spec.options['com.docker.network.bridge.gateway_mode_ipv4']).toBe('routed');
  });

  it('plans nothing when everything is in place (a second pass, an agent restart)', () => {
    const plan = planNetwork(builtDevice(), desired());
    expect(plan.steps).toEqual([]);
    expect(plan.ready).toBe(true);
    expect(plan.podNetwork).toBe(NET);
  });

  it('rebuilds the interface, its peers, link and route after a reboot, and keeps the network and table', () => {
    const built = builtDevice();
    const rebooted = builtDevice({ wgKind: undefined, wg: undefined, wgLink: undefined, routes: built.routes.filter((r) => r.dev !== IFACE), forwarding: false });
    expect(actions(planNetwork(rebooted, desired()).steps)).toEqual(['createInterface', 'configureInterface', 'linkUp', 'enableForwarding', 'replaceRoute']);
  });

  it('syncs the peers only when they differ from what the interface has', () => {
    const added: WgPeerConfig[] = [...PEERS, { publicKey: publicKeyOf(generatePrivateKey()), allowedIPs: ['10.42.9.0/24'], keepaliveSeconds: 25 }];
    expect(actions(planNetwork(builtDevice(), desired({ peers: added })).steps)).toEqual(['configureInterface']);
    // A relayed peer: its pod CIDR moves to the relay's allowed IPs.
    expect(actions(planNetwork(builtDevice(), desired({ peers: [{ ...PEERS[0]!, allowedIPs: [] }] })).steps)).toEqual(['configureInterface']);
    expect(actions(planNetwork(builtDevice(), desired({ peers: [{ ...PEERS[0]!, endpoint: '203.0.113.9:4500' }] })).steps)).toEqual(['configureInterface']);
    // An endpoint learnt from a roam, with none asked for, is left as WireGuard has it.
    expect(planNetwork(builtDevice(), desired({ peers: [{ publicKey: PEER_KEY, allowedIPs: ['10.42.5.0/24'], keepaliveSeconds: 25 }] })).steps).toEqual([]);
    expect(actions(planNetwork(builtDevice(), desired({ port: 51821 })).steps)).toEqual(['configureInterface']);
  });

  it('starts the handshakes the path selector asks for, on entries it configures, and only then', () => {
    const stray = publicKeyOf(generatePrivateKey());
    const plan = planNetwork(builtDevice(), desired({ startHandshake: [PEER_KEY, stray] }));
    expect(plan.steps).toEqual([{ action: 'startHandshake', name: IFACE, publicKeys: [PEER_KEY], keepaliveSeconds: 25 }]);
    expect(planNetwork(builtDevice(), desired({ startHandshake: [] })).steps).toEqual([]);
  });

  it('sets the MTU and the link up again when they were changed', () => {
    expect(actions(planNetwork(builtDevice({ wgLink: { mtu: 1500, up: true } }), desired()).steps)).toEqual(['linkUp']);
    expect(actions(planNetwork(builtDevice({ wgLink: { mtu: 1420, up: false } }), desired()).steps)).toEqual(['linkUp']);
  });

  it('re-applies the nft table when it is missing or made for other CIDRs', () => {
    expect(actions(planNetwork(builtDevice({ firewall: undefined }), desired()).steps)).toEqual(['applyFirewall']);
    expect(actions(planNetwork(builtDevice({ firewall: '' }), desired()).steps)).toEqual(['applyFirewall']);
  });

  it('moves to a new pod CIDR: a new network, the route from its gateway, a new table; the old network stays while pods use it', () => {
    const moved = desired({ network: { podCIDR: '10.42.7.0/24', clusterCIDR: CLUSTER_CIDR } });
    const inUse = planNetwork(builtDevice({ networkUsers: new Map([[NET, 2]]) }), moved);
    expect(actions(inUse.steps)).toEqual(['createNetwork', 'replaceRoute', 'applyFirewall']);
    expect(inUse.steps.find((s) => s.action === 'replaceRoute')).toMatchObject({ src: '10.42.7.1' });
    expect(inUse.podNetwork).toBe('flotilla-10.42.7.0-24');
    expect(inUse.waitingRemovals).toEqual([NET]);
    // Once no container uses it, the old network goes.
    const free = planNetwork(builtDevice(), moved);
    expect(free.steps[0]).toMatchObject({ action: 'removeNetwork', name: NET });
    expect(free.waitingRemovals).toEqual([]);
  });

  it('removes a route of its own that is no longer wanted (an old cluster CIDR), and never another', () => {
    const built = builtDevice();
    const stale = builtDevice({ routes: [...built.routes, { dst: '10.99.0.0/16', dev: IFACE, protocol: '241' }, { dst: '10.98.0.0/16', dev: 'eth0', protocol: '241' }] });
    expect(planNetwork(stale, desired()).steps).toEqual([{ action: 'deleteRoute', dst: '10.99.0.0/16', dev: IFACE }]);
  });

  it('refuses an interface of its name that is not WireGuard, and touches nothing', () => {
    const plan = planNetwork(bareDevice({ wgKind: 'other' }), desired());
    expect(plan.steps).toEqual([]);
    expect(plan.ready).toBe(false);
    expect(plan.reason).toBe('InterfaceConflict');
    expect(plan.message).toContain(IFACE);
    expect(plan.podNetwork).toBeUndefined();
  });

  it('refuses a WireGuard interface of its name that holds another key, and touches nothing', () => {
    const built = builtDevice();
    const plan = planNetwork(builtDevice({ wg: { ...built.wg!, publicKey: PEER_KEY } }), desired());
    expect(plan.steps).toEqual([]);
    expect(plan.reason).toBe('InterfaceConflict');
    expect(plan.message).toContain('another key');
    // One made but not configured yet (a pass cut short) is the agent's: it is configured.
    expect(actions(planNetwork(builtDevice({ wg: { ...built.wg!, publicKey: '(none)' } }), desired()).steps)).toContain('configureInterface');
  });

  it('takes a relay endpoint given by name as configured when WireGuard shows it resolved with the same port', () => {
    const named: WgPeerConfig[] = [{ ...PEERS[0]!, endpoint: 'hub.example.org:51820' }];
    expect(planNetwork(builtDevice(), desired({ peers: named })).steps).toEqual([]);
    expect(actions(planNetwork(builtDevice(), desired({ peers: [{ ...PEERS[0]!, endpoint: 'hub.example.org:51999' }] })).steps)).toEqual(['configureInterface']);
  });

  it('waits with NoPodCIDR while the hub has allocated none', () => {
    const plan = planNetwork(bareDevice(), desired({ network: undefined }));
    expect(plan).toMatchObject({ steps: [], ready: false, reason: 'NoPodCIDR' });
  });

  it('refuses a pod CIDR outside the cluster CIDR', () => {
    const plan = planNetwork(bareDevice(), desired({ network: { podCIDR: '10.43.0.0/24', clusterCIDR: CLUSTER_CIDR } }));
    expect(plan).toMatchObject({ steps: [], ready: false, reason: 'InvalidPodCIDR' });
    expect(plan.message).toContain('network.podCIDR');
  });
});

describe('planNetwork: CIDR conflicts', () => {
  it('takes no CIDR into use that overlaps a route of the device, and names the route and its interface', () => {
    const lan = bareDevice({ routes: [...bareDevice().routes, route('10.0.0.0/8', 'lo')] });
    const plan = planNetwork(lan, desired());
    expect(plan.steps).toEqual([]);
    expect(plan.ready).toBe(false);
    expect(plan.reason).toBe('CIDRConflict');
    expect(plan.message).toContain('route 10.0.0.0/8 dev lo');
    expect(plan.podNetwork).toBeUndefined();
  });

  it('names an address in the cluster CIDR on another interface', () => {
    const plan = planNetwork(bareDevice({ addresses: [...bareDevice().addresses, addr('dummy0', '10.42.0.1', 16)] }), desired());
    expect(plan.reason).toBe('CIDRConflict');
    expect(plan.message).toContain('address 10.42.0.1/16 on dummy0');
  });

  it('even when everything was built before the conflict: nothing more is done', () => {
    const built = builtDevice();
    const plan = planNetwork(builtDevice({ routes: [...built.routes, route('10.42.0.0/16', 'dummy0', 'kernel')] }), desired());
    expect(plan).toMatchObject({ steps: [], ready: false, reason: 'CIDRConflict' });
  });
});

describe('findConflicts', () => {
  const own = { wireguard: IFACE, bridges: new Set([BRIDGE]) };
  const wanted = { podCIDR: POD_CIDR, clusterCIDR: CLUSTER_CIDR };

  it('ignores the default route, its own routes, interface and bridges, and ranges that do not overlap', () => {
    expect(findConflicts(builtDevice().routes, builtDevice().addresses, own, wanted)).toEqual([]);
    expect(findConflicts([route('172.17.0.0/16', 'docker0', 'kernel'), route('10.88.0.0/16', 'cni-podman0', 'kernel')], [addr('docker0', '172.17.0.1', 16)], own, wanted)).toEqual([]);
  });

  it('finds Podman or Docker networks, LANs and routes of other tables that the cluster would shadow', () => {
    const conflicts = findConflicts(
      [route('10.0.0.0/8', 'wlan0', 'kernel'), route('10.42.9.0/24', 'cni-podman0', 'kernel'), { dst: '10.42.0.0/16', protocol: 'static', type: 'blackhole', table: '100' }],
      [addr('eth1', '10.42.3.17', 24)],
      own,
      { podCIDR: POD_CIDR, clusterCIDR: CLUSTER_CIDR },
    );
    expect(conflicts.map((c) => c.what)).toEqual(['address 10.42.3.17/24 on eth1', 'route 10.0.0.0/8 dev wlan0', 'route 10.42.9.0/24 dev cni-podman0', 'route blackhole 10.42.0.0/16 table 100']);
    expect(conflicts[0]!.role).toBe('cluster CIDR');
  });

  it('counts a proto-241 route on another interface as its own (the hub relay beside an agent)', () => {
    expect(findConflicts([{ dst: '10.42.0.0/16', dev: 'flotilla-relay', protocol: '241' }], [], own, wanted)).toEqual([]);
  });
});

describe('planNetwork: --overlay none', () => {
  it('removes the interface, the table and the networks it made, and nothing else', () => {
    const plan = planNetwork(builtDevice(), desired({ overlay: 'none' }));
    expect(actions(plan.steps)).toEqual(['deleteInterface', 'deleteFirewall', 'removeNetwork']);
    expect(plan.steps[0]).toEqual({ action: 'deleteInterface', name: IFACE });
  });

  it('keeps a network that pods still use until they are moved', () => {
    const plan = planNetwork(builtDevice({ networkUsers: new Map([[NET, 1]]) }), desired({ overlay: 'none' }));
    expect(actions(plan.steps)).toEqual(['deleteInterface', 'deleteFirewall']);
    expect(plan.waitingRemovals).toEqual([NET]);
  });

  it('leaves an interface of its name that is not WireGuard', () => {
    expect(planNetwork(bareDevice({ wgKind: 'other' }), desired({ overlay: 'none' })).steps).toEqual([]);
  });

  it('plans nothing once everything is gone', () => {
    expect(planNetwork(bareDevice(), desired({ overlay: 'none' })).steps).toEqual([]);
  });
});

describe('the pod planner and the pod network', () => {
  const pod = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'nginx:1' })] });
  const notReady = { reason: 'NetworkNotReady', message: 'network is not ready: NoPodCIDR: none yet' };

  it('makes no sandbox while the network is not ready, and says why', () => {
    const plan = planSteps(actualState({ images: [PAUSE_IMAGE, 'nginx:1'] }), [pod], planContext({ networkNotReady: notReady }));
    expect(plan).toEqual([]);
  });

  it('leaves a running sandbox and its containers alone while the network is not ready, even on another network', () => {
    const infra = { ...infraContainer({ pod, hash: 'an-older-network' }), networkMode: 'flotilla-10.42.1.0-24' };
    // The app container was made in that sandbox: its hash holds the sandbox's.
    const app = runtimeContainer({ pod, container: 'app', hash: containerSpecHash(pod, pod.spec.containers[0]!, 'an-older-network') });
    const plan = planSteps(actualState({ containers: [infra, app], images: [PAUSE_IMAGE, 'nginx:1'] }), [pod], planContext({ networkNotReady: notReady }));
    expect(plan).toEqual([]);
  });

  it('replaces a sandbox attached to another network than the pod network', () => {
    const infra = { ...infraContainer({ pod }), networkMode: 'flotilla-10.42.1.0-24' };
    const app = runtimeContainer({ pod, container: 'app' });
    const steps = planSteps(actualState({ containers: [infra, app], images: [PAUSE_IMAGE, 'nginx:1'] }), [pod], planContext());
    expectSteps(steps, ['remove', 'remove', 'createInfra']);
    expect(steps[0]).toMatchObject({ reason: 'pod sandbox network changed' });
  });

  it('keeps a sandbox on the pod network, and a hostNetwork pod wherever the network stands', () => {
    const infra = { ...infraContainer({ pod }), networkMode: POD_NETWORK };
    expect(planSteps(actualState({ containers: [infra, runtimeContainer({ pod, container: 'app' })], images: [PAUSE_IMAGE, 'nginx:1'] }), [pod], planContext())).toEqual([]);
    const host = desiredPod({ name: 'agent', hostNetwork: true, containers: [container({ name: 'app', image: 'nginx:1' })] });
    expectSteps(planSteps(actualState({ images: [PAUSE_IMAGE, 'nginx:1'] }), [host], planContext({ networkNotReady: notReady })), ['createInfra']);
  });
});

describe('the nft table and the report', () => {
  it('masquerades only pod traffic that leaves the cluster CIDR, and is recognised by its comment', () => {
    const ruleset = firewallRuleset(POD_CIDR, CLUSTER_CIDR);
    expect(ruleset).toContain(`ip saddr ${POD_CIDR} ip daddr != ${CLUSTER_CIDR} masquerade`);
    expect(ruleset.startsWith('table ip flotilla\ndelete table ip flotilla\n')).toBe(true);
    expect(parseFirewallMarker(`table ip flotilla {\n\tcomment "${firewallMarker(POD_CIDR, CLUSTER_CIDR)}"\n}`)).toBe(firewallMarker(POD_CIDR, CLUSTER_CIDR));
  });

  it('offers the advertised address first, and none of loopback, the overlay or the cluster CIDR', () => {
    const observed = builtDevice({ addresses: [...builtDevice().addresses, addr(IFACE, '10.42.3.0', 32), addr('wlan0', '192.168.1.20', 24)] });
    expect(ownAddresses(observed, IFACE, CLUSTER_CIDR, '203.0.113.5')).toEqual(['203.0.113.5', '198.51.100.10', '192.168.1.20']);
  });

  it('compares reports without byte counters and handshake times', () => {
    const report = { overlay: 'wireguard' as const, ready: true, peers: [{ node: 'b', path: 'direct' as const, rxBytes: 1, txBytes: 2, latestHandshake: 't1' }], relay: { rxBytes: 5, txBytes: 6 } };
    const moved = { ...report, peers: [{ ...report.peers[0]!, rxBytes: 100, txBytes: 200, latestHandshake: 't2' }], relay: { rxBytes: 50, txBytes: 60 } };
    expect(JSON.stringify(steadyNetworkReport(report))).toBe(JSON.stringify(steadyNetworkReport(moved)));
    expect(JSON.stringify(steadyNetworkReport(report))).not.toBe(JSON.stringify(steadyNetworkReport({ ...report, peers: [{ ...report.peers[0]!, path: 'relay' as const }] })));
  });
});
