import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { REPO } from '../../test/harness/processes.js';
import type { MemoryLatency } from './memory-runtime.js';
import type { DeviceTiming, FromWorker, ReceivedCount, ToWorker } from './protocol.js';

export interface FleetOptions {
  /** The hub's MQTT URL, or that of a broker (or proxy) in front of it. */
  hub: string;
  token: string;
  devices: number;
  /** Worker processes; the devices are shared out evenly. */
  processes: number;
  /** Device names are `<prefix>-<index>`. */
  namePrefix: string;
  labels: Record<string, string>;
  /** Parent of every device's state directory (a tmpfs keeps thousands of fsyncs cheap). */
  stateRoot: string;
  images: string[];
  latency?: MemoryLatency;
  failingImages?: string[];
  metricsIntervalSeconds?: number;
  /** The devices' MQTT keepalive, their heartbeat at the hub (default: the agent's, 15 s). */
  heartbeatSeconds?: number;
  /** At most this many devices per worker joining or connecting at once (default 0: all at once). */
  startConcurrency?: number;
  /** Extra node options of the workers, e.g. a larger heap (default: FLOTILLA_BENCH_FLEET_NODE_OPTIONS, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile them). */
  nodeOptions?: string[];
  onProgress?: (connected: number, joined: number) => void;
  /** The overlay on, over an in-memory network; the first `peerTableDevices` devices (default all) read the peer table. */
  overlay?: { peerTableDevices?: number };
}

export interface WorkerUsage {
  pid: number;
  rssBytes: number;
  heapUsedBytes: number;
  cpuSeconds: number;
}

const WORKER_BUNDLE = join(REPO, 'dist', 'bench', 'hollow-worker.mjs');
let bundled: Promise<void> | undefined;

/** The worker as one ES module (npm packages stay outside, found in the repository's node_modules). */
function bundleWorker(): Promise<void> {
  bundled ??= (async () => {
    mkdirSync(join(REPO, 'dist', 'bench'), { recursive: true });
    await build({ entryPoints: [join(REPO, 'bench', 'hollow', 'worker.ts')], outfile: WORKER_BUNDLE, bundle: true, platform: 'node', target: 'node20', format: 'esm', packages: 'external', logLevel: 'warning' });
  })();
  return bundled;
}

/**
 * A fleet of hollow devices in several worker processes (child_process.fork), each running its
 * share; they report readiness and per-device timings back over IPC.
 */
export class HollowFleet {
  private nextId = 1;
  private readonly progress = new Map<ChildProcess, { connected: number; joined: number }>();

  private constructor(
    private readonly workers: ChildProcess[],
    private readonly opts: FleetOptions,
  ) {}

  /** Starts every device and resolves once each has joined and connected; the timings are per device. */
  static async start(opts: FleetOptions): Promise<{ fleet: HollowFleet; timings: DeviceTiming[] }> {
    await bundleWorker();
    const names = Array.from({ length: opts.devices }, (_, i) => `${opts.namePrefix}-${i}`);
    const perWorker = Math.ceil(names.length / opts.processes);
    const workers: ChildProcess[] = [];
    for (let w = 0; w < opts.processes && w * perWorker < names.length; w++) {
      workers.push(fork(WORKER_BUNDLE, [], { execArgv: opts.nodeOptions ?? (process.env.FLOTILLA_BENCH_FLEET_NODE_OPTIONS ?? '').split(' ').filter(Boolean), stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' }));
    }
    const fleet = new HollowFleet(workers, opts);
    const ready = workers.map((worker, w) => {
      const readers = opts.overlay?.peerTableDevices ?? opts.devices;
      const devices = names.slice(w * perWorker, (w + 1) * perWorker).map((name, i) => ({ name, labels: opts.labels, ...(opts.overlay ? { peerTable: w * perWorker + i < readers } : {}) }));
      worker.on('message', (msg: FromWorker) => {
        if (msg.type !== 'progress') return;
        fleet.progress.set(worker, { connected: msg.connected, joined: msg.joined });
        const total = [...fleet.progress.values()].reduce((a, p) => ({ connected: a.connected + p.connected, joined: a.joined + p.joined }), { connected: 0, joined: 0 });
        opts.onProgress?.(total.connected, total.joined);
      });
      const answer = fleet.next(worker, 'ready');
      fleet.send(worker, {
        type: 'setup',
        hub: opts.hub,
        token: opts.token,
        stateRoot: opts.stateRoot,
        devices,
        images: opts.images,
        ...(opts.latency ? { latency: opts.latency } : {}),
        ...(opts.failingImages ? { failingImages: opts.failingImages } : {}),
        ...(opts.metricsIntervalSeconds !== undefined ? { metricsIntervalSeconds: opts.metricsIntervalSeconds } : {}),
        ...(opts.heartbeatSeconds !== undefined ? { heartbeatSeconds: opts.heartbeatSeconds } : {}),
        startConcurrency: opts.startConcurrency ?? 0,
        ...(opts.overlay ? { overlay: true } : {}),
      });
      return answer;
    });
    try {
      const timings = (await Promise.all(ready)).flatMap((r) => r.timings);
      return { fleet, timings };
    } catch (err) {
      fleet.kill();
      throw err;
    }
  }

  get pids(): number[] {
    return this.workers.map((w) => w.pid!).filter(Boolean);
  }

  /**
   * Arms every device to time its first status report in which `pods` pods, whose containers
   * all run one of `images`, are Running (the hub's acknowledgement of it); resolves once armed,
   * with `times`: the epoch milliseconds to come (null for a device that timed out).
   */
  async expect(images: string[], pods: number, timeoutMs: number): Promise<{ times: Promise<(number | null)[]> }> {
    const id = this.nextId++;
    const answers = this.workers.map((w) => this.next(w, 'reported', (m) => m.id === id, timeoutMs + 30_000));
    await Promise.all(this.workers.map((w) => {
      const armed = this.next(w, 'armed', (m) => m.id === id);
      this.send(w, { type: 'expect', id, images, pods, timeoutMs });
      return armed;
    }));
    // In an object: an async function returning a bare promise would wait for it.
    return { times: Promise.all(answers).then((all) => all.flatMap((a) => a.times)) };
  }

  /** What each device that reads the peer table has received since it connected. */
  async received(): Promise<ReceivedCount[]> {
    const answers = await Promise.all(
      this.workers.map((w) => {
        const answer = this.next(w, 'received');
        this.send(w, { type: 'received' });
        return answer;
      }),
    );
    return answers.flatMap((a) => a.counts);
  }

  /** Memory and CPU of each worker process. */
  async usage(): Promise<WorkerUsage[]> {
    return Promise.all(
      this.workers.map(async (w) => {
        const answer = this.next(w, 'usage');
        this.send(w, { type: 'usage' });
        const u = await answer;
        return { pid: w.pid!, rssBytes: u.rssBytes, heapUsedBytes: u.heapUsedBytes, cpuSeconds: (u.cpuUserUs + u.cpuSystemUs) / 1e6 };
      }),
    );
  }

  /** Stops every device in order (each says offline), then the workers. */
  async stop(timeoutMs = 60_000): Promise<void> {
    await Promise.all(
      this.workers.map(async (w) => {
        if (w.exitCode !== null || w.signalCode !== null) return;
        const exited = new Promise((r) => w.once('exit', r));
        this.send(w, { type: 'stop' });
        const timer = setTimeout(() => w.kill('SIGKILL'), timeoutMs);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  /**
   * Ends the workers after a run: each exits on its own when its channel closes (writing a CPU
   * profile when started with --cpu-prof), and whatever is left after `graceMs` is killed.
   */
  async end(graceMs = 10_000): Promise<void> {
    const exits = this.workers.filter((w) => w.exitCode === null && w.signalCode === null).map((w) => new Promise((r) => w.once('exit', r)));
    for (const w of this.workers) if (w.connected) w.disconnect();
    const timer = setTimeout(() => this.kill(), graceMs);
    await Promise.all(exits);
    clearTimeout(timer);
  }

  /** Ends every worker at once, as a power cut of the whole fleet. */
  kill(): void {
    for (const w of this.workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
  }

  get size(): number {
    return this.opts.devices;
  }

  private send(worker: ChildProcess, msg: ToWorker): void {
    worker.send(msg);
  }

  /** The next message of `type` from `worker` (that `match` accepts); rejects if the worker exits first. */
  private next<T extends FromWorker['type']>(worker: ChildProcess, type: T, match: (m: Extract<FromWorker, { type: T }>) => boolean = () => true, timeoutMs = 0): Promise<Extract<FromWorker, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = timeoutMs > 0 ? setTimeout(() => done(new Error(`fleet worker ${worker.pid} did not answer '${type}' within ${timeoutMs} ms`)), timeoutMs) : undefined;
      const onMessage = (msg: FromWorker) => {
        if (msg.type === type && match(msg as Extract<FromWorker, { type: T }>)) done(undefined, msg as Extract<FromWorker, { type: T }>);
      };
      const onExit = (code: number | null) => done(new Error(`fleet worker ${worker.pid} exited (${code}) before answering '${type}'`));
      const done = (err?: Error, msg?: Extract<FromWorker, { type: T }>) => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        if (err) reject(err);
        else resolve(msg!);
      };
      worker.on('message', onMessage);
      worker.once('exit', onExit);
    });
  }
}
