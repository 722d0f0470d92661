import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generatePrivateKey, publicKeyOf } from '../../shared/net/keys.js';

/** The relay's WireGuard private key in the data directory: made once, so devices' peer entries for the relay stay valid across restarts. */
export const RELAY_KEY_FILE = 'relay.key';

export interface RelayKey {
  privateKey: string;
  publicKey: string;
}

/**
 * Reads the relay's key, or makes it on first start (mode 0600, created exclusively: two
 * starts racing cannot write two keys). A file that holds no key is an error, never replaced:
 * replacing it would cut every device off the relay until they learnt the new key.
 */
export function loadOrCreateRelayKey(dataDir: string): RelayKey {
  const file = join(dataDir, RELAY_KEY_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const privateKey = generatePrivateKey();
    try {
      writeFileSync(file, `${privateKey}\n`, { mode: 0o600, flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      return loadOrCreateRelayKey(dataDir);
    }
    return { privateKey, publicKey: publicKeyOf(privateKey) };
  }
  const privateKey = text.trim();
  try {
    return { privateKey, publicKey: publicKeyOf(privateKey) };
  } catch {
    throw new Error(`${file} holds no WireGuard private key: restore it, or remove it to make a new one (devices then learn the new key from the relay announcement)`);
  }
}
