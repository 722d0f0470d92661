import { generatePrivateKey, publicKeyOf } from '../../shared/net/keys.js';
import { StateFiles } from '../state/files.js';

/** The device's WireGuard private key in the state directory, in `wg genkey`'s format (base64 and a newline). */
export const KEY_FILE = 'wireguard.key';

export interface WireguardKey {
  privateKey: string;
  publicKey: string;
}

function keyProblem(text: string): string | undefined {
  try {
    publicKeyOf(text.trim());
    return undefined;
  } catch {
    return 'does not hold a WireGuard private key';
  }
}

/**
 * The device's key pair: read from the state directory, or made on first start and kept there
 * (mode 0600, written atomically and twice, as the credentials are: a device that lost its key
 * would have to be announced anew to every peer). The private key never leaves the device; only
 * the public key goes into the node report. When neither copy is good a new pair is made, and
 * the peers follow the new public key once the hub announces it.
 */
export function loadOrCreateKey(stateDir: string, onProblem: (message: string) => void): WireguardKey {
  const files = new StateFiles(stateDir);
  const copies = files.textCopies(KEY_FILE, keyProblem);
  for (const copy of copies) if (copy.value === undefined) onProblem(`${copy.problem}; ignoring it`);
  const good = copies.find((c) => c.value !== undefined)?.value?.trim();
  const privateKey = good ?? generatePrivateKey();
  if (!good && copies.length > 0) onProblem(`no usable copy of ${files.path(KEY_FILE)}: made a new WireGuard key; peers follow it once the hub announces it`);
  // Written back when a copy is missing or damaged, so both hold it again.
  const whole = copies.length === 2 && copies.every((c) => c.value?.trim() === privateKey);
  if (!whole) {
    try {
      files.writeTexts([[KEY_FILE, `${privateKey}\n`]]);
    } catch (err) {
      onProblem(`could not write ${files.path(KEY_FILE)}: ${(err as Error).message}`);
    }
  }
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}
