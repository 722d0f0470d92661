import { createHash } from 'node:crypto';

// Kubernetes' safe alphabet for generated suffixes: no vowels (no words) and no look-alikes.
const ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/** A short, stable suffix derived from `input` (e.g. a node name), like Kubernetes' name hashes. */
export function stableSuffix(input: string, length = 5): string {
  const digest = createHash('sha256').update(input).digest();
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET[digest[i]! % ALPHABET.length];
  return out;
}

/** The hash of a pod template, stored on pods as `controller-revision-hash` (as Kubernetes' DaemonSet does). */
export function templateHash(template: unknown): string {
  return stableSuffix(JSON.stringify(template), 10);
}
