import { describe, expect, it } from 'vitest';
import { ContainerProbeState, type ProbeOutcome } from '../../agent/probes/state.js';
import type { Probe } from '../../shared/resources/probe.js';

// The prober's state machine against a fake clock: when probes fall due, how results flip on
// thresholds, and how a startup probe gates the others, as Kubernetes' kubelet does it.

const STARTED = 1_000_000;
const OK: ProbeOutcome = { ok: true };
const FAIL: ProbeOutcome = { ok: false, message: 'HTTP probe failed with statuscode: 404' };

function probe(fields: Partial<Probe> = {}): Probe {
  return { httpGet: { port: 8080 }, initialDelaySeconds: 0, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3, ...fields };
}

/** Runs a due probe of `kind` at `t` seconds after the start and records `outcome`. */
function run(state: ContainerProbeState, kind: 'liveness' | 'readiness' | 'startup', t: number, outcome: ProbeOutcome) {
  const now = STARTED + t * 1000;
  expect(state.due(now), `${kind} due at ${t}s`).toContain(kind);
  state.begin(kind);
  return state.record(kind, outcome, now);
}

describe('probe timing', () => {
  it('runs nothing before initialDelaySeconds, then every periodSeconds', () => {
    const state = new ContainerProbeState({ readiness: probe({ initialDelaySeconds: 5, periodSeconds: 2 }) }, STARTED);
    expect(state.due(STARTED + 4_999)).toEqual([]);
    expect(state.nextDueAt()).toBe(STARTED + 5_000);
    run(state, 'readiness', 5, OK);
    expect(state.due(STARTED + 6_999)).toEqual([]);
    expect(state.nextDueAt()).toBe(STARTED + 7_000);
    expect(state.due(STARTED + 7_000)).toEqual(['readiness']);
  });

  it('never runs the same probe twice at once', () => {
    const state = new ContainerProbeState({ liveness: probe() }, STARTED);
    state.begin('liveness');
    expect(state.due(STARTED + 60_000)).toEqual([]);
    expect(state.nextDueAt()).toBeUndefined();
  });
});

describe('readiness', () => {
  it('starts not ready, becomes ready after successThreshold successes, and unready after failureThreshold failures', () => {
    const state = new ContainerProbeState({ readiness: probe({ successThreshold: 2, failureThreshold: 2 }) }, STARTED);
    expect(state.ready).toBe(false);
    expect(run(state, 'readiness', 0, OK)).toEqual({ statusChanged: false });
    expect(run(state, 'readiness', 10, OK)).toEqual({ statusChanged: true });
    expect(state.ready).toBe(true);
    expect(run(state, 'readiness', 20, FAIL)).toEqual({ statusChanged: false, failed: FAIL.message });
    expect(state.ready).toBe(true);
    // A success in between starts the count of failures again.
    run(state, 'readiness', 30, OK);
    run(state, 'readiness', 40, FAIL);
    expect(run(state, 'readiness', 50, FAIL)).toEqual({ statusChanged: true, failed: FAIL.message });
    expect(state.ready).toBe(false);
    expect(state.restarting).toBe(false);
  });

  it('is ready at once without a readiness probe', () => {
    expect(new ContainerProbeState({ liveness: probe() }, STARTED).ready).toBe(true);
  });
});

describe('liveness', () => {
  it('asks for a restart after failureThreshold failures in a row, then holds', () => {
    const state = new ContainerProbeState({ liveness: probe({ periodSeconds: 1, failureThreshold: 2 }), readiness: probe({ periodSeconds: 1 }) }, STARTED);
    run(state, 'liveness', 0, OK);
    expect(run(state, 'liveness', 1, FAIL).restart).toBeUndefined();
    expect(run(state, 'liveness', 2, FAIL)).toEqual({ statusChanged: false, failed: FAIL.message, restart: true });
    expect(state.restarting).toBe(true);
    // The kubelet's worker holds until the container is replaced: nothing runs any more.
    expect(state.due(STARTED + 60_000)).toEqual([]);
    expect(state.nextDueAt()).toBeUndefined();
  });

  it('ignores a result that arrives after a restart was asked for', () => {
    const state = new ContainerProbeState({ liveness: probe({ failureThreshold: 1 }), readiness: probe() }, STARTED);
    state.begin('readiness');
    run(state, 'liveness', 0, FAIL);
    expect(state.record('readiness', OK, STARTED + 100)).toEqual({ statusChanged: false });
    expect(state.ready).toBe(false);
  });
});

describe('startup', () => {
  it('gates liveness and readiness until it passes, then runs no more', () => {
    const state = new ContainerProbeState({ startup: probe({ periodSeconds: 1, failureThreshold: 5 }), liveness: probe(), readiness: probe() }, STARTED);
    expect(state.due(STARTED)).toEqual(['startup']);
    expect(state.started).toBe(false);
    run(state, 'startup', 0, FAIL);
    expect(state.due(STARTED + 1_000)).toEqual(['startup']);
    expect(run(state, 'startup', 1, OK)).toEqual({ statusChanged: false });
    expect(state.started).toBe(true);
    // Readiness still has to pass on its own.
    expect(state.ready).toBe(false);
    expect(state.due(STARTED + 2_000)).toEqual(['liveness', 'readiness']);
    expect(run(state, 'readiness', 2, OK)).toEqual({ statusChanged: true });
    expect(state.ready).toBe(true);
  });

  it('makes the container ready when it passes and there is no readiness probe', () => {
    const state = new ContainerProbeState({ startup: probe() }, STARTED);
    expect(state.ready).toBe(false);
    expect(run(state, 'startup', 0, OK)).toEqual({ statusChanged: true });
    expect(state.ready).toBe(true);
  });

  it('asks for a restart after failureThreshold failures, like liveness', () => {
    const state = new ContainerProbeState({ startup: probe({ periodSeconds: 1, failureThreshold: 2 }), liveness: probe() }, STARTED);
    run(state, 'startup', 0, FAIL);
    expect(run(state, 'startup', 1, FAIL).restart).toBe(true);
    expect(state.due(STARTED + 60_000)).toEqual([]);
  });
});
