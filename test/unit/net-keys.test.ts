import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { generatePrivateKey, publicKeyOf } from '../../shared/net/keys.js';
import { wireguardKeySchema } from '../../shared/protocol/network.js';

describe('WireGuard keys', () => {
  it('makes a private key whose public key is the one wg derives', () => {
    const key = generatePrivateKey();
    expect(wireguardKeySchema.safeParse(key).success).toBe(true);
    const pub = publicKeyOf(key);
    expect(wireguardKeySchema.safeParse(pub).success).toBe(true);
    expect(pub).toBe(execFileSync('wg', ['pubkey'], { input: key }).toString().trim());
  });

  it('makes a different key each time', () => {
    expect(generatePrivateKey()).not.toBe(generatePrivateKey());
  });

  it('refuses what is not a key', () => {
    expect(() => publicKeyOf('short')).toThrow(/32 bytes/);
  });
});
