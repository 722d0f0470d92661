import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';

// WireGuard keys are raw X25519 keys in base64. node:crypto speaks JWK, whose `d` and `x` are
// the same 32 bytes in base64url: no `wg genkey` process is needed.

const fromUrl = (s: string) => Buffer.from(s, 'base64url').toString('base64');
const toUrl = (s: string) => Buffer.from(s, 'base64').toString('base64url');

/** A new private key (base64). */
export function generatePrivateKey(): string {
  const { privateKey } = generateKeyPairSync('x25519');
  return fromUrl(privateKey.export({ format: 'jwk' }).d!);
}

/** The public key of a private key, both base64; throws when `privateKey` is not one. */
export function publicKeyOf(privateKey: string): string {
  const raw = Buffer.from(privateKey, 'base64');
  if (raw.length !== 32) throw new Error('a WireGuard private key is 32 bytes of base64');
  const pub = createPublicKey(createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: toUrl(privateKey), x: toUrl(Buffer.alloc(32).toString('base64')) }, format: 'jwk' }));
  return fromUrl(pub.export({ format: 'jwk' }).x!);
}
