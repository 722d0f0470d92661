import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from '../test/harness/processes.js';
import { machineFacts, RESULTS_DIR, round, type TargetFigure } from './results.js';

/**
 * bench/RESULTS.md: every target of docs/ARCHITECTURE.md ('Performance targets') with the figure last measured beside it,
 * from bench/results/*.json. The bench project's global teardown rewrites it after every bench
 * run, whichever benchmarks ran.
 */

interface Row {
  what: string;
  must: string;
  aim: string;
  /** The result file (without .json) and the key of its `targets`. */
  file: string;
  target: string;
}

/** The targets that docs/ARCHITECTURE.md, 'Performance targets', refers to, in the order RESULTS.md shows them. */
const DESIGN_TARGETS: Row[] = [
  { what: 'apply → pod running (image present) vs the same containers made directly over the Docker API', must: '≤ 1.3 ×', aim: '≤ 1.1 ×', file: 'apply-to-running', target: 'applyToRunning' },
  { what: 'a fleet-wide DaemonSet change applied → all hollow devices report running, one 2-core hub', must: '10,000 in ≤ 5 s', aim: '50,000 in ≤ 5 s', file: 'fan-out', target: 'fanOut10k' },
  { what: 'hub memory at 10,000 devices × 5 pods', must: '≤ 600 MB RSS', aim: '≤ 300 MB', file: 'fan-out', target: 'hubRss10k' },
  { what: 'scheduler, 10,000 nodes', must: '≥ 2,000 pods/s', aim: '≥ 10,000 pods/s', file: 'scheduler', target: 'scheduler' },
  { what: 'agent memory, 10 pods, at rest', must: '≤ 60 MB RSS', aim: '≤ 50 MB', file: 'agent-footprint', target: 'agentRss' },
  { what: 'device uplink, steady state, metrics on', must: '≤ 200 B/s', aim: '≤ 32 B/s', file: 'uplink', target: 'uplink' },
  { what: 'metrics ingest on the hub', must: '≥ 50,000 samples/s', aim: '≥ 200,000 samples/s', file: 'metrics-ingest', target: 'ingest' },
  { what: 'pod-to-pod throughput between two devices vs a hand-made WireGuard tunnel (same implementation)', must: '≥ 0.8 ×', aim: '≥ 0.95 ×', file: 'overlay', target: 'podToPod' },
  { what: 'device joined → first pod-to-pod packet from a pod on another device', must: '≤ 5 s', aim: '≤ 2 s', file: 'overlay', target: 'joinToFirstPacket' },
  { what: 'bytes each existing device receives when one device joins, 1,000 nodes', must: '≤ 1 KB', aim: '≤ 200 B', file: 'overlay-join-bytes', target: 'joinBytes1000' },
  { what: 'bytes each existing device receives when one device joins, 10,000 nodes', must: '≤ 1 KB', aim: '≤ 200 B', file: 'overlay-join-bytes', target: 'joinBytes10000' },
  { what: 'bytes each device receives for one endpoint change, 1,000 hollow devices', must: '≤ 300 B', aim: '—', file: 'services-bytes', target: 'endpointChangeBytes' },
  { what: 'agent memory, overlay on, 100 peers (wireguard-go apart)', must: '≤ 60 MB RSS', aim: '—', file: 'overlay-footprint', target: 'agentRss100Peers' },
  { what: 'service data path: full sync of 1,000 Services × 10 endpoints on the device (plan + nft)', must: '≤ 1 s', aim: '—', file: 'services-datapath', target: 'fullSync' },
  { what: 'service data path: one endpoint change on the device (plan + nft transaction)', must: '≤ 50 ms', aim: '—', file: 'services-datapath', target: 'endpointChange' },
  { what: 'first-packet cost through a virtual IP: TCP connect at 1,000 Services ÷ at 10', must: '≤ 1.5 ×', aim: '≤ 1.1 ×', file: 'services-datapath', target: 'firstPacket' },
  { what: 'DNS from a pod: p99 on the device', must: '≤ 5 ms', aim: '—', file: 'services-dns', target: 'dnsFromPod' },
  { what: 'Service created → reachable by name from a pod on another device', must: '≤ 3 s', aim: '≤ 1 s', file: 'services-reach', target: 'serviceReach' },
  { what: 'rollout across a fleet', must: '5,000 devices, 4 waves, limited by the health gates only', aim: 'same at 50,000', file: 'rollout', target: 'rollout' },
];

interface ResultFile {
  benchmark: string;
  date?: string;
  machine?: { loadAverage1m?: number };
  figures?: Record<string, unknown>;
  targets?: Record<string, TargetFigure>;
}

/** A target as results.ts writes it; older or foreign shapes are left out. */
function isTarget(t: unknown): t is TargetFigure {
  const x = t as Partial<TargetFigure> | undefined;
  return typeof x?.measured === 'number' && typeof x.what === 'string' && typeof x.unit === 'string' && (x.better === 'lower' || x.better === 'higher');
}

function readResults(): Map<string, ResultFile> {
  const results = new Map<string, ResultFile>();
  if (!existsSync(RESULTS_DIR)) return results;
  for (const file of readdirSync(RESULTS_DIR).filter((f) => f.endsWith('.json')).sort()) {
    try {
      const result = JSON.parse(readFileSync(join(RESULTS_DIR, file), 'utf8')) as ResultFile;
      result.targets = Object.fromEntries(Object.entries(result.targets ?? {}).filter(([, t]) => isTarget(t)));
      results.set(file.slice(0, -'.json'.length), result);
    } catch {
      // A file half-written by an interrupted run is left out, not fatal.
    }
  }
  return results;
}

/** Whether a figure meets the must and the aim of its target. */
export function verdict(t: TargetFigure): string {
  const ok = (limit: number | undefined) => limit === undefined || (t.better === 'lower' ? t.measured <= limit : t.measured >= limit);
  if (t.must !== undefined && !ok(t.must)) return 'misses the must';
  if (t.aim !== undefined && ok(t.aim)) return 'meets the aim';
  return 'meets the must';
}

function figure(t: TargetFigure): string {
  return `${t.measured.toLocaleString('en-US')} ${t.unit}`;
}

function when(r: ResultFile): string {
  const load = r.machine?.loadAverage1m !== undefined ? `, load ${r.machine.loadAverage1m}` : '';
  return `${r.date?.slice(0, 16).replace('T', ' ') ?? '?'}${load}`;
}

export function summaryMarkdown(results: Map<string, ResultFile>): string {
  const lines = [
    '# Benchmark results',
    '',
    'Written by `npm run bench` (bench/summary.ts) from bench/results/*.json after every run: each target of',
    "docs/ARCHITECTURE.md ('Performance targets') beside the figure last measured for it. The runs share a 2-core machine, so the",
    'load average of each run is given; the JSON files hold the parameters, every figure and the floors.',
    '',
    '| what | must | aim | measured | verdict | run (UTC) |',
    '|---|---|---|---|---|---|',
  ];
  const shown = new Set<string>();
  for (const row of DESIGN_TARGETS) {
    const result = results.get(row.file);
    const t = result?.targets?.[row.target];
    shown.add(`${row.file}/${row.target}`);
    if (!result || !t) lines.push(`| ${row.what} | ${row.must} | ${row.aim} | not measured yet | | |`);
    else lines.push(`| ${row.what} | ${row.must} | ${row.aim} | ${figure(t)} | ${verdict(t)} | ${when(result)} (${row.file}) |`);
  }
  const others: string[] = [];
  for (const [file, result] of results) {
    for (const [key, t] of Object.entries(result.targets ?? {})) {
      if (shown.has(`${file}/${key}`)) continue;
      others.push(`| ${t.what} | ${t.must ?? ''} | ${t.aim ?? ''} | ${figure(t)} | ${verdict(t)} | ${when(result)} (${file}) |`);
    }
  }
  if (others.length) lines.push('', '## Other figures with a target', '', '| what | must | aim | measured | verdict | run (UTC) |', '|---|---|---|---|---|---|', ...others);
  lines.push(...fanOutSection(results.get('fan-out')));
  lines.push(...rolloutSection(results.get('rollout')));
  const storm = results.get('connect-storm');
  if (storm?.figures) {
    lines.push('', '## Connect storm (no target)', '', '| devices | joins | all connected again at once | hub RSS after |', '|---|---|---|---|');
    for (const [key, value] of Object.entries(storm.figures)) {
      const f = value as { joins?: { perSecond?: number }; allConnectedSeconds?: number; hubRssSettledMB?: number };
      lines.push(`| ${key.replace(/^devices/, '')} | ${f.joins?.perSecond ?? '?'} per second | ${f.allConnectedSeconds ?? '?'} s | ${f.hubRssSettledMB ?? '?'} MB |`);
    }
    lines.push('', `Run ${when(storm)}.`);
  }
  const run = results.get(RUN_FILE) as (ResultFile & { minutes?: number; benchmarks?: string[] }) | undefined;
  if (run?.minutes !== undefined) {
    lines.push('', '## The whole run', '', `\`npm run bench\` with every benchmark (${run.benchmarks?.join(', ') ?? '?'}): ${run.minutes} min wall time, ${when(run)}. Issue 5 asks for under 15 min on the 2-core machine.`);
  }
  return `${lines.join('\n')}\n`;
}

interface FanOutFigure {
  change?: { p50Seconds?: number; p99Seconds?: number; maxSeconds?: number };
  hubCpuSecondsDuringChange?: number;
  hubPeakRssMBDuringChange?: number;
  hubRssMBAtRest?: number;
  initialRollout?: { pods?: number; p50Seconds?: number; maxSeconds?: number };
  brokerCpuSecondsDuringChange?: number;
  incomplete?: string;
  hubRssMBAtTimeout?: number;
}

/** Fan-out through each broker, side by side (keys `<broker>.devices<N>`). */
function fanOutSection(fanOut: ResultFile | undefined): string[] {
  if (!fanOut?.figures) return [];
  const rows = Object.entries(fanOut.figures).flatMap(([key, value]) => {
    const m = /^(?:(\w+)\.)?devices(\d+)$/.exec(key);
    if (!m) return [];
    const f = value as FanOutFigure;
    const broker = m[1] ?? 'aedes';
    if (f.incomplete) return [`| ${broker} | ${Number(m[2]).toLocaleString('en-US')} | did not finish: ${f.incomplete} | | | | | ${f.hubRssMBAtTimeout ?? '?'} MB at the timeout | |`];
    const s = (n: number | undefined) => (n === undefined ? '?' : `${n} s`);
    return [`| ${broker} | ${Number(m[2]).toLocaleString('en-US')} | ${s(f.change?.p50Seconds)} | ${s(f.change?.p99Seconds)} | ${s(f.change?.maxSeconds)} | ${s(f.hubCpuSecondsDuringChange)} | ${f.brokerCpuSecondsDuringChange === undefined ? '—' : s(f.brokerCpuSecondsDuringChange)} | ${f.hubRssMBAtRest ?? '?'} / ${f.hubPeakRssMBDuringChange ?? '?'} MB | ${s(f.initialRollout?.p50Seconds)} / ${s(f.initialRollout?.maxSeconds)} |`];
  });
  if (rows.length === 0) return [];
  return [
    '',
    '## Fan-out through each broker',
    '',
    'A fleet-wide DaemonSet change (1 of 5 pods per device) until every hollow device reports it running; the hub embeds aedes, or joins Mosquitto with `--broker`.',
    '',
    '| broker | devices | change p50 | p99 | max | hub CPU in the change | broker CPU | hub RSS at rest / peak | first rollout (5 pods) p50 / max |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Run ${when(fanOut)}.`,
  ];
}

interface RolloutFigures {
  devices?: number;
  waves?: { name: string; devices: number; seconds: number; beyondGateSeconds: number; devicesRunningMaxSeconds: number }[];
  totalSeconds?: number;
  gatesSeconds?: number;
  hubCpuSeconds?: number;
  hubCpuPercent?: number;
  hubPeakRssMB?: number;
}

/** The Waves rollout wave by wave (rollout.bench.ts): each wave's time from its start to its gate passing, and the hub's CPU. */
function rolloutSection(rollout: ResultFile | undefined): string[] {
  const f = rollout?.figures as RolloutFigures | undefined;
  if (!f?.waves?.length) return [];
  const floor = (rollout as ResultFile & { floor?: { maxSeconds?: number; hubCpuSeconds?: number } }).floor;
  return [
    '',
    `## Waves rollout across ${f.devices?.toLocaleString('en-US') ?? '?'} hollow devices`,
    '',
    '| wave | devices | started → gate passed | beyond the gate | last device running, from the start |',
    '|---|---|---|---|---|',
    ...f.waves.map((w) => `| ${w.name} | ${w.devices.toLocaleString('en-US')} | ${w.seconds} s | ${w.beyondGateSeconds} s | ${w.devicesRunningMaxSeconds} s |`),
    '',
    `Whole rollout ${f.totalSeconds ?? '?'} s (gates ${f.gatesSeconds ?? '?'} s); hub CPU ${f.hubCpuSeconds ?? '?'} s (${f.hubCpuPercent ?? '?'} % of a core), peak RSS ${f.hubPeakRssMB ?? '?'} MB. Floor: the same change without waves on every device at once, ${floor?.maxSeconds ?? '?'} s, hub CPU ${floor?.hubCpuSeconds ?? '?'} s. Run ${when(rollout!)}.`,
  ];
}

/** The record of the last run of every benchmark at once: its wall time. */
const RUN_FILE = 'bench-run';
let startedAt = 0;

/** Writes bench/results/bench-run.json when every benchmark wrote its results during this run. */
function recordWholeRun(results: Map<string, ResultFile>): void {
  if (startedAt === 0) return;
  const benches = readdirSync(join(REPO, 'bench')).filter((f) => f.endsWith('.bench.ts')).map((f) => f.slice(0, -'.bench.ts'.length)).sort();
  const fresh = (name: string) => Date.parse(results.get(name)?.date ?? '') >= startedAt;
  if (benches.length === 0 || !benches.every(fresh)) return;
  const run = { benchmark: RUN_FILE, date: new Date().toISOString(), machine: machineFacts(), minutes: round((Date.now() - startedAt) / 60_000, 1), benchmarks: benches };
  writeFileSync(join(RESULTS_DIR, `${RUN_FILE}.json`), `${JSON.stringify(run, null, 2)}\n`);
}

export function writeSummary(): string {
  const file = join(REPO, 'bench', 'RESULTS.md');
  recordWholeRun(readResults());
  writeFileSync(file, summaryMarkdown(readResults()));
  return file;
}

/** vitest global setup of the bench project: the run's start before, the summary after. */
export function setup(): void {
  startedAt = Date.now();
}

export function teardown(): void {
  try {
    writeSummary();
  } catch (err) {
    // A summary that cannot be written must say so, not fail the benchmarks that ran.
    console.error(`bench/RESULTS.md not written: ${(err as Error).message}`);
  }
}
