import type { PodTemplate } from '../../shared/resources/daemonset.js';
import type { FailedNode, RolloutPhase, RolloutSpec, RolloutStatus, WaveStatus } from '../../shared/resources/rollout.js';
import type { PlannedWave } from '../../shared/rollout/plan.js';
import { age, table } from './print.js';

/**
 * How a Waves rollout reads on the command line: the live block and the plain lines of
 * `rollout status`, the history table, a record in full (history --revision, describe rollout)
 * and the summary `describe daemonset` shows. Pure: a Rollout record (shared/resources/rollout.ts)
 * and a clock in, text out.
 */

export interface RolloutRecord {
  metadata: { name: string; namespace?: string; uid?: string; creationTimestamp?: string; ownerReferences?: { kind: string; name: string; uid: string }[] };
  spec: RolloutSpec;
  status?: RolloutStatus;
}

/** One line of the plain output: printed again only when its text changes. */
export interface KeyedLine {
  key: string;
  text: string;
}

const BAR_WIDTH = 20;

/** `daemonset` or `deployment`: the kind a record rolls out, as the command line names it. */
export function targetWord(r: RolloutRecord): 'daemonset' | 'deployment' {
  return r.spec.target?.kind === 'Deployment' ? 'deployment' : 'daemonset';
}

const FAILED_SHOWN = 5;

/** The waves as they stand; before the hub wrote a status, as planned (all Pending). */
export function waveStatuses(r: RolloutRecord): WaveStatus[] {
  if (r.status?.waves?.length) return r.status.waves;
  return r.spec.waves.map((w) => ({ name: w.name, phase: 'Pending', total: w.replicas ?? w.nodes.length, released: 0, updated: 0, ready: 0, failed: 0, waiting: w.replicas ?? w.nodes.length, skipped: 0 }));
}

export function phaseOf(r: RolloutRecord): RolloutPhase {
  return r.status?.phase ?? 'Progressing';
}

/** `2/4`: the wave in progress (or last reached) of all; every wave once it succeeded; `-` without waves. */
export function waveText(r: RolloutRecord): string {
  const total = r.spec.waves.length;
  if (total === 0) return '-';
  if (phaseOf(r) === 'Succeeded') return `${total}/${total}`;
  return `${Math.min(total, (r.status?.wave ?? 0) + 1)}/${total}`;
}

/** Waves whose gate passed, of all: `3/4`. */
export function passedText(r: RolloutRecord): string {
  const total = r.spec.waves.length;
  return total === 0 ? '-' : `${waveStatuses(r).filter((w) => w.phase === 'Passed').length}/${total}`;
}

export function updatedText(r: RolloutRecord): string {
  const waves = waveStatuses(r);
  return `${waves.reduce((n, w) => n + w.updated, 0)}/${waves.reduce((n, w) => n + w.total, 0)}`;
}

/** `90s`, `10m`, `1h30m`: a pause as a manifest would write it. */
export function formatSeconds(seconds: number): string {
  if (seconds <= 0) return '0s';
  const parts: string[] = [];
  let rest = seconds;
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('');
}

export function pauseText(pause: PlannedWave['pause']): string {
  if (pause === undefined) return '-';
  return pause === 'resume' ? 'until resumed' : formatSeconds(pause);
}

export function progressBar(done: number, total: number, width = BAR_WIDTH): string {
  const filled = total <= 0 ? width : Math.min(width, Math.round((done / total) * width));
  return '█'.repeat(filled) + '░'.repeat(width - filled);
}

function revisionsText(r: RolloutRecord): string {
  return r.spec.fromRevision > 0 ? `revision ${r.spec.fromRevision} → ${r.spec.revision}` : `revision ${r.spec.revision}`;
}

/** Until when a paused rollout waits: the absolute time, and on a terminal also how long that is from now. */
function pauseUntilText(r: RolloutRecord, now: number | undefined): string {
  if (r.status?.phase !== 'Paused') return '';
  if (!r.status.pauseUntil) return 'until resumed';
  const left = Math.ceil((Date.parse(r.status.pauseUntil) - (now ?? 0)) / 1000);
  return now === undefined || left <= 0 ? `until ${r.status.pauseUntil}` : `until ${r.status.pauseUntil} (${formatSeconds(left)} left)`;
}

/** The header of the status display: which rollout, where it stands, and why when it stopped. */
export function headerLine(dsName: string, r: RolloutRecord, now?: number): string {
  const parts = [`${targetWord(r)}/${dsName}`, revisionsText(r), phaseOf(r)];
  if (r.spec.waves.length > 0) parts.push(`wave ${waveText(r)}`);
  const pause = pauseUntilText(r, now);
  if (pause) parts.push(pause);
  const message = r.status?.message;
  return `${parts.join('  ')}${message ? `: ${message}` : ''}`;
}

function countsText(w: WaveStatus): string {
  return `${w.updated}/${w.total} updated  ready ${w.ready}  failed ${w.failed}  waiting ${w.waiting}${w.skipped ? `  skipped ${w.skipped}` : ''}`;
}

function failedNodeText(f: FailedNode): string {
  return `${f.node} (wave ${f.wave}): ${f.reason}${f.message ? `: ${f.message}` : ''}`;
}

/** What `rollout status` draws on a terminal, redrawn in place: the header, a bar per wave, the first failed devices. */
export function liveBlock(dsName: string, r: RolloutRecord, now: number): string[] {
  const rows = waveStatuses(r).map((w) => [`  ${w.name}`, progressBar(w.updated, w.total), `${w.updated}/${w.total}`, `ready ${w.ready}`, `failed ${w.failed}`, `waiting ${w.waiting}`, w.phase]);
  const lines = [headerLine(dsName, r, now), ...(rows.length ? table(rows).split('\n') : [])];
  const failed = r.status?.failedNodes ?? [];
  if (failed.length > 0) {
    lines.push(`  failed ${targetWord(r) === 'deployment' ? 'pods' : 'devices'}:`, ...failed.slice(0, FAILED_SHOWN).map((f) => `    ${failedNodeText(f)}`));
    if (failed.length > FAILED_SHOWN) lines.push(`    … and ${failed.length - FAILED_SHOWN} more (flotilla rollout history ${targetWord(r)}/${dsName} --revision ${r.spec.revision})`);
  }
  return lines;
}

/** What `rollout status` prints elsewhere: one self-contained line per fact; a line is printed again only when it changes. */
export function plainLines(dsName: string, r: RolloutRecord): KeyedLine[] {
  const revision = r.spec.revision;
  const waves = waveStatuses(r);
  const lines: KeyedLine[] = [{ key: `${revision}/header`, text: headerLine(dsName, r) }];
  waves.forEach((w, i) => lines.push({ key: `${revision}/wave/${w.name}`, text: `${targetWord(r)}/${dsName} revision ${revision} wave ${i + 1}/${waves.length} ${w.name}: ${countsText(w).replace(/ {2}/g, ', ')}: ${w.phase}` }));
  for (const f of r.status?.failedNodes ?? []) lines.push({ key: `${revision}/failed/${f.node}`, text: `${targetWord(r)}/${dsName} revision ${revision}: ${targetWord(r) === 'deployment' ? 'pod' : 'device'} ${failedNodeText(f)}` });
  return lines;
}

/** `rollout history daemonset/NAME`: one row per record, oldest first. */
export function wavesHistoryTable(records: RolloutRecord[], now = Date.now()): string {
  const rows = [...records]
    .sort((a, b) => a.spec.revision - b.spec.revision)
    .map((r) => [String(r.spec.revision), age(r.status?.startedAt ?? r.metadata.creationTimestamp, now), r.spec.startedBy ?? '<unknown>', phaseOf(r), passedText(r), String(r.status?.failedNodes?.length ?? 0), r.spec.changeCause ?? '<none>']);
  return table([['REVISION', 'STARTED', 'BY', 'PHASE', 'WAVES', 'FAILED', 'CHANGE-CAUSE'], ...rows]);
}

function field(label: string, value: string | number | undefined, indent = 0): string {
  return `${' '.repeat(indent)}${`${label}:`.padEnd(Math.max(18 - indent, label.length + 2))}${value ?? '<none>'}`;
}

function templateLines(label: string, template: PodTemplate | undefined): string[] {
  if (!template) return [field(label, '<none>')];
  const lines = [`${label}:`, '  Containers:'];
  for (const c of template.spec.containers) lines.push(`   ${c.name}:`, field('Image', c.image, 4), ...(c.command ? [field('Command', c.command.join(' '), 4)] : []));
  return lines;
}

function strategyText(r: RolloutRecord): string {
  const s = r.spec.strategy;
  if (!s) return '<none>';
  const gate = s.healthGate;
  const failures = gate.maxFailed !== undefined ? `maxFailed ${gate.maxFailed}` : `maxFailedPercent ${gate.maxFailedPercent}%`;
  return [`maxUnavailable ${s.maxUnavailable}`, s.order, `minReadySeconds ${gate.minReadySeconds}`, failures, `progressDeadlineSeconds ${gate.progressDeadlineSeconds}`, `onFailure ${s.onFailure}`, `offlineNodes ${s.offlineNodes}`, ...(s.maxPerMinute ? [`maxPerMinute ${s.maxPerMinute}`] : [])].join(', ');
}

/** A record in full: who and when, the templates on both sides, every wave and its outcome, the failed devices with their reasons. */
export function recordLines(r: RolloutRecord): string[] {
  const s = r.status;
  const lines = [
    field('DaemonSet', r.spec.target.name),
    field('Revision', r.spec.fromRevision > 0 ? `${r.spec.revision} (from ${r.spec.fromRevision})` : r.spec.revision),
    field('Phase', phaseOf(r)),
    ...(s?.message ? [field('Message', s.message)] : []),
    field('Started', s?.startedAt ?? r.metadata.creationTimestamp),
    field('Started By', r.spec.startedBy ?? '<unknown>'),
    ...(s?.finishedAt ? [field('Finished', s.finishedAt)] : []),
    ...(s?.pauseUntil && s.phase === 'Paused' ? [field('Paused Until', s.pauseUntil)] : []),
    field('Change Cause', r.spec.changeCause ?? '<none>'),
    field('Strategy', strategyText(r)),
    ...templateLines('Pod Template', r.spec.toTemplate),
    ...(r.spec.fromRevision > 0 ? templateLines('Previous Template', r.spec.fromTemplate) : []),
  ];
  const waves = waveStatuses(r);
  lines.push('Waves:');
  if (waves.length === 0) lines.push('  <none> (the first revision goes to every device at once)');
  else {
    const planned = new Map(r.spec.waves.map((w) => [w.name, w]));
    const rows = waves.map((w) => [w.name, String(w.total), w.phase, String(w.updated), String(w.ready), String(w.failed), String(w.skipped), w.startedAt ?? '-', w.finishedAt ?? '-', pauseText(planned.get(w.name)?.pause)]);
    lines.push(...table([['WAVE', 'DEVICES', 'PHASE', 'UPDATED', 'READY', 'FAILED', 'SKIPPED', 'STARTED', 'FINISHED', 'PAUSE AFTER'], ...rows]).split('\n').map((l) => `  ${l}`));
  }
  const failed = s?.failedNodes ?? [];
  lines.push('Failed Devices:');
  if (failed.length === 0) lines.push('  <none>');
  else lines.push(...table([['NODE', 'WAVE', 'REASON', 'AT', 'MESSAGE'], ...failed.map((f) => [f.node, f.wave, f.reason, f.at, f.message ?? ''])]).split('\n').map((l) => `  ${l}`));
  const skipped = s?.skippedNodes ?? [];
  if (skipped.length > 0) lines.push('Skipped Devices:', ...skipped.map((n) => `  ${n.node} (wave ${n.wave}): ${n.reason}`));
  return lines;
}

/** The current rollout of a Waves DaemonSet, as `describe daemonset` shows it. */
export function rolloutSummaryLines(dsName: string, r: RolloutRecord | undefined): string[] {
  if (!r) return [field('Rollout', '<none>')];
  const lines = [field('Rollout', `${r.metadata.name}: ${headerLine(dsName, r).replace(`${targetWord(r)}/${dsName}  `, '')}`)];
  const waves = waveStatuses(r);
  if (waves.length) lines.push(...table(waves.map((w) => [`  ${w.name}`, countsText(w), w.phase])).split('\n'));
  const failed = r.status?.failedNodes ?? [];
  if (failed.length) lines.push(`  Failed ${targetWord(r) === 'deployment' ? 'Pods' : 'Devices'}:`, ...failed.map((f) => `    ${failedNodeText(f)}`));
  return lines;
}
