import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { PullProgressEvent, RegistryAuth, RuntimeImage } from '../../agent/runtime/images.js';
import type {
  ContainerCreateSpec,
  ContainerLogOptions,
  ContainerRunState,
  ContainerRuntime,
  ContainerStats,
  EngineInfo,
  ExecResult,
  RuntimeContainer,
} from '../../agent/runtime/runtime.js';
import { mainProcess, runCommand, type ProcessOutcome } from './commands.js';

/** An image the engine holds, with the configuration an `import --change` or a pull gives it. */
export interface MemoryImage {
  ref: string;
  entrypoint?: string[];
  cmd?: string[];
}

/** The engine calls that take time; milliseconds each (default 0: the next turn of the event loop). */
export type MemoryLatency = Partial<Record<'create' | 'start' | 'stop' | 'remove' | 'pull' | 'list', number>>;

export interface MemoryRuntimeOptions {
  /** Images present from the start (the "image present" case of docs/ARCHITECTURE.md, 'Performance targets'). */
  images?: readonly (string | MemoryImage)[];
  /** What a pull can fetch; pulling anything else fails as an unreachable registry would. */
  registry?: readonly (string | MemoryImage)[];
  latency?: MemoryLatency;
  /** A start fails with this message for the containers it returns one for (a broken mount, a missing binary). */
  startFailure?: (spec: ContainerCreateSpec) => string | undefined;
}

interface Held {
  id: string;
  spec: ContainerCreateSpec;
  image: MemoryImage;
  imageId: string;
  state: ContainerRunState;
  exitCode?: number;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  podIP?: string;
  /** Why the last start failed, as the engine's State.Error. */
  error?: string;
  /** Ends the container's main process when it is set to exit on its own. */
  exitTimer?: NodeJS.Timeout;
  logs: string[];
  followers: Set<Readable>;
}

interface Watcher {
  labels: [string, string][];
  onChange: () => void;
}

/** An engine error with the status code dockerode would carry, so callers treat both alike. */
function engineError(statusCode: number, message: string): Error {
  return Object.assign(new Error(message), { statusCode });
}

function imageId(ref: string): string {
  return `sha256:${createHash('sha256').update(ref).digest('hex')}`;
}

/** `busybox` means `busybox:latest`, as the engine reads a reference without a tag. */
function normalRef(ref: string): string {
  const last = ref.slice(ref.lastIndexOf('/') + 1);
  return last.includes(':') || ref.includes('@') ? ref : `${ref}:latest`;
}

/**
 * A container engine in memory, behind the agent's ContainerRuntime contract: what the hollow
 * devices of bench/ run their pods on. It keeps the engine's observable behaviour (states and
 * their times, name conflicts, an image in use that cannot be removed, asynchronous events for
 * every change, addresses on named networks, exec only in running containers), not its cost.
 * test/integration/runtime-contract.test.ts holds it to the same checks as DockerRuntime.
 */
export class MemoryRuntime implements ContainerRuntime {
  private readonly containers = new Map<string, Held>();
  private readonly names = new Map<string, string>();
  private readonly images = new Map<string, { id: string; image: MemoryImage; created: number }>();
  private readonly registry = new Map<string, MemoryImage>();
  private readonly networks = new Map<string, { next: number; base: number[] }>();
  private readonly watchers = new Set<Watcher>();
  private available = true;

  constructor(private readonly opts: MemoryRuntimeOptions = {}) {
    for (const image of opts.images ?? []) this.addImage(typeof image === 'string' ? { ref: image } : image);
    for (const image of opts.registry ?? []) {
      const img = typeof image === 'string' ? { ref: image } : image;
      this.registry.set(normalRef(img.ref), img);
    }
  }

  /** An engine that stops answering (and ends every event stream), or answers again. */
  setAvailable(available: boolean): void {
    this.available = available;
  }

  async ping(): Promise<EngineInfo> {
    this.mustAnswer();
    return { name: 'memory', version: '1.0.0', os: 'linux', arch: 'amd64' };
  }

  async containerStats(id: string): Promise<ContainerStats | undefined> {
    this.mustAnswer();
    const c = this.containers.get(id);
    if (!c || c.state !== 'running') return undefined;
    // Counters that grow with the container's uptime, so that successive readings change as a real container's do.
    const upMs = Date.now() - Date.parse(c.startedAt ?? c.createdAt);
    const cpuNs = upMs * 1_000;
    const stats: ContainerStats = { cpuTotalNs: cpuNs, cpuUserNs: Math.round(cpuNs * 0.7), cpuSystemNs: Math.round(cpuNs * 0.3), memoryUsageBytes: 4 << 20, memoryWorkingSetBytes: 3 << 20, memoryRssBytes: 2 << 20, memoryCacheBytes: 1 << 20, pids: 1 };
    if (c.podIP) {
      const packets = Math.floor(upMs / 10_000);
      stats.networks = { eth0: { rxBytes: packets * 90, rxPackets: packets, rxErrors: 0, rxDropped: 0, txBytes: packets * 90, txPackets: packets, txErrors: 0, txDropped: 0 } };
    }
    return stats;
  }

  async listContainers(labels: Record<string, string>): Promise<RuntimeContainer[]> {
    await this.pause('list');
    this.mustAnswer();
    const wanted = Object.entries(labels);
    const out: RuntimeContainer[] = [];
    for (const c of this.containers.values()) if (wanted.every(([k, v]) => c.spec.labels[k] === v)) out.push(this.view(c));
    return out;
  }

  async hasImage(ref: string): Promise<boolean> {
    this.mustAnswer();
    return this.images.has(normalRef(ref)) || [...this.images.values()].some((i) => i.id === ref);
  }

  async pullImage(ref: string, opts: { auth?: RegistryAuth; onProgress?: (event: PullProgressEvent) => void } = {}): Promise<void> {
    this.mustAnswer();
    await this.pause('pull');
    const image = this.registry.get(normalRef(ref));
    if (!image) throw new Error(`pull access denied for ${ref.split(':')[0]}, repository does not exist or may require 'docker login'`);
    opts.onProgress?.({ status: `Pulling from ${ref.split(':')[0]}` });
    opts.onProgress?.({ id: 'layer0', status: 'Pull complete' });
    this.addImage({ ...image, ref: normalRef(ref) });
  }

  async listImages(): Promise<RuntimeImage[]> {
    this.mustAnswer();
    const byId = new Map<string, RuntimeImage>();
    for (const [tag, i] of this.images) {
      const entry = byId.get(i.id) ?? { id: i.id, tags: [], created: i.created, sizeBytes: 1 << 20 };
      entry.tags.push(tag);
      byId.set(i.id, entry);
    }
    return [...byId.values()];
  }

  async removeImage(id: string): Promise<void> {
    this.mustAnswer();
    const tags = [...this.images].filter(([tag, i]) => i.id === id || tag === normalRef(id));
    if (tags.length === 0) throw engineError(404, `No such image: ${id}`);
    const ids = new Set(tags.map(([, i]) => i.id));
    const user = [...this.containers.values()].find((c) => ids.has(c.imageId));
    // The engine refuses to untag an image any container (running or not) was made from.
    if (user) throw engineError(409, `conflict: unable to remove repository reference "${tags[0]![0]}" (must force) - container ${user.id.slice(0, 12)} is using its referenced image ${[...ids][0]!.slice(7, 19)}`);
    for (const [tag] of tags) this.images.delete(tag);
  }

  async importImage(_tar: Buffer, repo: string, tag: string, changes: readonly string[] = []): Promise<void> {
    this.mustAnswer();
    const image: MemoryImage = { ref: `${repo}:${tag}` };
    for (const change of changes) {
      const m = /^(CMD|ENTRYPOINT)\s+(\[.*\])$/.exec(change.trim());
      if (m) image[m[1] === 'CMD' ? 'cmd' : 'entrypoint'] = JSON.parse(m[2]!) as string[];
    }
    this.addImage(image);
  }

  async ensureNetwork(name: string, subnet: string | undefined): Promise<void> {
    this.mustAnswer();
    if (this.networks.has(name)) return;
    const base = (subnet ?? '172.30.0.0/16').split('/')[0]!.split('.').map(Number);
    this.networks.set(name, { next: 2, base });
  }

  async createContainer(spec: ContainerCreateSpec): Promise<string> {
    this.mustAnswer();
    await this.pause('create');
    const taken = this.names.get(spec.name);
    if (taken) throw engineError(409, `Conflict. The container name "/${spec.name}" is already in use by container "${taken}". You have to remove (or rename) that container to be able to reuse that name.`);
    const image = this.images.get(normalRef(spec.image)) ?? [...this.images.values()].find((i) => i.id === spec.image);
    if (!image) throw engineError(404, `No such image: ${spec.image}`);
    const mode = spec.networkMode;
    if (mode.startsWith('container:') && !this.containers.has(mode.slice('container:'.length))) throw engineError(404, `No such container: ${mode.slice('container:'.length)}`);
    if (!mode.startsWith('container:') && mode !== 'host' && mode !== 'none' && !this.networks.has(mode)) throw engineError(404, `network ${mode} not found`);
    const id = randomBytes(32).toString('hex');
    const held: Held = { id, spec: { ...spec, labels: { ...spec.labels } }, image: image.image, imageId: image.id, state: 'created', createdAt: new Date().toISOString(), logs: [], followers: new Set() };
    this.containers.set(id, held);
    this.names.set(spec.name, id);
    this.changed(held);
    return id;
  }

  async startContainer(id: string): Promise<void> {
    this.mustAnswer();
    await this.pause('start');
    const c = this.mustFind(id);
    if (c.state === 'running') return;
    const failure = this.opts.startFailure?.(c.spec);
    if (failure) {
      c.state = 'created';
      c.exitCode = 128;
      c.error = failure;
      throw engineError(500, failure);
    }
    const network = this.networks.get(c.spec.networkMode);
    if (network && !c.podIP) {
      const n = network.next++;
      c.podIP = [network.base[0], network.base[1], (network.base[2] ?? 0) + (n >> 8), n & 255].join('.');
    }
    c.state = 'running';
    c.startedAt = new Date().toISOString();
    delete c.finishedAt;
    delete c.exitCode;
    delete c.error;
    this.changed(c);
    const outcome: ProcessOutcome = mainProcess(c.spec.entrypoint ?? c.image.entrypoint, c.spec.cmd ?? (c.spec.entrypoint ? undefined : c.image.cmd));
    c.logs.push(...outcome.output);
    for (const f of c.followers) for (const line of outcome.output) f.push(line);
    if (outcome.exitCode !== undefined) {
      const code = outcome.exitCode;
      c.exitTimer = setTimeout(() => this.finish(c, code), outcome.afterMs);
      c.exitTimer.unref();
    }
  }

  async stopContainer(id: string, _timeoutSeconds?: number): Promise<void> {
    this.mustAnswer();
    await this.pause('stop');
    const c = this.containers.get(id);
    if (!c || c.state !== 'running') return; // gone or already stopped: nothing to do, as the engine's 304/404
    // The main process ends on SIGTERM (128 + 15).
    this.finish(c, 143);
  }

  async removeContainer(id: string): Promise<void> {
    this.mustAnswer();
    await this.pause('remove');
    const c = this.containers.get(id);
    if (!c) return;
    if (c.state === 'running') this.finish(c, 137); // force: SIGKILL
    this.containers.delete(id);
    this.names.delete(c.spec.name);
    this.changed(c);
  }

  async containerLogs(id: string, opts: ContainerLogOptions): Promise<Readable> {
    this.mustAnswer();
    const c = this.mustFind(id);
    const lines = opts.tail !== undefined ? c.logs.slice(Math.max(0, c.logs.length - opts.tail)) : [...c.logs];
    const stream = new Readable({ read() {} });
    for (const line of lines) stream.push(line);
    if (!opts.follow || c.state !== 'running') stream.push(null);
    else {
      c.followers.add(stream);
      stream.once('close', () => c.followers.delete(stream));
    }
    return stream;
  }

  async exec(id: string, cmd: readonly string[], timeoutMs: number): Promise<ExecResult> {
    this.mustAnswer();
    const c = this.mustFind(id);
    if (c.state !== 'running') throw engineError(409, `container ${id} is not running`);
    const result = runCommand(cmd);
    if (result.afterMs > timeoutMs) {
      await new Promise((r) => setTimeout(r, timeoutMs));
      throw new Error(`command timed out after ${timeoutMs} ms`);
    }
    if (result.afterMs > 0) await new Promise((r) => setTimeout(r, result.afterMs));
    return { exitCode: result.exitCode, output: result.output };
  }

  async watchContainers(labels: Record<string, string>, onChange: () => void, onError: (err: Error) => void): Promise<() => void> {
    this.mustAnswer();
    const watcher: Watcher = { labels: Object.entries(labels), onChange };
    this.watchers.add(watcher);
    const check = setInterval(() => {
      if (this.available) return;
      this.watchers.delete(watcher);
      clearInterval(check);
      onError(new Error('engine event stream ended'));
    }, 1_000);
    check.unref();
    return () => {
      clearInterval(check);
      this.watchers.delete(watcher);
    };
  }

  private addImage(image: MemoryImage): void {
    const ref = normalRef(image.ref);
    this.images.set(ref, { id: imageId(ref), image: { ...image, ref }, created: Math.floor(Date.now() / 1000) });
  }

  private finish(c: Held, exitCode: number): void {
    if (c.exitTimer) clearTimeout(c.exitTimer);
    c.exitTimer = undefined;
    if (c.state !== 'running') return;
    c.state = 'exited';
    c.exitCode = exitCode;
    c.finishedAt = new Date().toISOString();
    for (const f of c.followers) f.push(null);
    c.followers.clear();
    this.changed(c);
  }

  /** Every watcher whose labels the container carries hears of it, later, as an engine's event stream delivers. */
  private changed(c: Held): void {
    for (const w of this.watchers) {
      if (w.labels.every(([k, v]) => c.spec.labels[k] === v)) setImmediate(() => this.watchers.has(w) && w.onChange());
    }
  }

  private view(c: Held): RuntimeContainer {
    return {
      id: c.id,
      name: c.spec.name,
      image: c.spec.image,
      imageId: c.imageId,
      labels: { ...c.spec.labels },
      state: c.state,
      ...(c.exitCode !== undefined ? { exitCode: c.exitCode } : {}),
      oomKilled: false,
      ...(c.error ? { error: c.error } : {}),
      createdAt: c.createdAt,
      ...(c.startedAt ? { startedAt: c.startedAt } : {}),
      ...(c.finishedAt ? { finishedAt: c.finishedAt } : {}),
      ...(c.podIP ? { podIP: c.podIP } : {}),
    };
  }

  private mustFind(id: string): Held {
    const c = this.containers.get(id);
    if (!c) throw engineError(404, `No such container: ${id}`);
    return c;
  }

  private mustAnswer(): void {
    if (!this.available) throw new Error('connect ECONNREFUSED (the engine is not answering)');
  }

  private async pause(call: keyof MemoryLatency): Promise<void> {
    const ms = this.opts.latency?.[call] ?? 0;
    await new Promise<void>((resolve) => (ms > 0 ? setTimeout(resolve, ms) : setImmediate(resolve)));
  }
}
