import { describe, expect, it } from 'vitest';
import { describe as describeObject } from '../../hub/cli/describe.js';
import { bytesText } from '../../hub/cli/describe-network.js';
import { formatObjects } from '../../hub/cli/print.js';

const KEY = 'mDh0VwDbbY0+hHUWzXuuvd+aCCJ3PRjqHSNYzs0ObVs=';
const ago = (s: number) => new Date(Date.now() - s * 1000).toISOString();

function node(overlay: unknown) {
  return {
    kind: 'Node',
    metadata: { name: 'pi-1', uid: 'u1', annotations: { 'network.flotilla.io/endpoints': '203.0.113.5:51820 hub-observed, 192.168.1.20:51820 reported' } },
    spec: { podCIDR: '10.42.3.0/24', podCIDRs: ['10.42.3.0/24'] },
    status: { overlay },
  };
}

describe('the pod network in the CLI', () => {
  it('shows POD-CIDR in get nodes -o wide', () => {
    const text = formatObjects('Node', [node(undefined) as never], 'wide');
    const [header, row] = text.split('\n');
    expect(header).toMatch(/INTERNAL-IP\s+POD-CIDR\s+OS-IMAGE/);
    expect(row).toContain('10.42.3.0/24');
  });

  it('describes the WireGuard interface, the published endpoints and the peers', () => {
    const text = describeObject(node({ overlay: 'wireguard', ready: true, publicKey: KEY, port: 51820, implementation: 'wireguard-go', interface: 'flotilla-wg', peers: [{ node: 'pi-2', path: 'direct', endpoint: '192.168.1.21:51820', latestHandshake: ago(42), rxBytes: 1536, txBytes: 10 * 1024 * 1024 }, { node: 'pi-3', path: 'relay', rxBytes: 0, txBytes: 0 }], morePeers: 3, relay: { latestHandshake: ago(5), rxBytes: 100, txBytes: 200 } }) as never, []);
    expect(text).toMatch(/PodCIDR:\s+10\.42\.3\.0\/24/);
    expect(text).toMatch(/PodCIDRs:\s+10\.42\.3\.0\/24/);
    expect(text).toMatch(/WireGuard:\n\s+Ready:\s+True\n\s+Implementation:\s+wireguard-go\n\s+Interface:\s+flotilla-wg\n\s+Public Key:\s+mDh0/);
    expect(text).toMatch(/Endpoints:\s+203\.0\.113\.5:51820 hub-observed, 192\.168\.1\.20:51820 reported/);
    expect(text).toMatch(/Relay:\s+handshake 5s ago, rx 100 B, tx 200 B/);
    expect(text).toMatch(/NODE\s+PATH\s+ENDPOINT\s+LATEST HANDSHAKE\s+RX\s+TX/);
    expect(text).toMatch(/pi-2\s+direct\s+192\.168\.1\.21:51820\s+42s ago\s+1\.5 KiB\s+10 MiB/);
    expect(text).toMatch(/pi-3\s+relay\s+<none>\s+never\s+0 B\s+0 B/);
    expect(text).toContain('and 3 more');
  });

  it('says so when the overlay is off', () => {
    expect(describeObject(node({ overlay: 'none', ready: false }) as never, [])).toMatch(/WireGuard:\s+off \(--overlay none\)/);
  });

  it('prints bytes as wg does', () => {
    expect(bytesText(0)).toBe('0 B');
    expect(bytesText(2048)).toBe('2.0 KiB');
    expect(bytesText(3 * 1024 ** 3)).toBe('3.0 GiB');
  });
});
