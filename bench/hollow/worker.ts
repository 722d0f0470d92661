import { join } from 'node:path';
import { pino } from 'pino';
import { HollowDevice, podsRunning } from './device.js';
import type { DeviceTiming, FromWorker, ToWorker, WorkerExpect, WorkerSetup } from './protocol.js';

// One process of a hollow fleet (fleet.ts forks several): runs its share of the devices and
// answers the parent over IPC. Every device shares one logger, silent unless
// FLOTILLA_HOLLOW_LOG_LEVEL says otherwise (to look into a failing run).

const log = pino({ level: process.env.FLOTILLA_HOLLOW_LOG_LEVEL ?? 'silent' }, pino.destination(2));
let devices: HollowDevice[] = [];
let peerTable: HollowDevice[] = [];

function send(msg: FromWorker): void {
  process.send?.(msg);
}

async function setup(msg: WorkerSetup): Promise<void> {
  const failing = new Set(msg.failingImages ?? []);
  devices = msg.devices.map(
    (d, i) =>
      new HollowDevice({
        hub: msg.hub,
        token: msg.token,
        name: d.name,
        labels: d.labels,
        stateDir: join(msg.stateRoot, d.name),
        log,
        runtime: {
          images: msg.images,
          ...(msg.latency ? { latency: msg.latency } : {}),
          ...(failing.size ? { startFailure: (spec) => (failing.has(spec.image) ? 'OCI runtime create failed: exec: executable file not found' : undefined) } : {}),
        },
        ...(msg.metricsIntervalSeconds !== undefined ? { metricsIntervalSeconds: msg.metricsIntervalSeconds } : {}),
        ...(msg.heartbeatSeconds !== undefined ? { heartbeatSeconds: msg.heartbeatSeconds } : {}),
        // Each device its own documentation address (it is only reported, never used).
        ...(msg.overlay ? { overlay: { peerTable: d.peerTable ?? false, address: `198.51.100.${1 + (i % 250)}` } } : {}),
      }),
  );
  peerTable = devices.filter((_, i) => msg.overlay && msg.devices[i]!.peerTable);
  const errors = new Map<HollowDevice, string>();
  let next = 0;
  const startOne = async (device: HollowDevice, paced: boolean) => {
    try {
      await device.start();
      if (paced) await device.connectedOnce();
    } catch (err) {
      errors.set(device, (err as Error).message);
    }
  };
  const paced = msg.startConcurrency > 0;
  const lanes = paced ? Math.min(msg.startConcurrency, devices.length) : devices.length;
  const starts = Array.from({ length: lanes }, async () => {
    while (next < devices.length) await startOne(devices[next++]!, paced);
  });
  const progress = setInterval(() => send({ type: 'progress', connected: devices.filter((d) => d.connected).length, joined: devices.filter((d) => d.joinedAt).length, failed: errors.size }), 1_000);
  await Promise.all(starts);
  // Joined is not connected: wait for every session (or its failure) before saying ready.
  while (devices.some((d) => d.connectedAt === undefined && !errors.has(d))) await new Promise((r) => setTimeout(r, 20));
  clearInterval(progress);
  const timings: DeviceTiming[] = devices.map((d, i) => ({
    name: msg.devices[i]!.name,
    startedAt: d.startedAt,
    joinedAt: d.joinedAt ?? null,
    connectedAt: d.connectedAt ?? null,
    ...(errors.has(d) ? { error: errors.get(d)! } : {}),
  }));
  send({ type: 'ready', timings });
}

function expect(msg: WorkerExpect): void {
  const condition = podsRunning(msg.images, msg.pods);
  const times: (number | null)[] = devices.map(() => null);
  const waits = devices.map((d, i) => d.reported(condition).then((at) => (times[i] = at)));
  send({ type: 'armed', id: msg.id });
  const timeout = new Promise((r) => setTimeout(r, msg.timeoutMs).unref());
  void Promise.race([Promise.all(waits), timeout]).then(() => send({ type: 'reported', id: msg.id, times: [...times] }));
}

process.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'setup':
      void setup(msg);
      break;
    case 'expect':
      expect(msg);
      break;
    case 'received':
      send({ type: 'received', counts: peerTable.map((d) => ({ name: d.name, ...d.received, lastPeers: [...d.received.lastPeers] })) });
      break;
    case 'usage': {
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      send({ type: 'usage', rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, cpuUserUs: cpu.user, cpuSystemUs: cpu.system });
      break;
    }
    case 'stop':
      void Promise.all(devices.map((d) => d.stop().catch(() => undefined))).then(() => {
        send({ type: 'stopped' });
        process.exit(0);
      });
      break;
  }
});

// Without the parent there is nothing to report to.
process.on('disconnect', () => process.exit(0));
