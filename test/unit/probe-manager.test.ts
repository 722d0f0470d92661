import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ProbeManager } from '../../agent/probes/manager.js';
import type { PodEvent } from '../../agent/reconcile/execute.js';
import type { ContainerRuntime, ExecResult } from '../../agent/runtime/runtime.js';
import type { Probe } from '../../shared/resources/probe.js';
import { container, desiredPod, infraContainer, runtimeContainer } from './builders.js';

// The prober on its timers (a fake clock) over an engine stand-in: liveness kills, readiness
// flips, and results start afresh for a new instance of the container.

const STARTED = '2025-01-01T11:00:00.000Z';
const exec = (failureThreshold = 2): Probe => ({ exec: { command: ['cat', '/tmp/healthy'] }, initialDelaySeconds: 0, periodSeconds: 1, timeoutSeconds: 1, successThreshold: 1, failureThreshold });

class FakeEngine {
  healthy = true;
  stopped: string[] = [];
  readonly runtime = {
    exec: async (): Promise<ExecResult> => (this.healthy ? { exitCode: 0, output: '' } : { exitCode: 1, output: 'cat: can\'t open \'/tmp/healthy\'' }),
    stopContainer: async (id: string) => {
      this.stopped.push(id);
    },
  } as unknown as ContainerRuntime;
}

let engine: FakeEngine;
let events: PodEvent[];
let changes: number;
let manager: ProbeManager;

beforeEach(() => {
  vi.useFakeTimers({ now: Date.parse(STARTED) });
  engine = new FakeEngine();
  events = [];
  changes = 0;
  manager = new ProbeManager(engine.runtime, { onChange: () => changes++, onEvent: (e) => events.push(e) }, pino({ level: 'silent' }));
});

afterEach(() => {
  manager.stop();
  vi.useRealTimers();
});

describe('ProbeManager', () => {
  it('kills a container whose liveness probe fails failureThreshold times, once, with Unhealthy and Killing events', async () => {
    const pod = desiredPod({ name: 'mortal', containers: [container({ name: 'app', image: 'img:1', livenessProbe: exec() })] });
    const app = runtimeContainer({ pod, container: 'app', id: 'app-0', startedAt: STARTED });
    manager.sync([pod], [infraContainer({ pod, startedAt: STARTED }), app]);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(engine.stopped).toEqual([]);
    engine.healthy = false;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(engine.stopped).toEqual(['app-0']);
    expect(events.map((e) => `${e.type} ${e.reason}: ${e.message}`)).toEqual([
      "Warning Unhealthy: Liveness probe failed: cat: can't open '/tmp/healthy'",
      "Warning Unhealthy: Liveness probe failed: cat: can't open '/tmp/healthy'",
      'Normal Killing: Container app failed liveness probe, will be restarted',
    ]);
    expect(changes).toBe(1);
  });

  it('says whether a container is ready, and starts afresh when the container is replaced', async () => {
    const pod = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:1', readinessProbe: exec(1) })] });
    const infra = infraContainer({ pod, startedAt: STARTED });
    manager.sync([pod], [infra, runtimeContainer({ pod, container: 'app', id: 'app-0', startedAt: STARTED })]);
    expect(manager.ready(pod.uid, 'app', 'app-0')).toBe(false);
    await vi.advanceTimersByTimeAsync(10);
    expect(manager.ready(pod.uid, 'app', 'app-0')).toBe(true);
    expect(changes).toBe(1);
    // Another instance (a restart: attempt 1) is not ready until its own probe passed.
    engine.healthy = false;
    manager.sync([pod], [infra, runtimeContainer({ pod, container: 'app', id: 'app-1', restartCount: 1, startedAt: new Date().toISOString() })]);
    expect(manager.ready(pod.uid, 'app', 'app-0')).toBeUndefined();
    expect(manager.ready(pod.uid, 'app', 'app-1')).toBe(false);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(manager.ready(pod.uid, 'app', 'app-1')).toBe(false);
    // The same failure is told once, not every second.
    expect(events.filter((e) => e.reason === 'Unhealthy')).toHaveLength(1);
    expect(engine.stopped).toEqual([]);
  });

  it('probes nothing that is not running, and forgets pods that are gone', async () => {
    const pod = desiredPod({ name: 'idle', containers: [container({ name: 'app', image: 'img:1', livenessProbe: exec(1) })] });
    engine.healthy = false;
    manager.sync([pod], [runtimeContainer({ pod, container: 'app', id: 'app-0', state: 'exited' })]);
    await vi.advanceTimersByTimeAsync(5_000);
    manager.sync([pod], [runtimeContainer({ pod, container: 'app', id: 'app-1', startedAt: STARTED })]);
    manager.sync([], []);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(events).toEqual([]);
    expect(engine.stopped).toEqual([]);
  });
});
