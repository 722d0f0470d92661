import { validateManifest } from '../../shared/resources/validate.js';
import { WAVES } from '../../shared/resources/waves.js';
import type { PlannedWave } from '../../shared/rollout/plan.js';
import { objectPath, type HubClient } from './client.js';
import { CliError } from './errors.js';
import { table } from './print.js';
import { pauseText } from './rollout-waves-render.js';

type Out = (text: string) => void;

/** The hub's answer to a preview: the waves it would plan, with exactly the function it uses when a rollout starts. */
export interface WavesPreview {
  revision: number;
  waves: PlannedWave[];
  /** Why nothing would roll out, when nothing would. */
  reason?: string;
}

/** The hub's rollout endpoint of a DaemonSet: control, and `/preview`. */
export function rolloutEndpoint(namespace: string, name: string, sub?: 'preview', plural: 'daemonsets' | 'deployments' = 'daemonsets'): string {
  return `/apis/flotilla/v1/namespaces/${encodeURIComponent(namespace)}/${plural}/${encodeURIComponent(name)}/rollout${sub ? `/${sub}` : ''}`;
}

/** Without a manifest: the stored DaemonSet's next rollout; with one: the rollout that applying it would start. */
export async function fetchPreview(client: HubClient, namespace: string, name: string, manifest?: unknown, plural: 'daemonsets' | 'deployments' = 'daemonsets'): Promise<WavesPreview> {
  try {
    return (await client.request<WavesPreview>('POST', rolloutEndpoint(namespace, name, 'preview', plural), manifest)).body;
  } catch (e) {
    if (e instanceof CliError) throw new CliError(`cannot preview the rollout of ${plural.slice(0, -1)}/${name}: ${e.message}`, e.exitCode, e.details);
    throw e;
  }
}

/** Every wave with its devices and what follows it; nothing changes. */
export function previewText(name: string, p: WavesPreview, word: 'daemonset' | 'deployment' = 'daemonset'): string {
  // A Deployment's waves count pods (placed by the scheduler), not devices.
  if (word === 'deployment') return podPreviewText(name, p);
  const devices = p.waves.reduce((n, w) => n + w.nodes.length, 0);
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  // With a reason, the hub says why this is not a rollout in waves (first revision, no change); the devices still show.
  const lines = [p.reason ? `daemonset/${name}: revision ${p.revision}: ${p.reason}` : `daemonset/${name}: revision ${p.revision} would roll out to ${plural(devices, 'device')} in ${plural(p.waves.length, 'wave')} (dry run: nothing changed)`];
  if (p.waves.length > 0) {
    const rows = p.waves.map((w) => [w.name, String(w.nodes.length), pauseText(w.pause), w.nodes.join(', ') || '<none>']);
    lines.push(...table([['WAVE', 'DEVICES', 'PAUSE AFTER', 'NODES'], ...rows]).split('\n').map((l) => `  ${l}`));
  }
  return lines.join('\n');
}

function podPreviewText(name: string, p: WavesPreview): string {
  const pods = p.waves.reduce((n, w) => n + (w.replicas ?? 0), 0);
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const lines = [p.reason ? `deployment/${name}: revision ${p.revision}: ${p.reason}` : `deployment/${name}: revision ${p.revision} would roll out to ${plural(pods, 'pod')} in ${plural(p.waves.length, 'wave')} (dry run: nothing changed)`];
  if (p.waves.length > 0) lines.push(...table([['WAVE', 'PODS', 'PAUSE AFTER'], ...p.waves.map((w) => [w.name, String(w.replicas ?? 0), pauseText(w.pause)])]).split('\n').map((l) => `  ${l}`));
  return lines.join('\n');
}

interface StoredDaemonSet {
  spec: { template: unknown };
}

/** JSON with sorted keys: two templates are the same whatever the order of their keys. */
export function canonical(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v === null || typeof v !== 'object') return v;
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])]));
  };
  return JSON.stringify(sort(value));
}

/**
 * After `apply --dry-run`'s usual lines: for each Waves DaemonSet the dry run would change, and
 * whose template differs from the stored one (a change that starts a rollout), the waves that
 * rollout would have. The template is compared as the hub stores it: validated, defaults filled.
 */
export async function applyDryRunPreviews(client: HubClient, manifests: unknown[], results: { kind: string; name: string; namespace?: string; action: string }[], namespace: string | undefined, out: Out): Promise<void> {
  for (const manifest of manifests) {
    const { object } = validateManifest(manifest);
    if (!object || (object.kind !== 'DaemonSet' && object.kind !== 'Deployment')) continue;
    const spec = object.spec as { template: unknown; updateStrategy?: { type?: string }; strategy?: { type?: string } };
    if ((object.kind === 'DaemonSet' ? spec.updateStrategy : spec.strategy)?.type !== WAVES) continue;
    const plural = object.kind === 'DaemonSet' ? 'daemonsets' : 'deployments';
    const ns = object.metadata.namespace ?? namespace ?? 'default';
    const result = results.find((r) => r.kind === object.kind && r.name === object.metadata.name && (r.namespace ?? ns) === ns);
    if (result?.action !== 'configured') continue;
    const stored = await client.request<StoredDaemonSet>('GET', objectPath(plural, true, ns, object.metadata.name)).then((a) => a.body, () => undefined);
    if (!stored || canonical(stored.spec.template) === canonical(spec.template)) continue;
    out(previewText(object.metadata.name, await fetchPreview(client, ns, object.metadata.name, manifest, plural), plural === 'daemonsets' ? 'daemonset' : 'deployment'));
  }
}
