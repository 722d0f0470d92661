import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { KEYFRAME_INTERVAL_MS, MetricsCollector, emitContainer } from '../../agent/metrics/collector.js';
import { statsFromDocker } from '../../agent/metrics/docker-stats.js';
import { mountOf, NodeReader, parseLoadavg, parseMeminfo, parseNetDev, parseProcStat } from '../../agent/metrics/proc.js';
import type { ContainerRuntime, ContainerStats, RuntimeContainer } from '../../agent/runtime/runtime.js';
import { decodeMetricsBatch } from '../../shared/protocol/metrics.js';

// The agent's side of metrics: what it reads from /proc, /sys and the engine's stats, in the
// wire's keys and integers, and what it chooses to send.

const PROC_STAT = `cpu  598636 12 147621 2022733 10412 3 1304 1923 0 0
cpu0 293274 0 69163 1024970 2365 0 268 957 0 0
intr 12345 0 0
ctxt 987654
btime 1732360000
processes 4242
`;
const MEMINFO = `MemTotal:       24684096 kB
MemFree:         1234567 kB
MemAvailable:   20480000 kB
Buffers:          123456 kB
`;
const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 126556267  128280    0    0    0     0          0         0 126556267  128280    0    0    0     0       0          0
  eth0: 9876543    6543    1    2    0     0          0         0  1234567     4321    3    4    0     0       0          0
veth1a2b3c:  100       1    0    0    0     0          0         0      200        2    0    0    0     0       0          0
wlan0:       5        1    0    0    0     0          0         0        6        1    0    0    0     0       0          0
`;
const MOUNTINFO = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:26 / /var/lib/docker rw,relatime shared:5 - xfs /dev/sdb1 rw
31 22 0:27 / /var/lib/doc rw - tmpfs tmpfs rw
40 30 0:28 / /var/lib/docker/over\\040lay rw - overlay overlay rw
`;

function collect(fn: (emit: (k: string, v: number) => void) => unknown): Record<string, number> {
  const out: Record<string, number> = {};
  fn((k, v) => (out[k] = v));
  return out;
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('node figures from /proc and /sys', () => {
  it('reads CPU time by mode in ms, and the boot time', () => {
    expect(collect((e) => parseProcStat(PROC_STAT, e))).toEqual({
      'cpu|user': 5_986_360,
      'cpu|nice': 120,
      'cpu|system': 1_476_210,
      'cpu|idle': 20_227_330,
      'cpu|iowait': 104_120,
      'cpu|irq': 30,
      'cpu|softirq': 13_040,
      'cpu|steal': 19_230,
      boot: 1_732_360_000,
    });
  });

  it('reads load averages in thousandths, and memory in bytes', () => {
    expect(collect((e) => parseLoadavg('0.53 1.58 12.44 2/99 3525\n', e))).toEqual({ load1: 530, load5: 1_580, load15: 12_440 });
    const mem = collect((e) => expect(parseMeminfo(MEMINFO, e)).toBe(24_684_096 * 1024));
    expect(mem).toEqual({ mem_total: 24_684_096 * 1024, mem_avail: 20_480_000 * 1024 });
  });

  it('reads each interface but loopback and containers\' veths', () => {
    const net = collect((e) => parseNetDev(NET_DEV, e));
    expect(Object.keys(net).filter((k) => k.endsWith('|eth0'))).toHaveLength(8);
    expect(net).toMatchObject({ 'net_rxb|eth0': 9_876_543, 'net_rxp|eth0': 6_543, 'net_rxe|eth0': 1, 'net_rxd|eth0': 2, 'net_txb|eth0': 1_234_567, 'net_txp|eth0': 4_321, 'net_txe|eth0': 3, 'net_txd|eth0': 4, 'net_rxb|wlan0': 5 });
    expect(Object.keys(net).some((k) => k.includes('|lo') || k.includes('veth'))).toBe(false);
  });

  it('finds the mount a path lives on', () => {
    expect(mountOf('/var/lib/docker/image', MOUNTINFO)).toEqual({ mountpoint: '/var/lib/docker', device: '/dev/sdb1', fstype: 'xfs' });
    expect(mountOf('/var/lib/docker-old', MOUNTINFO)).toEqual({ mountpoint: '/', device: '/dev/sda1', fstype: 'ext4' });
    expect(mountOf('/var/lib/docker/over lay/x', MOUNTINFO)?.mountpoint).toBe('/var/lib/docker/over lay');
  });

  it('reads a whole node from a root of files, thermal zones included', () => {
    const root = mkdtempSync(join(tmpdir(), 'flt-proc-'));
    dirs.push(root);
    mkdirSync(join(root, 'proc', 'net'), { recursive: true });
    mkdirSync(join(root, 'proc', 'self'), { recursive: true });
    writeFileSync(join(root, 'proc', 'stat'), PROC_STAT);
    writeFileSync(join(root, 'proc', 'loadavg'), '0.10 0.20 0.30 1/2 3\n');
    writeFileSync(join(root, 'proc', 'meminfo'), MEMINFO);
    writeFileSync(join(root, 'proc', 'net', 'dev'), NET_DEV);
    writeFileSync(join(root, 'proc', 'self', 'mountinfo'), `22 1 8:1 / / rw - ext4 /dev/root rw\n`);
    for (const [zone, type, temp] of [['0', 'cpu-thermal', '48312'], ['1', 'gpu|thermal', '41000']]) {
      mkdirSync(join(root, 'sys', 'class', 'thermal', `thermal_zone${zone}`), { recursive: true });
      writeFileSync(join(root, 'sys', 'class', 'thermal', `thermal_zone${zone}`, 'type'), `${type}\n`);
      writeFileSync(join(root, 'sys', 'class', 'thermal', `thermal_zone${zone}`, 'temp'), `${temp}\n`);
    }
    const reader = new NodeReader(join(root, 'proc'), join(root, 'sys'));
    const node = collect((e) => reader.read([root, join(root, 'proc')], e));
    expect(node).toMatchObject({ 'temp|0|cpu-thermal': 48_312, 'temp|1|gpu_thermal': 41_000, load5: 200, mem_avail: 20_480_000 * 1024, 'cpu|idle': 20_227_330 });
    // Two paths on one file system: reported once, under its mount point.
    expect(Object.keys(node).filter((k) => k.startsWith('fs_size|'))).toEqual(['fs_size|/|/dev/root|ext4']);
    expect(node['fs_size|/|/dev/root|ext4']).toBeGreaterThan(0);
  });
});

describe('container figures from the engine', () => {
  const v1 = {
    read: '2025-01-01T00:00:00Z',
    cpu_stats: { cpu_usage: { total_usage: 23_164_224_000, usage_in_kernelmode: 10_000_000_000, usage_in_usermode: 13_000_000_000 } },
    memory_stats: { usage: 50_000_000, limit: 25_276_514_304, stats: { total_inactive_file: 8_000_000, total_rss: 40_000_000, total_cache: 9_000_000, rss: 1, cache: 2 } },
    blkio_stats: { io_service_bytes_recursive: [{ op: 'Read', value: 4096 }, { op: 'Write', value: 100 }, { op: 'Read', value: 4 }, { op: 'Total', value: 4200 }] },
    pids_stats: { current: 3 },
  };

  it('figures cgroup v1 as cAdvisor does: the working set is usage minus inactive file pages', () => {
    expect(statsFromDocker(v1)).toEqual({ cpuTotalNs: 23_164_224_000, cpuUserNs: 13_000_000_000, cpuSystemNs: 10_000_000_000, memoryUsageBytes: 50_000_000, memoryWorkingSetBytes: 42_000_000, memoryRssBytes: 40_000_000, memoryCacheBytes: 9_000_000, memoryLimitBytes: 25_276_514_304, blockReadBytes: 4100, blockWriteBytes: 100, pids: 3 });
  });

  it('figures cgroup v2, and an infra container\'s network', () => {
    const v2 = { ...v1, memory_stats: { usage: 30_000_000, limit: 64 * 1048576, stats: { inactive_file: 40_000_000, anon: 20_000_000, file: 10_000_000 } }, networks: { eth0: { rx_bytes: 10, rx_packets: 1, rx_errors: 0, rx_dropped: 0, tx_bytes: 20, tx_packets: 2, tx_errors: 0, tx_dropped: 1 } } };
    expect(statsFromDocker(v2)).toMatchObject({ memoryWorkingSetBytes: 0, memoryRssBytes: 20_000_000, memoryCacheBytes: 10_000_000, networks: { eth0: { rxBytes: 10, txPackets: 2, txDropped: 1 } } });
  });

  it('has nothing for a stopped container', () => {
    expect(statsFromDocker({ read: '0001-01-01T00:00:00Z', cpu_stats: { cpu_usage: { total_usage: 0 } } })).toBeUndefined();
  });

  it('sends CPU in ms and a limit at or above the node\'s memory as none (0)', () => {
    const sent = collect((e) => emitContainer(statsFromDocker(v1)!, 2, 24_000_000_000, e));
    expect(sent).toMatchObject({ cpu: 23_164, cpu_user: 13_000, cpu_sys: 10_000, mem_ws: 42_000_000, mem_limit: 0, io_rd: 4100, pids: 3, restarts: 2 });
    expect(collect((e) => emitContainer({ memoryLimitBytes: 64 * 1048576 }, 0, 24_000_000_000, e)).mem_limit).toBe(64 * 1048576);
  });
});

describe('the collector', () => {
  const running = (id: string, pod: string, container: string): RuntimeContainer => ({ id, name: `flt_${pod}_${container}`, image: 'x', state: 'running', labels: { 'flotilla.namespace': 'default', 'flotilla.pod': pod, 'flotilla.container': container, 'flotilla.restart-count': '1' } });

  function setup(stats: Map<string, ContainerStats>) {
    let now = Date.parse('2025-01-01T00:00:00Z');
    const sent: Buffer[] = [];
    const runtime = { containerStats: async (id: string) => stats.get(id) } as unknown as ContainerRuntime;
    const reader = { read: (_paths: readonly string[], emit: (k: string, v: number) => void) => emit('mem_total', 1_000_000_000) } as unknown as NodeReader;
    const collector = new MetricsCollector({
      runtime,
      containers: () => [running('a'.repeat(64), 'web', 'app'), running('b'.repeat(64), 'web', 'POD'), { ...running('c'.repeat(64), 'old', 'app'), state: 'exited' }],
      fsPaths: () => [],
      publish: (p) => (sent.push(p), true),
      log: pino({ level: 'silent' }),
      reader,
      now: () => now,
    });
    const last = () => {
      const r = decodeMetricsBatch(sent[sent.length - 1]!);
      if (!r.ok) throw new Error('bad batch');
      return r.value;
    };
    return { collector, sent, last, advance: (ms: number) => (now += ms) };
  }

  it('sends every series in a keyframe, then only what changed, then everything again', async () => {
    const stats = new Map<string, ContainerStats>([
      ['a'.repeat(64), { cpuTotalNs: 5e9, memoryWorkingSetBytes: 1000 }],
      ['b'.repeat(64), { cpuTotalNs: 1e6, networks: { eth0: { rxBytes: 1, rxPackets: 1, rxErrors: 0, rxDropped: 0, txBytes: 2, txPackets: 2, txErrors: 0, txDropped: 0 } } }],
    ]);
    const { collector, last, advance } = setup(stats);
    await collector.tick();
    const first = last();
    expect(first.keyframe).toBe(true);
    expect(first.node).toEqual({ mem_total: [1_000_000_000] });
    expect(first.containers.map((c) => [c.c, c.id, Object.keys(c.s).sort()])).toEqual([
      ['app', 'aaaaaaaaaaaa', ['cpu', 'mem_ws', 'restarts']],
      ['POD', 'bbbbbbbbbbbb', ['net_rxb|eth0', 'net_rxd|eth0', 'net_rxe|eth0', 'net_rxp|eth0', 'net_txb|eth0', 'net_txd|eth0', 'net_txe|eth0', 'net_txp|eth0']],
    ]);

    stats.set('a'.repeat(64), { cpuTotalNs: 6e9, memoryWorkingSetBytes: 1000 });
    advance(15_000);
    await collector.tick();
    expect(last()).toMatchObject({ keyframe: false, node: {}, containers: [{ c: 'app', s: { cpu: [6_000] } }] });
    expect(Object.keys(last().containers[0]!.s)).toEqual(['cpu']);

    advance(KEYFRAME_INTERVAL_MS);
    await collector.tick();
    expect(last().keyframe).toBe(true);
    expect(last().containers).toHaveLength(2);
  });

  it('sends everything again after a batch it could not send', async () => {
    const { collector, sent, advance } = setup(new Map([['a'.repeat(64), { cpuTotalNs: 1e9 }]]));
    await collector.tick();
    const publish = (collector as unknown as { opts: { publish: (p: Buffer) => boolean } }).opts;
    const original = publish.publish;
    publish.publish = () => false;
    advance(15_000);
    await collector.tick();
    publish.publish = original;
    advance(15_000);
    await collector.tick();
    const r = decodeMetricsBatch(sent[sent.length - 1]!);
    expect(r.ok && r.value.keyframe).toBe(true);
  });
});
