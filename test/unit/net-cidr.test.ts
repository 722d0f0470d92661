import { describe, expect, it } from 'vitest';
import { cidr, containsCidr, formatCidr, nthAddress, overlaps, parseCidr, parseIPv4, subnet, subnetCount, subnetIndex } from '../../shared/net/cidr.js';
import { configText, parseDump } from '../../shared/net/wireguard.js';

describe('CIDR arithmetic', () => {
  it('parses and formats, refusing host bits and bad addresses with the reason', () => {
    expect(formatCidr(cidr('10.42.0.0/16'))).toBe('10.42.0.0/16');
    expect(parseCidr('10.42.1.0/16')).toEqual({ error: "'10.42.1.0/16' has host bits set: the network is 10.42.0.0/16" });
    expect(parseCidr('10.42.0.0')).toMatchObject({ error: expect.stringMatching(/not a CIDR/) });
    expect(parseCidr('10.420.0.0/16')).toMatchObject({ error: expect.stringMatching(/not an IPv4 address/) });
    expect(parseCidr('10.42.0.0/33')).toMatchObject({ error: expect.stringMatching(/0 to 32/) });
    expect(parseIPv4('010.1.1.1')).toBeUndefined();
    expect(parseIPv4('255.255.255.255')).toBe(0xffffffff);
  });

  it('carves blocks and finds them again', () => {
    const c = cidr('10.42.0.0/16');
    expect(subnetCount(c, 24)).toBe(256);
    expect(formatCidr(subnet(c, 24, 3))).toBe('10.42.3.0/24');
    expect(subnetIndex(c, cidr('10.42.3.0/24'))).toBe(3);
    expect(subnetIndex(c, cidr('10.43.3.0/24'))).toBeUndefined();
    expect(nthAddress(cidr('10.42.3.0/24'), 1)).toBe('10.42.3.1');
  });

  it('tells overlaps and containment', () => {
    expect(overlaps(cidr('10.0.0.0/8'), cidr('10.42.0.0/16'))).toBe(true);
    expect(overlaps(cidr('10.88.0.0/16'), cidr('10.42.0.0/16'))).toBe(false);
    expect(containsCidr(cidr('10.42.0.0/16'), cidr('10.42.7.0/24'))).toBe(true);
    expect(containsCidr(cidr('10.42.7.0/24'), cidr('10.42.0.0/16'))).toBe(false);
    expect(overlaps(cidr('0.0.0.0/0'), cidr('192.0.2.0/24'))).toBe(true);
  });
});

describe('WireGuard configuration text and dump', () => {
  it('writes the whole interface for syncconf', () => {
    expect(configText('PRIV', 51820, [{ publicKey: 'PUB', endpoint: '192.0.2.1:51820', allowedIPs: ['10.42.1.0/24'], keepaliveSeconds: 25 }, { publicKey: 'PUB2', allowedIPs: [] }])).toBe(
      '[Interface]\nPrivateKey = PRIV\nListenPort = 51820\n\n[Peer]\nPublicKey = PUB\nAllowedIPs = 10.42.1.0/24\nEndpoint = 192.0.2.1:51820\nPersistentKeepalive = 25\n\n[Peer]\nPublicKey = PUB2\n',
    );
  });

  it('reads wg show dump', () => {
    const dump = 'priv\tpubself\t51820\toff\npeerA\t(none)\t203.0.113.5:4000\t10.42.1.0/24,10.42.2.0/24\t1700000000\t100\t200\t25\npeerB\t(none)\t(none)\t(none)\t0\t0\t0\toff\n';
    expect(parseDump(dump)).toEqual({
      publicKey: 'pubself',
      listenPort: 51820,
      peers: [
        { publicKey: 'peerA', endpoint: '203.0.113.5:4000', allowedIPs: ['10.42.1.0/24', '10.42.2.0/24'], latestHandshakeMs: 1_700_000_000_000, rxBytes: 100, txBytes: 200, keepaliveSeconds: 25 },
        { publicKey: 'peerB', allowedIPs: [], latestHandshakeMs: 0, rxBytes: 0, txBytes: 0 },
      ],
    });
    expect(parseDump('')).toBeUndefined();
  });
});
