import { afterEach, expect, it } from 'vitest';
import { join } from 'node:path';
import { startMosquitto } from '../test/harness/mosquitto.js';
import { stopAll, tempDir, type RunningHub } from '../test/harness/processes.js';
import { HollowFleet } from './hollow/fleet.js';
import { appImages, applyObjects, daemonSets, deviceBrokerUrl, HOLLOW_BASE_IMAGES, HOLLOW_LABELS, hollowDaemonSet, startBenchHub, stateRoot } from './hollow/setup.js';
import { MB, procStat, progressLog, quantile, round, sampleProcess, writeResult, type TargetFigure } from './results.js';

// Fan-out (docs/ARCHITECTURE.md, 'Performance targets'): a fleet-wide DaemonSet change (a new image tag for a DaemonSet
// whose nodeSelector matches every device) applied, until every hollow device has reported its
// new pod running — the hub's acknowledgement of that status report, timed on the device. The
// fleet runs 5 pods per device (5 DaemonSets), so the hub's memory is that of N devices × 5 pods.
// Target: 10,000 devices within 5 s on one 2-core hub, hub RSS ≤ 600 MB.
//
// It runs through the embedded broker (aedes) and through Mosquitto (started here, configured
// by `flotilla broker-config mosquitto`, the hub joining it with --broker), side by side.

const SIZES = (process.env.FLOTILLA_BENCH_FANOUT_SIZES ?? '1000,10000').split(',').filter(Boolean).map(Number);
const MOSQUITTO_SIZES = (process.env.FLOTILLA_BENCH_FANOUT_MOSQUITTO_SIZES ?? '1000').split(',').filter(Boolean).map(Number);
const DAEMONSETS = 5;
const SETTLE_MS = 5_000;
const ROLLOUT_TIMEOUT_MS = Number(process.env.FLOTILLA_BENCH_FANOUT_ROLLOUT_TIMEOUT_SECONDS ?? 240) * 1000;
const CHANGE_TIMEOUT_MS = Number(process.env.FLOTILLA_BENCH_FANOUT_CHANGE_TIMEOUT_SECONDS ?? 120) * 1000;
const START_CONCURRENCY = 50;
/**
 * Through an external broker the hub hears a device only by what it publishes (no keepalive
 * pings), and these devices publish no metrics: the grace must outlast a quiet minute.
 */
const EXTERNAL_NODE_GRACE = '180s';
/**
 * The hollow devices' MQTT keepalive (FLOTILLA_BENCH_FANOUT_HEARTBEAT_SECONDS; default the
 * agent's 15 s). At 10,000 devices the first rollout keeps the hub busy for minutes, and a device
 * whose status report waits in the hub's queue cannot have its ping answered: a longer
 * keepalive, with a node grace to match, keeps those devices from reconnecting while they wait.
 */
const HEARTBEAT_SECONDS = Number(process.env.FLOTILLA_BENCH_FANOUT_HEARTBEAT_SECONDS ?? 15);
const NODE_GRACE = `${Math.max(40, HEARTBEAT_SECONDS * 3)}s`;

type Broker = 'aedes' | 'mosquitto';

/**
 * What moved, measured by this benchmark before and after each change to the hub (kept here so
 * that every result file carries it; the load average says how busy the shared machine was).
 */
const HUB_CHANGES = [
  'dispatcher: a batch of nodes per commit (work queue wrap), 1,000 devices through aedes, load 1.9-2.7: change p50 3.86 → 2.18 s, max 5.14 → 2.80 s; first rollout p50 4.73 → 3.92 s, max 5.97 → 4.61 s; hub CPU in the change 2.38 → 2.24 s',
  "node lifecycle (and ReplicaSet's node cleanup): an unready node's pods from the store's node index, not a scan of every pod: at 3,000 devices that scan was 12.3 s of 15 s of hub CPU once the busy hub let nodes go Unknown, and starved the rollout; gone from the profile after",
  'store: WAL checkpoint every 10,000 pages rather than 1,000: the commit of a DaemonSet pass (checkpoint and fsyncs included) was 2.4 s of 10 s of hub CPU during the first rollout at 10,000 devices; not yet measured after',
  'before all three, 10,000 devices: 9,250 of 10,000 without their 5 pods 300 s after the first rollout, hub RSS 1.2 GB',
  "DaemonSet pod names: a node whose 5-character name hash another node's pod already held got no pod at all, silently (fan-1216/fan-3080 and 3 more pairs below 10,000): 1 of 5,000 devices never got its pods; such a node's pod now takes a 10-character hash",
  "DaemonSet pass: the index's sorted node names kept until a node joins or leaves, pods no longer sorted per pass (only a node's own when it has several); one SuccessfulCreate (and TemplateChanged) Event per pass of more than 3 pods instead of one per pod (each pod keeps its Scheduled Event): at 10,000 devices the two Events per created pod were 26.7 s of the 58.8 s of hub CPU in DaemonSet passes",
  'store: a write inside a transaction takes no savepoint of its own (a half-done write rolls the whole transaction back instead)',
  "status reports: the pod's uid and node checked inside its write rather than by a read before it, the node read once per Ready update; a report that changes nothing but heartbeat times is not written while the stored heartbeat is younger than 30 s (liveness is kept in memory from every packet): 14 object reads and 2 node writes per report become 7 reads and usually no node write",
  "embedded broker: listen backlog 4,096 (a reconnecting fleet's SYNs were dropped: the accept queue sat full at 512 with 832 devices in SYN-SENT, and devices gave up after the 15 s CONNACK timeout, their stale CONNECTs then taking over live sessions); a device whose packet the hub is still working on has its keepalive renewed, so the hub no longer drops devices it is slow to answer",
  '10,000 devices, 15 s device keepalive, before the status and Event changes: 1,727 devices disconnected by keepalive timeouts (the device waited more than 15 s for its PINGRESP behind its queued status report), hub CPU 95 % busy, event-loop stalls of 2.4-3.3 s',
  '10,000 devices after all of the above, 60 s device keepalive (load 8.8: another test run shared the machine): no disconnects; first rollout complete (p50 64.5 s, max 141 s: hub 67 CPU-s, hollow fleet 194 CPU-s); change p50 194.5 s, max 215.9 s with the hub at 31.5 % of a core and the fleet at 223 CPU-s: the hollow fleet, not the hub, is now the limit on this machine',
  'the same code on a quiet machine (60 s keepalive), the baseline of what follows: change p50 71.3 s, max 79.7 s; hub 42.7 CPU-s, hollow fleet 113.6 CPU-s; hub RSS 796 MB at rest, 858 MB peak',
  "agent: system facts read every 60 s and memory/disk pressure every 10 s instead of on every status check (each read was 0.34 ms: /proc, statfs, os.cpus(); 10,000 devices made 3,000 a second, a core of the fleet's CPU); aedes delivering 2,000 messages at once instead of 100 (its mqemitter queue, an array shifted per message, was 10 % of the hub); a pod turning Ready brings its DaemonSet's status pass within 1 s rather than a pass per report: change p50 25.8 s, max 56.0 s; hub 28.5 CPU-s, fleet 57.8 CPU-s",
  "status ingest: a report already applied is skipped without reading the pod (remembered by a fingerprint until someone else writes the object, or a transaction rolls back); the desired-set revision a report was made against is kept on the node only (the waves gate reads it there), so a new revision rewrites one node rather than every pod of it: change p50 18.1 s, max 27.3 s; hub 19.7 CPU-s, fleet 30.5 CPU-s",
  "hub memory: V8's heap may grow 30 % past the live heap (about 300 MB) before a full collection, instead of V8's own factor (up to about 2x): hub RSS 882-947 MB at rest and 1,040 MB peak before, 545-552 MB at rest and 562-574 MB peak after; the waves view keeps the pods of Waves DaemonSets only. The change costs the hub more collections: hub CPU in the change 26.5 s against 16.8-19.7 s in runs before it (runs vary by several seconds on this shared machine)",
  "agent: the periodic status check returns at once when nothing changed since the last status sent; update locks read only when a spec change would replace a running container; container spec hashes kept per desired pod. Hub: the node lifecycle controller no longer makes a pass for every node write (only for Ready or taint changes); event batches read each pod once. With the device's own 15 s keepalive, no disconnects: change p50 19.4 s, max 33.2 s; hub 26.5 CPU-s, fleet 33.0 CPU-s; first rollout (50,000 pods) p50 26.3 s, max 50.1 s",
];

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAll();
});

const figures: Record<string, unknown> = {};
const targets: Record<string, TargetFigure> = {};

/** Logs the DaemonSets' counts every few seconds until `until` settles: a long rollout shows where it is. */
async function withDaemonSetProgress<T>(hub: RunningHub, until: Promise<T>): Promise<T> {
  const timer = setInterval(() => {
    void daemonSets(hub)
      .then((list) => console.log(`  ${list.map((d) => `${d.metadata.name} ${d.status?.updatedNumberScheduled ?? 0}/${d.status?.desiredNumberScheduled ?? 0} ready ${d.status?.numberReady ?? 0}`).join(', ')}`))
      .catch(() => undefined);
  }, 10_000);
  try {
    return await until;
  } finally {
    clearInterval(timer);
  }
}

function seconds(times: (number | null)[], from: number): { done: number[]; missing: number } {
  const done = times.filter((t): t is number => t !== null).map((t) => (t - from) / 1000);
  return { done, missing: times.length - done.length };
}

const runs: [Broker, number][] = [...SIZES.map((n): [Broker, number] => ['aedes', n]), ...MOSQUITTO_SIZES.map((n): [Broker, number] => ['mosquitto', n])];

for (const [broker, devices] of runs) {
  it(`a fleet-wide DaemonSet change reaches ${devices} hollow devices through ${broker}`, async () => {
    const dirs = tempDir('fanout');
    cleanups.push(() => dirs.remove());
    const state = stateRoot('fanout');
    cleanups.push(() => state.remove());
    const hubDir = join(dirs.path, 'hub');
    let brokerUrl: string | undefined;
    let brokerPid: number | undefined;
    if (broker === 'mosquitto') {
      const mosquitto = await startMosquitto({ dir: join(dirs.path, 'broker'), hubDataDir: hubDir });
      cleanups.push(() => mosquitto.stop());
      brokerUrl = mosquitto.url;
      brokerPid = mosquitto.process.child.pid;
    }
    const hub = await startBenchHub(hubDir, brokerUrl ? ['--broker', brokerUrl, '--node-grace', EXTERNAL_NODE_GRACE] : ['--node-grace', NODE_GRACE]);
    cleanups.push(() => hub.process.stop(60_000));
    const hubPid = hub.process.child.pid!;
    const v1 = appImages(DAEMONSETS, 1);
    const [v2] = appImages(1, 2);
    const { fleet, timings } = await HollowFleet.start({
      hub: brokerUrl ?? deviceBrokerUrl(hub),
      token: hub.joinToken,
      devices,
      processes: Math.max(1, Math.min(4, Math.ceil(devices / 2_500))),
      namePrefix: 'fan',
      labels: HOLLOW_LABELS,
      stateRoot: state.path,
      // Every image is present on the devices: the figure is the control plane's, not a registry's.
      images: [...HOLLOW_BASE_IMAGES, ...v1, v2!],
      metricsIntervalSeconds: 0,
      heartbeatSeconds: HEARTBEAT_SECONDS,
      // Joined a few at a time rather than all at once: the storm is connect-storm.bench.ts's to measure.
      startConcurrency: START_CONCURRENCY,
      onProgress: progressLog(devices),
    });
    cleanups.push(() => fleet.end());
    const failed = timings.filter((t) => t.error);
    expect(failed, `devices that did not join: ${failed.slice(0, 3).map((t) => `${t.name}: ${t.error}`).join('; ')}`).toHaveLength(0);

    // The fleet's 5 pods per device.
    const rolledOut = await fleet.expect(v1, DAEMONSETS, ROLLOUT_TIMEOUT_MS);
    const rolloutSampler = sampleProcess(hubPid);
    const fleetBeforeRollout = await fleet.usage();
    const rolloutStart = Date.now();
    await applyObjects(hub, v1.map((image, i) => hollowDaemonSet(`app-${i}`, image)));
    const initial = seconds(await withDaemonSetProgress(hub, rolledOut.times), rolloutStart);
    const rolloutWindow = rolloutSampler.stop();
    const fleetAfterRollout = await fleet.usage();
    // Who had the machine's two cores during the rollout: the hub, or the hollow fleet beside it.
    const rolloutCpu = {
      hubCpuSecondsDuringRollout: round(rolloutWindow.cpuSeconds, 1),
      hollowFleetCpuSecondsDuringRollout: round(fleetAfterRollout.reduce((a, w, i) => a + w.cpuSeconds - fleetBeforeRollout[i]!.cpuSeconds, 0), 1),
      hubPeakRssMBDuringRollout: round(rolloutWindow.peakRssBytes / MB),
    };
    if (initial.missing > 0) {
      // Recorded before failing: RESULTS.md shows how far the fleet got, not a blank.
      figures[`${broker}.devices${devices}`] = { incomplete: `${initial.missing.toLocaleString('en-US')} of ${devices.toLocaleString('en-US')} devices without their ${DAEMONSETS} pods running ${ROLLOUT_TIMEOUT_MS / 1000} s after the first rollout`, hubRssMBAtTimeout: round(procStat(hubPid).rssBytes / MB), ...rolloutCpu };
      writeResult({ benchmark: 'fan-out', parameters: { sizes: { aedes: SIZES, mosquitto: MOSQUITTO_SIZES }, podsPerDevice: DAEMONSETS }, figures, targets });
    }
    expect(initial.missing, 'devices without their 5 pods running').toBe(0);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const atRest = procStat(hubPid);

    // The change: app-0 to a new image tag, on every device.
    const reported = await fleet.expect([v2!], 1, CHANGE_TIMEOUT_MS);
    const sampler = sampleProcess(hubPid);
    const brokerSampler = brokerPid ? sampleProcess(brokerPid) : undefined;
    const workersBefore = await fleet.usage();
    const changedAt = Date.now();
    await applyObjects(hub, [hollowDaemonSet('app-0', v2!)]);
    const change = seconds(await reported.times, changedAt);
    const window = sampler.stop();
    const brokerWindow = brokerSampler?.stop();
    const workersAfter = await fleet.usage();
    const fleetCpu = workersAfter.reduce((a, w, i) => a + w.cpuSeconds - workersBefore[i]!.cpuSeconds, 0);
    if (change.missing > 0) {
      figures[`${broker}.devices${devices}`] = {
        incomplete: `${change.missing.toLocaleString('en-US')} of ${devices.toLocaleString('en-US')} devices without the changed pod running ${CHANGE_TIMEOUT_MS / 1000} s after the change`,
        changeDone: { devices: change.done.length, p50Seconds: round(quantile(change.done, 0.5), 2), maxSeconds: round(Math.max(...change.done, 0), 2) },
        hubCpuSecondsDuringChange: round(window.cpuSeconds, 2),
        hollowFleetCpuSecondsDuringChange: round(fleetCpu, 2),
        hubRssMBAtRest: round(atRest.rssBytes / MB),
        hubPeakRssMBDuringChange: round(window.peakRssBytes / MB),
        initialRollout: { pods: devices * DAEMONSETS, p50Seconds: round(quantile(initial.done, 0.5), 2), maxSeconds: round(Math.max(...initial.done), 2), ...rolloutCpu },
      };
      writeResult({ benchmark: 'fan-out', parameters: { sizes: { aedes: SIZES, mosquitto: MOSQUITTO_SIZES }, podsPerDevice: DAEMONSETS, deviceKeepaliveSeconds: HEARTBEAT_SECONDS, changeTimeoutSeconds: CHANGE_TIMEOUT_MS / 1000 }, figures, targets });
    }
    expect(change.missing, 'devices that did not report the new pod running').toBe(0);
    const ds = (await daemonSets(hub)).find((d) => d.metadata.name === 'app-0');
    expect(ds?.status?.updatedNumberScheduled).toBe(devices);

    const lastReport = Math.max(...change.done);
    const key = `${broker}.devices${devices}`;
    figures[key] = {
      change: { p50Seconds: round(quantile(change.done, 0.5), 2), p99Seconds: round(quantile(change.done, 0.99), 2), maxSeconds: round(lastReport, 2) },
      hubCpuSecondsDuringChange: round(window.cpuSeconds, 2),
      hubCpuPercentDuringChange: round((100 * window.cpuSeconds) / Math.max(lastReport, 0.001)),
      hubPeakRssMBDuringChange: round(window.peakRssBytes / MB),
      // The devices share this machine's two cores with the hub: their CPU is part of the picture.
      hollowFleetCpuSecondsDuringChange: round(fleetCpu, 2),
      hubRssMBAtRest: round(atRest.rssBytes / MB),
      initialRollout: { pods: devices * DAEMONSETS, p50Seconds: round(quantile(initial.done, 0.5), 2), maxSeconds: round(Math.max(...initial.done), 2), ...rolloutCpu },
      allConnectedSeconds: round((Math.max(...timings.map((t) => t.connectedAt!)) - Math.min(...timings.map((t) => t.startedAt))) / 1000, 1),
      ...(brokerWindow ? { brokerCpuSecondsDuringChange: round(brokerWindow.cpuSeconds, 2), brokerPeakRssMBDuringChange: round(brokerWindow.peakRssBytes / MB) } : {}),
    };
    if (devices === 10_000) {
      // The design's targets stand against the embedded broker; Mosquitto's figures sit beside them.
      const suffix = broker === 'aedes' ? '' : 'Mosquitto';
      const through = broker === 'aedes' ? '' : ' (through Mosquitto)';
      targets[`fanOut10k${suffix}`] = { what: `fleet-wide DaemonSet change → all 10,000 hollow devices report running (max)${through}`, measured: round(lastReport, 2), unit: 's', must: 5, better: 'lower' };
      targets[`hubRss10k${suffix}`] = { what: `hub memory at 10,000 devices × 5 pods${through}`, measured: round(Math.max(atRest.rssBytes, window.peakRssBytes) / MB), unit: 'MB RSS', must: 600, aim: 300, better: 'lower' };
    }
    console.log(`fan-out ${key}:`, JSON.stringify(figures[key]));
    writeResult({
      benchmark: 'fan-out',
      parameters: {
        sizes: { aedes: SIZES, mosquitto: MOSQUITTO_SIZES },
        mosquittoSizes: 'smaller by default: each join through Mosquitto adds an account to its dynamic-security plugin, which saves its whole file each time (about 25 joins/s at 1,000 devices, slower as it grows), so 10,000 would not fit the 15-minute run; FLOTILLA_BENCH_FANOUT_MOSQUITTO_SIZES=10000 measures it',
        podsPerDevice: DAEMONSETS,
        startConcurrencyPerWorker: START_CONCURRENCY,
        imagesPresent: true,
        metrics: 'off',
        deviceKeepaliveSeconds: HEARTBEAT_SECONDS,
        hubNodeGrace: { aedes: NODE_GRACE, mosquitto: EXTERNAL_NODE_GRACE },
        brokers: { aedes: process.env.FLOTILLA_BENCH_BROKER ?? 'embedded in the hub', mosquitto: `Debian's Mosquitto on loopback, configured by flotilla broker-config; hub --broker, --node-grace ${EXTERNAL_NODE_GRACE}` },
        settleMs: SETTLE_MS,
        hubChanges: HUB_CHANGES,
        timing: "device clock at the broker's PUBACK of the first status report showing the new pod running",
      },
      figures,
      targets,
    });
  });
}
