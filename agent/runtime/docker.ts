import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import { DockerLogDemuxer } from './demux.js';
import type { PullProgressEvent, RegistryAuth, RuntimeImage } from './images.js';
import { imageReferenceProblem } from '../../shared/resources/image.js';
import { statsFromDocker, type DockerStatsJson } from '../metrics/docker-stats.js';

import type { BridgeNetworkSpec, ContainerCreateSpec, ContainerLogOptions, ContainerRunState, ContainerRuntime, ContainerStats, EngineInfo, ExecResult, RuntimeContainer, RuntimeNetwork } from './runtime.js';

/** How long a pull may go without a progress report from the engine before it is ended as failed. */
const PULL_STALL_MS = 60_000;

/** What an exec keeps of a command's output, as Kubernetes keeps at most 10 KiB of an exec probe's. */
const EXEC_OUTPUT_LIMIT = 10 * 1024;

/** Parses `unix:///path`, `tcp://host:port` or `http://host:port` into dockerode's options. */
export function dockerOptions(dockerHost: string | undefined): Docker.DockerOptions {
  const host = dockerHost ?? process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
  if (host.startsWith('unix://')) return { socketPath: host.slice('unix://'.length) };
  const url = new URL(host.replace(/^tcp:/, 'http:'));
  return { host: url.hostname, port: Number(url.port || 2375), protocol: 'http' };
}

/** The Docker engine (or any engine that speaks its API) behind the ContainerRuntime interface. */
export class DockerRuntime implements ContainerRuntime {
  private readonly docker: Docker;
  private dataRoot: string | undefined;
  private dataRootFor: string | undefined;

  constructor(dockerHost?: string) {
    this.docker = new Docker(dockerOptions(dockerHost));
  }

  async ping(): Promise<EngineInfo> {
    const v = await this.docker.version();
    // `info` is costly on a small device; the data root is asked once per engine version.
    if (this.dataRootFor !== v.Version) {
      this.dataRoot = ((await this.docker.info()) as { DockerRootDir?: string }).DockerRootDir;
      this.dataRootFor = v.Version;
    }
    return { name: 'docker', version: v.Version, os: v.Os, arch: v.Arch, ...(this.dataRoot ? { dataRoot: this.dataRoot } : {}) };
  }

  async containerStats(id: string): Promise<ContainerStats | undefined> {
    try {
      // one-shot: one reading now, without the engine's second sample a second later for its CPU percentage.
      return statsFromDocker((await this.docker.getContainer(id).stats({ stream: false, 'one-shot': true } as { stream: false })) as DockerStatsJson);
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return undefined;
      throw err;
    }
  }

  async listContainers(labels: Record<string, string>): Promise<RuntimeContainer[]> {
    const list = await this.docker.listContainers({ all: true, filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) } });
    // The list lacks exit codes and times; inspect each (a device runs a handful of containers).
    const out: RuntimeContainer[] = [];
    for (const c of list) {
      try {
        out.push(fromInspect(await this.docker.getContainer(c.Id).inspect()));
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode !== 404) throw err;
      }
    }
    return out;
  }

  async hasImage(ref: string): Promise<boolean> {
    // The engine answers 400 for a malformed reference: no such image can be present, and one
    // pod's bad reference must not fail the look-up of every image.
    if (imageReferenceProblem(ref)) return false;
    try {
      await this.docker.getImage(ref).inspect();
      return true;
    } catch (err) {
      const code = (err as { statusCode?: number }).statusCode;
      if (code === 404 || code === 400) return false;
      throw err;
    }
  }

  async pullImage(ref: string, opts: { auth?: RegistryAuth; onProgress?: (event: PullProgressEvent) => void } = {}): Promise<void> {
    let stream: NodeJS.ReadableStream;
    try {
      stream = await this.docker.pull(ref, opts.auth ? { authconfig: opts.auth } : {});
    } catch (err) {
      // The engine's own words (a registry's refusal, an unknown manifest), not the HTTP wrapping.
      throw new Error(engineMessage(err));
    }
    await new Promise<void>((resolve, reject) => {
      // A registry that stops sending would hold the pull (and the pulls queued behind it) for
      // ever: a pull that reports no progress for PULL_STALL_MS is ended as failed, as the
      // kubelet's image-pull-progress-deadline does, and goes into the pull back-off.
      let stall: NodeJS.Timeout | undefined;
      const settle = (err?: Error) => {
        clearTimeout(stall);
        if (err) reject(err);
        else resolve();
      };
      const watch = () => {
        clearTimeout(stall);
        stall = setTimeout(() => {
          (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
          settle(new Error(`the pull of ${ref} made no progress for ${PULL_STALL_MS / 1000} s`));
        }, PULL_STALL_MS);
        stall.unref();
      };
      watch();
      this.docker.modem.followProgress(
        stream,
        (err: Error | null) => settle(err ?? undefined),
        (event: PullProgressEvent & { error?: string }) => {
          if (event.error) return settle(new Error(event.error));
          watch();
          opts.onProgress?.(event);
        },
      );
    });
  }

  async listImages(): Promise<RuntimeImage[]> {
    const list = await this.docker.listImages({ all: false });
    return list.map((i) => ({ id: i.Id, tags: (i.RepoTags ?? []).filter((t) => t !== '<none>:<none>'), created: i.Created, sizeBytes: i.Size }));
  }

  async removeImage(id: string): Promise<void> {
    // An image with several tags is only removed by id with force, which would also take an
    // image in use: each tag is removed instead, and the last one removes the image.
    const tags = ((await this.docker.getImage(id).inspect()).RepoTags ?? []).filter((t) => t !== '<none>:<none>');
    for (const tag of tags) await this.docker.getImage(tag).remove();
    if (tags.length === 0) await this.docker.getImage(id).remove();
  }

  async importImage(tar: Buffer, repo: string, tag: string, changes: readonly string[] = []): Promise<void> {
    const { Readable } = await import('node:stream');
    const stream = await this.docker.importImage(Readable.from([tar]) as unknown as NodeJS.ReadableStream, { repo, tag, ...(changes.length ? { changes: [...changes] } : {}) });
    // Import errors arrive inside a 200 answer's progress stream, not as an HTTP error.
    await new Promise<void>((resolve, reject) =>
      this.docker.modem.followProgress(
        stream,
        (err: Error | null) => (err ? reject(err) : resolve()),
        (event: { error?: string }) => {
          if (event.error) reject(new Error(event.error));
        },
      ),
    );
  }

  async ensureNetwork(name: string, subnet: string | undefined): Promise<void> {
    const existing = await this.docker.listNetworks({ filters: { name: [name] } });
    if (existing.some((n) => n.Name === name)) return;
    try {
      await this.docker.createNetwork({
        Name: name,
        Driver: 'bridge',
        CheckDuplicate: true,
        Labels: { 'flotilla.network': 'pods' },
        ...(subnet ? { IPAM: { Driver: 'default', Config: [{ Subnet: subnet }] } } : {}),
      });
    } catch (err) {
      // Two agents sharing one engine may race to create it; the loser finds it made.
      if ((err as { statusCode?: number }).statusCode !== 409) throw err;
    }
  }

  async listNetworks(labels: Record<string, string>): Promise<RuntimeNetwork[]> {
    const list = await this.docker.listNetworks({ filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) } });
    return list.map((n) => {
      const ipam = (n.IPAM?.Config ?? []).find((c) => c.Subnet && !c.Subnet.includes(':'));
      return { id: n.Id, name: n.Name, labels: n.Labels ?? {}, ...(ipam?.Subnet ? { subnet: ipam.Subnet } : {}), ...(ipam?.Gateway ? { gateway: ipam.Gateway } : {}), options: n.Options ?? {} };
    });
  }

  async createBridgeNetwork(spec: BridgeNetworkSpec): Promise<void> {
    try {
      await this.docker.createNetwork({
        Name: spec.name,
        Driver: 'bridge',
        CheckDuplicate: true,
        Labels: spec.labels,
        Options: spec.options,
        IPAM: { Driver: 'default', Config: [{ Subnet: spec.subnet, Gateway: spec.gateway }] },
      });
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 409) throw engineError(err);
    }
  }

  async removeNetwork(name: string): Promise<void> {
    try {
      await this.docker.getNetwork(name).remove();
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) throw engineError(err);
    }
  }

  async createContainer(spec: ContainerCreateSpec): Promise<string> {
    const ports = spec.portBindings ?? [];
    const c = await this.docker.createContainer({
      name: spec.name,
      Image: spec.image,
      Labels: spec.labels,
      ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
      ...(spec.cmd ? { Cmd: spec.cmd } : {}),
      ...(spec.env ? { Env: spec.env } : {}),
      ...(spec.workingDir ? { WorkingDir: spec.workingDir } : {}),
      ...(spec.hostname ? { Hostname: spec.hostname } : {}),
      ...(spec.user ? { User: spec.user } : {}),
      ...(spec.stopTimeout !== undefined ? { StopTimeout: spec.stopTimeout } : {}),
      ...(ports.length ? { ExposedPorts: Object.fromEntries(ports.map((p) => [`${p.containerPort}/${p.protocol}`, {}])) } : {}),
      HostConfig: {
        NetworkMode: spec.networkMode,
        ...(ports.length ? { PortBindings: Object.fromEntries(ports.map((p) => [`${p.containerPort}/${p.protocol}`, [{ HostPort: String(p.hostPort) }]])) } : {}),
        ...(spec.memoryBytes ? { Memory: spec.memoryBytes } : {}),
        ...(spec.nanoCpus ? { NanoCpus: spec.nanoCpus } : {}),
        ...(spec.pidsLimit ? { PidsLimit: spec.pidsLimit } : {}),
        ...(spec.binds?.length ? { Binds: spec.binds } : {}),
        ...(spec.privileged ? { Privileged: true } : {}),
        ...(spec.readonlyRootfs ? { ReadonlyRootfs: true } : {}),
        ...(spec.capAdd?.length ? { CapAdd: spec.capAdd } : {}),
        ...(spec.capDrop?.length ? { CapDrop: spec.capDrop } : {}),
        // The agent restarts containers itself, by the pod's restartPolicy and with back-off.
        RestartPolicy: { Name: 'no' },
      },
    }).catch((err: unknown) => {
      throw engineError(err);
    });
    return c.id;
  }

  async startContainer(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).start();
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 304) throw engineError(err); // 304: already started
    }
  }

  async stopContainer(id: string, timeoutSeconds?: number): Promise<void> {
    try {
      await this.docker.getContainer(id).stop(timeoutSeconds === undefined ? {} : { t: timeoutSeconds });
    } catch (err) {
      const code = (err as { statusCode?: number }).statusCode;
      if (code !== 304 && code !== 404) throw err; // already stopped, or gone
    }
  }

  async removeContainer(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      const code = (err as { statusCode?: number }).statusCode;
      if (code !== 404 && code !== 409) throw err; // gone, or removal already in progress
    }
  }

  async containerLogs(id: string, opts: ContainerLogOptions): Promise<Readable> {
    const info = await this.docker.getContainer(id).inspect();
    const query = {
      stdout: true,
      stderr: true,
      follow: opts.follow,
      timestamps: false,
      ...(opts.tail !== undefined ? { tail: opts.tail } : {}),
      ...(opts.sinceSeconds !== undefined ? { since: Math.floor(Date.now() / 1000) - opts.sinceSeconds } : {}),
    };
    // Always as a stream (dockerode's logs() buffers the whole log in memory unless following,
    // too much for a small device with a chatty container).
    const body = await new Promise<IncomingMessage>((resolve, reject) =>
      this.docker.modem.dial(
        { path: `/containers/${id}/logs?`, method: 'GET', isStream: true, statusCodes: { 200: true, 404: 'no such container', 500: 'server error' }, options: query },
        (err: unknown, res: unknown) => (err ? reject(err) : resolve(res as IncomingMessage)),
      ),
    );
    // Only a container without a TTY has its stdout and stderr multiplexed in frames.
    if (info.Config.Tty) return body;
    const demuxer = new DockerLogDemuxer();
    body.on('error', (err) => demuxer.destroy(err));
    demuxer.on('close', () => body.destroy());
    return body.pipe(demuxer);
  }

  async exec(id: string, cmd: readonly string[], timeoutMs: number): Promise<ExecResult> {
    const exec = await this.docker.getContainer(id).exec({ Cmd: [...cmd], AttachStdout: true, AttachStderr: true, Tty: false });
    const stream = (await exec.start({ hijack: true, stdin: false })) as NodeJS.ReadableStream & { destroy(): void };
    // Without a TTY the engine multiplexes stdout and stderr in frames, as it does for logs.
    const demuxer = new DockerLogDemuxer();
    const chunks: Buffer[] = [];
    let kept = 0;
    demuxer.on('data', (chunk: Buffer) => {
      if (kept >= EXEC_OUTPUT_LIMIT) return;
      chunks.push(chunk.subarray(0, EXEC_OUTPUT_LIMIT - kept));
      kept += Math.min(chunk.length, EXEC_OUTPUT_LIMIT - kept);
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`command timed out after ${timeoutMs} ms`)), timeoutMs);
        stream.on('error', reject);
        demuxer.on('error', reject);
        demuxer.on('end', () => resolve());
        stream.pipe(demuxer);
      });
    } finally {
      clearTimeout(timer);
      stream.destroy();
    }
    const info = await exec.inspect();
    return { exitCode: info.ExitCode ?? -1, output: Buffer.concat(chunks).toString('utf8') };
  }

  async watchContainers(labels: Record<string, string>, onChange: () => void, onError: (err: Error) => void): Promise<() => void> {
    const stream = (await this.docker.getEvents({ filters: { type: ['container'], label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) } })) as NodeJS.ReadableStream & { destroy?: () => void };
    // Reported once, and never after the caller stopped the stream: a daemon that goes away may
    // end the stream, fail it, or only close its socket.
    let over = false;
    const lost = (err: Error) => {
      if (over) return;
      over = true;
      onError(err);
    };
    stream.on('data', () => onChange());
    stream.on('error', (err: Error) => lost(err));
    stream.on('end', () => lost(new Error('engine event stream ended')));
    stream.on('close', () => lost(new Error('engine event stream closed')));
    return () => {
      over = true;
      stream.destroy?.();
    };
  }
}

/**
 * What the engine said of a failed call, without dockerode's wrapping
 * (`(HTTP code 500) server error - <the engine's message> `).
 */
export function engineMessage(err: unknown): string {
  const json = (err as { json?: unknown }).json;
  const message = json && typeof json === 'object' ? (json as { message?: unknown }).message : undefined;
  if (typeof message === 'string' && message) return message.trim();
  return String((err as Error).message ?? err).replace(/^\(HTTP code \d+\) [^-]*- /, '').trim();
}

/** The engine's refusal as an error of its own words, keeping the HTTP status (callers tell 404 from 409 by it). */
function engineError(err: unknown): Error {
  const statusCode = (err as { statusCode?: number }).statusCode;
  return Object.assign(new Error(engineMessage(err)), statusCode !== undefined ? { statusCode } : {});
}

function fromInspect(info: Docker.ContainerInspectInfo): RuntimeContainer {
  const s = info.State;
  const zero = (t: string | undefined) => (t && !t.startsWith('0001-') ? t : undefined);
  const startedAt = zero(s.StartedAt);
  const finishedAt = zero(s.FinishedAt);
  // An infra container is attached to the pod network by name (its NetworkMode); app containers
  // join its namespace (`container:<id>`) and host-network ones have no address of their own.
  const podIP = info.NetworkSettings?.Networks?.[info.HostConfig?.NetworkMode ?? '']?.IPAddress || undefined;
  return {
    id: info.Id,
    name: info.Name.replace(/^\//, ''),
    image: info.Config.Image,
    imageId: info.Image,
    labels: info.Config.Labels ?? {},
    state: s.Status as ContainerRunState,
    exitCode: s.ExitCode,
    oomKilled: s.OOMKilled,
    ...(s.Error ? { error: s.Error } : {}),
    createdAt: info.Created,
    ...(startedAt ? { startedAt } : {}),
    ...(finishedAt ? { finishedAt } : {}),
    ...(podIP ? { podIP } : {}),
    ...(info.HostConfig?.NetworkMode ? { networkMode: info.HostConfig.NetworkMode } : {}),
  };
}
