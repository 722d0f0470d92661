import type { Logger } from 'pino';
import type { DesiredPod } from '../../shared/protocol/messages.js';
import type { Container } from '../../shared/resources/pod.js';
import type { ProbeKind } from '../../shared/resources/probe.js';
import type { PodEvent } from '../reconcile/execute.js';
import { newestFirst } from '../reconcile/plan.js';
import { INFRA_CONTAINER, LABEL_CONTAINER, LABEL_POD_UID, LABEL_RESTART_COUNT, type ContainerRuntime, type RuntimeContainer } from '../runtime/runtime.js';
import { runProbe, type ProbeTarget } from './handlers.js';
import { ContainerProbeState } from './state.js';

export interface ProbeManagerHooks {
  /** A container's readiness changed, or one was killed: the pod's status must be worked out again. */
  onChange: () => void;
  onEvent: (e: PodEvent) => void;
}

interface Entry {
  podUid: string;
  container: Container;
  /** The container instance the results belong to, and its attempt (restart count label). */
  containerId: string;
  attempt: number;
  target: ProbeTarget;
  state: ContainerProbeState;
  /** The last Unhealthy event of each probe: the same failure again is only told now and then. */
  told: Map<ProbeKind, { message: string; at: number }>;
}

/**
 * The same probe failure of the same container is sent at most once in this period, as the
 * kubelet's event spam filter keeps a probe failing every second from flooding the events; on a
 * device this also keeps a failing probe from eating the uplink.
 */
const REPEATED_FAILURE_EVENT_MS = 60_000;

const PROBE_NAMES: Record<ProbeKind, string> = { liveness: 'Liveness', readiness: 'Readiness', startup: 'Startup' };

/**
 * Runs the liveness, readiness and startup probes of the agent's running containers on timers,
 * as Kubernetes' kubelet prober does. Results are kept per pod uid, container and attempt, and
 * start afresh when the container is replaced. `sync` is given every reconcile's view of the
 * engine; what it no longer shows running stops being probed.
 */
export class ProbeManager {
  private readonly entries = new Map<string, Entry>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly hooks: ProbeManagerHooks,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  sync(desired: readonly DesiredPod[], containers: readonly RuntimeContainer[]): void {
    const live = new Set<string>();
    for (const pod of desired) {
      const mine = containers.filter((c) => c.labels[LABEL_POD_UID] === pod.uid);
      const infra = mine.find((c) => c.labels[LABEL_CONTAINER] === INFRA_CONTAINER && c.state === 'running');
      // On a device the agent shares the engine's network namespace, so the pod's IP is reachable;
      // a host-network pod listens on the device's own loopback.
      const address = pod.spec.hostNetwork ? '127.0.0.1' : infra?.podIP;
      for (const spec of pod.spec.containers) {
        if (!spec.livenessProbe && !spec.readinessProbe && !spec.startupProbe) continue;
        const [current] = newestFirst(mine.filter((c) => c.labels[LABEL_CONTAINER] === spec.name));
        // No probe runs before the container has started.
        if (!current || current.state !== 'running' || !current.startedAt) continue;
        const key = `${pod.uid}/${spec.name}`;
        live.add(key);
        const existing = this.entries.get(key);
        if (existing && existing.containerId === current.id) {
          existing.target.address = address;
          continue;
        }
        const startedAt = Date.parse(current.startedAt) || this.now();
        const state = new ContainerProbeState({ liveness: spec.livenessProbe, readiness: spec.readinessProbe, startup: spec.startupProbe }, startedAt);
        const attempt = Number(current.labels[LABEL_RESTART_COUNT] ?? '0') || 0;
        this.entries.set(key, { podUid: pod.uid, container: spec, containerId: current.id, attempt, target: { containerId: current.id, container: spec, address }, state, told: new Map() });
      }
    }
    for (const key of this.entries.keys()) if (!live.has(key)) this.entries.delete(key);
    this.schedule();
  }

  /**
   * The container instance's readiness as its probes have it; undefined when no probe speaks
   * for it (no probes, or another instance than the one probed).
   */
  ready(podUid: string, container: string, containerId: string): boolean | undefined {
    const entry = this.entries.get(`${podUid}/${container}`);
    return entry && entry.containerId === containerId ? entry.state.ready : undefined;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.entries.clear();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped) return;
    let next = Infinity;
    for (const e of this.entries.values()) next = Math.min(next, e.state.nextDueAt() ?? Infinity);
    if (next === Infinity) return;
    this.timer = setTimeout(() => this.tick(), Math.max(0, next - this.now()));
    this.timer.unref();
  }

  private tick(): void {
    const now = this.now();
    for (const entry of this.entries.values()) {
      for (const kind of entry.state.due(now)) {
        entry.state.begin(kind);
        void this.probeOnce(entry, kind);
      }
    }
    this.schedule();
  }

  private async probeOnce(entry: Entry, kind: ProbeKind): Promise<void> {
    const probe = entry.state.probe(kind)!;
    const outcome = await runProbe(this.runtime, probe, entry.target);
    if (this.stopped || this.entries.get(`${entry.podUid}/${entry.container.name}`) !== entry) return;
    const verdict = entry.state.record(kind, outcome, this.now());
    const name = entry.container.name;
    if (verdict.failed !== undefined) {
      this.log.debug({ pod: entry.podUid, container: name, attempt: entry.attempt, kind, message: verdict.failed }, 'probe failed');
      const message = `${PROBE_NAMES[kind]} probe failed: ${verdict.failed}`;
      const told = entry.told.get(kind);
      const now = this.now();
      if (!told || told.message !== message || now - told.at >= REPEATED_FAILURE_EVENT_MS || verdict.restart) {
        entry.told.set(kind, { message, at: now });
        this.hooks.onEvent({ podUid: entry.podUid, container: name, type: 'Warning', reason: 'Unhealthy', message });
      }
    }
    if (verdict.restart) await this.restart(entry, kind);
    if (verdict.statusChanged || verdict.restart) this.hooks.onChange();
    this.schedule();
  }

  /**
   * Kubernetes kills a container that failed its liveness (or startup) probe; the pod's
   * restartPolicy and the crash-loop back-off then decide when it runs again, and its restart
   * count grows as for any other exit.
   */
  private async restart(entry: Entry, kind: ProbeKind): Promise<void> {
    const name = entry.container.name;
    this.hooks.onEvent({ podUid: entry.podUid, container: name, type: 'Normal', reason: 'Killing', message: `Container ${name} failed ${kind} probe, will be restarted` });
    try {
      // The engine's stop timeout was set from the pod's terminationGracePeriodSeconds.
      await this.runtime.stopContainer(entry.containerId);
    } catch (err) {
      this.log.error({ pod: entry.podUid, container: name, err: (err as Error).message }, 'could not stop a container that failed its probe');
    }
  }
}
