import type { DesiredConfig, DesiredPod } from '../../shared/protocol/messages.js';

/** The key Docker Hub's credentials are kept under in a docker config file. */
export const DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/';
const DOCKER_HUB_ALIASES: ReadonlySet<string> = new Set(['index.docker.io', 'docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

/** The credentials dockerode sends with a pull (its `authconfig`). */
export interface RegistryAuth {
  username?: string;
  password?: string;
  email?: string;
  identitytoken?: string;
  serveraddress: string;
}

/**
 * The registry an image reference names, as the Docker engine reads it: the first path
 * component when it has a dot or a port or is `localhost`; Docker Hub otherwise.
 */
export function imageRegistry(image: string): string {
  const slash = image.indexOf('/');
  if (slash < 0) return DOCKER_HUB_AUTH_KEY;
  const first = image.slice(0, slash);
  if (!first.includes('.') && !first.includes(':') && first !== 'localhost') return DOCKER_HUB_AUTH_KEY;
  return DOCKER_HUB_ALIASES.has(first) ? DOCKER_HUB_AUTH_KEY : first;
}

/** A docker config `auths` key as a bare host[:port] (`https://r.example:5000/v1/` → `r.example:5000`). */
function registryOfKey(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, '').split('/')[0] ?? '';
  return DOCKER_HUB_ALIASES.has(host) ? DOCKER_HUB_AUTH_KEY : host;
}

interface DockerConfigEntry {
  username?: string;
  password?: string;
  auth?: string;
  email?: string;
  identitytoken?: string;
}

/**
 * The credentials for `image` from the pod's imagePullSecrets (Secrets of type
 * kubernetes.io/dockerconfigjson, key `.dockerconfigjson`, base64 as in the Kubernetes API),
 * in the order the pod lists them; undefined when none matches.
 */
export function pullAuthFor(image: string, pod: DesiredPod, secrets: readonly DesiredConfig[]): RegistryAuth | undefined {
  const registry = imageRegistry(image);
  for (const ref of pod.spec.imagePullSecrets ?? []) {
    const secret = secrets.find((s) => s.namespace === pod.namespace && s.name === ref.name);
    const encoded = secret?.data['.dockerconfigjson'];
    if (!encoded) continue;
    let auths: Record<string, DockerConfigEntry> | undefined;
    try {
      auths = (JSON.parse(Buffer.from(encoded, 'base64').toString('utf8')) as { auths?: Record<string, DockerConfigEntry> }).auths;
    } catch {
      continue;
    }
    for (const [key, entry] of Object.entries(auths ?? {})) {
      if (registryOfKey(key) !== registry) continue;
      let { username, password } = entry;
      if ((!username || password === undefined) && entry.auth) {
        const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        if (colon >= 0) {
          username = decoded.slice(0, colon);
          password = decoded.slice(colon + 1);
        }
      }
      return {
        serveraddress: registry,
        ...(username !== undefined ? { username } : {}),
        ...(password !== undefined ? { password } : {}),
        ...(entry.email ? { email: entry.email } : {}),
        ...(entry.identitytoken ? { identitytoken: entry.identitytoken } : {}),
      };
    }
  }
  return undefined;
}

/** One progress message of the engine's pull stream (as dockerode's followProgress passes it). */
export interface PullProgressEvent {
  id?: string;
  status?: string;
  progressDetail?: { current?: number; total?: number };
}

/**
 * What a pull has done so far, per layer, folded from its progress messages. A download that
 * the engine resumes after an error ("Retrying in 5 seconds") starts a new count: its `total`
 * is what is left of the layer and its `current` counts from 0 (the Docker engine's pull_v2
 * reads the rest of the blob with a Range request), so the bytes a layer has are its full size
 * (the largest total seen) less what is left, plus what came since.
 */
export class PullProgress {
  private readonly layers = new Map<string, { done: boolean; current: number; total: number }>();

  add(e: PullProgressEvent): void {
    // Messages without a layer id are about the whole image (its tag, its digest).
    if (!e.id || !e.status || /^Pulling from /.test(e.status)) return;
    const layer = this.layers.get(e.id) ?? { done: false, current: 0, total: 0 };
    if (/^(Pull complete|Already exists)/.test(e.status)) layer.done = true;
    else if (e.status === 'Downloading' && e.progressDetail) {
      const left = e.progressDetail.total ?? layer.total - layer.current;
      layer.total = Math.max(layer.total, left);
      layer.current = Math.min(layer.total, layer.total - left + (e.progressDetail.current ?? 0));
    } else if (e.status === 'Download complete') layer.current = layer.total;
    this.layers.set(e.id, layer);
  }

  /** `2/5 layers, 12.3 of 40.1 MB downloaded`. */
  summary(): string {
    let done = 0;
    let current = 0;
    let total = 0;
    for (const l of this.layers.values()) {
      if (l.done) done++;
      current += l.done ? Math.max(l.current, l.total) : l.current;
      total += l.total;
    }
    const mb = (n: number) => (n / 1e6).toFixed(1);
    return `${done}/${this.layers.size} layers` + (total > 0 ? `, ${mb(current)} of ${mb(total)} MB downloaded` : '');
  }
}

/** An image as the engine lists it. */
export interface RuntimeImage {
  id: string;
  tags: string[];
  /** Creation time, in seconds since the epoch. */
  created: number;
  sizeBytes: number;
}

/**
 * The images that may be removed to free disk space, oldest first: no container of the engine
 * uses them (by image id or reference, whoever made the container), no desired pod refers to
 * them, and none is the pause image.
 */
export function imagesToCollect(
  images: readonly RuntimeImage[],
  containers: readonly { image: string; imageId?: string }[],
  keep: ReadonlySet<string>,
): RuntimeImage[] {
  const usedIds = new Set(containers.flatMap((c) => (c.imageId ? [c.imageId] : [])));
  const usedRefs = new Set(containers.map((c) => c.image));
  const normal = (ref: string) => {
    const last = ref.slice(ref.lastIndexOf('/') + 1);
    return last.includes(':') || ref.includes('@') ? ref : `${ref}:latest`;
  };
  const kept = new Set([...keep, ...usedRefs].flatMap((r) => [r, normal(r)]));
  return images
    .filter((img) => !usedIds.has(img.id) && !usedRefs.has(img.id) && !img.tags.some((t) => kept.has(t) || kept.has(normal(t))))
    .sort((a, b) => a.created - b.created);
}

/** A pull's progress is told once it has taken this long, and then at most once per interval. */
export const PULL_PROGRESS_AFTER_MS = 2_000;
export const PULL_PROGRESS_INTERVAL_MS = 5_000;

/** Whether a progress event is due now, for a pull started at `startedAt` and last told of at `lastAt` (if ever). */
export function progressDue(startedAt: number, lastAt: number | undefined, now: number): boolean {
  return now - startedAt >= PULL_PROGRESS_AFTER_MS && (lastAt === undefined || now - lastAt >= PULL_PROGRESS_INTERVAL_MS);
}
