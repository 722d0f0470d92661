import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { EngineMonitor } from '../../agent/reconcile/engine.js';
import type { ContainerRuntime, EngineInfo } from '../../agent/runtime/runtime.js';

/** An engine that can be taken away and brought back, and whose event streams can be broken. */
class FlakyEngine {
  up = true;
  watches = 0;
  openWatches = 0;
  networks = 0;
  private lose: ((err: Error) => void)[] = [];

  readonly runtime = {
    ping: async (): Promise<EngineInfo> => {
      await Promise.resolve();
      if (!this.up) throw new Error('connect ENOENT /run/docker.sock');
      return { name: 'docker', version: '26.1.5' };
    },
    ensureNetwork: async () => {
      this.networks++;
    },
    watchContainers: async (_labels: Record<string, string>, _onChange: () => void, onError: (err: Error) => void) => {
      await Promise.resolve();
      this.watches++;
      this.openWatches++;
      let open = true;
      this.lose.push((err) => {
        if (open) onError(err);
      });
      return () => {
        if (open) this.openWatches--;
        open = false;
      };
    },
  } as unknown as ContainerRuntime;

  breakStreams(): void {
    const lose = this.lose;
    this.lose = [];
    for (const l of lose) l(new Error('engine event stream ended'));
  }
}

function monitorOf(engine: FlakyEngine) {
  const calls = { changes: 0, unavailable: 0 };
  const monitor = new EngineMonitor(engine.runtime, { name: 'edge-1', podNetwork: 'flotilla' }, pino({ level: 'silent' }), {
    onChange: () => calls.changes++,
    onUnavailable: () => calls.unavailable++,
  });
  return { monitor, calls };
}

describe('EngineMonitor', () => {
  it('on the first answer sets up the pod network and one event stream, and asks for a reconcile', async () => {
    const engine = new FlakyEngine();
    const { monitor, calls } = monitorOf(engine);
    expect(await monitor.check()).toBe(true);
    expect(await monitor.check()).toBe(true);
    expect({ watches: engine.watches, networks: engine.networks, changes: calls.changes }).toEqual({ watches: 1, networks: 1, changes: 1 });
    expect(monitor.error).toBeUndefined();
    expect(monitor.info?.version).toBe('26.1.5');
  });

  it('runs concurrent checks as one, so no second stream is ever opened', async () => {
    const engine = new FlakyEngine();
    const { monitor } = monitorOf(engine);
    await Promise.all([monitor.check(), monitor.check(), monitor.check()]);
    expect(engine.watches).toBe(1);
  });

  it('reports an engine that stopped answering, and drops its stream', async () => {
    const engine = new FlakyEngine();
    const { monitor, calls } = monitorOf(engine);
    await monitor.check();
    engine.up = false;
    expect(await monitor.check()).toBe(false);
    expect(monitor.info).toBeUndefined();
    expect(monitor.error).toMatch(/^container engine unavailable: connect ENOENT/);
    expect(calls.unavailable).toBe(1);
    expect(engine.openWatches).toBe(0);
  });

  it('makes a fresh stream and asks for a reconcile when the engine is back', async () => {
    const engine = new FlakyEngine();
    const { monitor, calls } = monitorOf(engine);
    await monitor.check();
    engine.up = false;
    await monitor.check();
    engine.up = true;
    expect(await monitor.check()).toBe(true);
    expect(engine.watches).toBe(2);
    expect(engine.openWatches).toBe(1);
    expect(calls.changes).toBe(2);
  });

  it('asks for a reconcile when the stream is lost, and the next check makes a new one', async () => {
    const engine = new FlakyEngine();
    const { monitor, calls } = monitorOf(engine);
    await monitor.check();
    engine.breakStreams();
    expect(calls.changes).toBe(2);
    await monitor.check();
    expect(engine.watches).toBe(2);
    expect(engine.openWatches).toBe(1);
  });

  it('opens no stream after stop, even from a check that was under way', async () => {
    const engine = new FlakyEngine();
    const { monitor } = monitorOf(engine);
    const checking = monitor.check();
    monitor.stop();
    await checking;
    await monitor.check();
    expect(engine.openWatches).toBe(0);
  });
});
