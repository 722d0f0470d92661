import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { AtRestCodec } from './types.js';

/** The key file the hub makes in its data folder on first start (Kubernetes' EncryptionConfiguration keeps its keys in a file too). */
export const SECRET_KEY_FILE = 'secret.key';

// The prefix names the scheme and the key, as Kubernetes' `k8s:enc:aesgcm:v1:<key>:`, so that a
// later key rotation can tell which key sealed a value.
const PREFIX = 'flotilla:enc:aesgcm:v1:';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Reads the 32-byte key (base64 in the file), creating it with mode 0600 if the file is absent. */
export function loadOrCreateKey(file: string): Buffer {
  if (!existsSync(file)) {
    writeFileSync(file, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  } else if ((statSync(file).mode & 0o077) !== 0) {
    // A key readable by others defeats the encryption; tighten it rather than refuse to start.
    chmodSync(file, 0o600);
  }
  const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
  if (key.length !== 32) throw new Error(`${file} does not hold a 256-bit key (base64); restore it from a backup: without it the stored Secrets cannot be read`);
  return key;
}

/**
 * AES-256-GCM over an object's whole JSON text, with a fresh random nonce per write. GCM's tag
 * makes a tampered or wrongly-keyed value fail loudly instead of decoding to garbage.
 */
export function aesGcmCodec(key: Buffer): AtRestCodec {
  return {
    seal(json) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const body = Buffer.concat([cipher.update(json, 'utf8'), cipher.final()]);
      return PREFIX + Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
    },
    open(stored) {
      // Written before encryption was turned on: read as is, sealed on its next write.
      if (!stored.startsWith(PREFIX)) return stored;
      const raw = Buffer.from(stored.slice(PREFIX.length), 'base64');
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
      decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      try {
        return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
      } catch {
        throw new Error(`a sealed object cannot be decrypted with the hub's ${SECRET_KEY_FILE} (wrong key, or the data was altered)`);
      }
    },
  };
}
