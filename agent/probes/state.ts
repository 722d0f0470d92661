import type { Probe, ProbeKind } from '../../shared/resources/probe.js';

/** What one run of a probe's handler found. */
export type ProbeOutcome = { ok: true } | { ok: false; message: string };

/** What the agent must do after a probe result. */
export interface ProbeVerdict {
  /** The container's readiness (or its having started) changed: its status must be sent again. */
  statusChanged: boolean;
  /** The probe failed: Kubernetes records an `Unhealthy` event for every failure. */
  failed?: string;
  /** Liveness or startup failed `failureThreshold` times in a row: the container must be restarted. */
  restart?: boolean;
}

interface KindState {
  probe: Probe;
  successes: number;
  failures: number;
  /** Undefined until the threshold in either direction was first reached. */
  passing: boolean | undefined;
  nextAt: number;
  running: boolean;
}

export const PROBE_KINDS: readonly ProbeKind[] = ['startup', 'liveness', 'readiness'];

/**
 * The probes of one container instance, without I/O or timers: the caller asks what is `due`
 * at a time, runs it, and `record`s the outcome. Kubernetes' prober semantics:
 *  - nothing runs before `initialDelaySeconds` have passed since the container started, then every `periodSeconds`;
 *  - a result flips only after `successThreshold` successes or `failureThreshold` failures in a row;
 *  - a startup probe gates the other two: until it passes, liveness is taken as passing and
 *    readiness as failing, and neither runs; once it passed it runs no more;
 *  - readiness starts as failing, liveness as passing;
 *  - after liveness or startup asked for a restart, nothing runs again for this instance (the
 *    kubelet's worker holds until the container is replaced).
 */
export class ContainerProbeState {
  private readonly kinds = new Map<ProbeKind, KindState>();
  private held = false;

  constructor(probes: Partial<Record<ProbeKind, Probe>>, startedAtMs: number) {
    for (const kind of PROBE_KINDS) {
      const probe = probes[kind];
      if (probe) this.kinds.set(kind, { probe, successes: 0, failures: 0, passing: undefined, nextAt: startedAtMs + probe.initialDelaySeconds * 1000, running: false });
    }
  }

  get started(): boolean {
    const startup = this.kinds.get('startup');
    return !startup || startup.passing === true;
  }

  /** Kubernetes' container `ready`: started, and readiness passed (true when there is no readiness probe). */
  get ready(): boolean {
    if (!this.started) return false;
    const readiness = this.kinds.get('readiness');
    return !readiness || readiness.passing === true;
  }

  get restarting(): boolean {
    return this.held;
  }

  probe(kind: ProbeKind): Probe | undefined {
    return this.kinds.get(kind)?.probe;
  }

  private eligible(kind: ProbeKind): boolean {
    if (this.held) return false;
    return kind === 'startup' ? !this.started : this.started;
  }

  /** The probes to run now: eligible, not already running, and whose time has come. */
  due(now: number): ProbeKind[] {
    return PROBE_KINDS.filter((kind) => {
      const s = this.kinds.get(kind);
      return s !== undefined && !s.running && s.nextAt <= now && this.eligible(kind);
    });
  }

  /** When the next probe falls due, or undefined when none will without a result first. */
  nextDueAt(): number | undefined {
    let next: number | undefined;
    for (const [kind, s] of this.kinds) if (!s.running && this.eligible(kind)) next = Math.min(next ?? Infinity, s.nextAt);
    return next;
  }

  /** Marks a probe as running, so that a slow handler is never run twice at once. */
  begin(kind: ProbeKind): void {
    const s = this.kinds.get(kind);
    if (s) s.running = true;
  }

  record(kind: ProbeKind, outcome: ProbeOutcome, now: number): ProbeVerdict {
    const s = this.kinds.get(kind);
    if (!s) return { statusChanged: false };
    s.running = false;
    s.nextAt = now + s.probe.periodSeconds * 1000;
    // A result that arrives after a restart was asked for, or after the startup probe passed, is stale.
    if (!this.eligible(kind)) return { statusChanged: false };
    const readyBefore = this.ready;
    if (outcome.ok) {
      s.successes++;
      s.failures = 0;
      if (s.successes >= s.probe.successThreshold) s.passing = true;
    } else {
      s.failures++;
      s.successes = 0;
      if (s.failures >= s.probe.failureThreshold) s.passing = false;
    }
    const restart = kind !== 'readiness' && s.passing === false;
    if (restart) this.held = true;
    return {
      statusChanged: this.ready !== readyBefore,
      ...(outcome.ok ? {} : { failed: outcome.message }),
      ...(restart ? { restart: true } : {}),
    };
  }
}
