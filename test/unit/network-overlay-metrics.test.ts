import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Overlay } from '../../agent/network/overlay.js';
import type { NetPlane } from '../../agent/network/plane.js';
import type { ObservedNetwork } from '../../agent/network/plan.js';
import type { ContainerRuntime } from '../../agent/runtime/runtime.js';
import { generatePrivateKey, publicKeyOf } from '../../shared/net/keys.js';

const PEER = publicKeyOf(generatePrivateKey());
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A network that reports one WireGuard entry whose latest handshake the test moves. */
function fakePlane(handshake: { ms: number }): NetPlane {
  return {
    observe: () =>
      Promise.resolve<ObservedNetwork>({
        wgKind: 'wireguard-go',
        wg: { publicKey: '', listenPort: 51820, peers: [{ publicKey: PEER, allowedIPs: [], latestHandshakeMs: handshake.ms, rxBytes: 10, txBytes: 20 }] },
        routes: [],
        addresses: [],
        firewall: undefined,
        networks: [],
        networkUsers: new Map(),
        forwarding: true,
      }),
    run: () => Promise.resolve(),
  };
}

function metrics(overlay: Overlay): Map<string, number> {
  const out = new Map<string, number>();
  overlay.emitMetrics((key, value) => out.set(key, value));
  return out;
}

describe('the overlay\'s device metrics', () => {
  it('counts a handshake each time an entry\'s latest handshake moves on, from what it saw first', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'flotilla-ovm-'));
    dirs.push(stateDir);
    const handshake = { ms: 1_700_000_000_000 };
    const overlay = new Overlay({ overlay: 'wireguard', interface: 'flt-test', port: 51820, stateDir }, {} as ContainerRuntime, { node: 'n1', relayHost: () => undefined }, pino({ level: 'silent' }), () => undefined, fakePlane(handshake));
    overlay.start();
    const network = { podCIDR: '10.42.1.0/24', clusterCIDR: '10.42.0.0/16' };
    await overlay.pass(network, [], undefined);
    // The first sighting is the baseline: an agent restarted next to a live tunnel counts nothing.
    expect(metrics(overlay).get('ovl_handshakes')).toBe(0);
    await overlay.pass(network, [], undefined);
    expect(metrics(overlay).get('ovl_handshakes')).toBe(0);
    handshake.ms += 120_000;
    await overlay.pass(network, [], undefined);
    handshake.ms += 120_000;
    await overlay.pass(network, [], undefined);
    const m = metrics(overlay);
    expect(m.get('ovl_handshakes')).toBe(2);
    expect(m.get('ovl_rxb')).toBe(10);
    expect(m.get('ovl_txb')).toBe(20);
    overlay.stop();
  });
});
