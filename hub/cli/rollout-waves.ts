import { templateHash } from '../controllers/names.js';
import { STARTED_BY_ANNOTATION } from '../controllers/waves/records.js';
import { CHANGE_CAUSE_ANNOTATION } from '../../shared/resources/deployment.js';
import type { DaemonSetSpec, DaemonSetStatus, PodTemplate } from '../../shared/resources/daemonset.js';
import { WAVES } from '../../shared/resources/waves.js';
import { objectPath, type HubClient } from './client.js';
import { parseDuration } from './commands.js';
import { CliError } from './errors.js';
import { canonical, fetchPreview, previewText, rolloutEndpoint } from './rollout-preview.js';
import { phaseOf, recordLines, targetWord, wavesHistoryTable, waveText, type RolloutRecord } from './rollout-waves-render.js';
import { LiveBlock, PlainPrinter, statusView, type StatusDisplay } from './rollout-waves-status.js';

/**
 * `flotilla rollout …` for a DaemonSet with `updateStrategy.type: Waves`.
 * The hub keeps one Rollout record per revision (shared/resources/rollout.ts): status, history
 * and undo read them; pause, resume and abort go through the DaemonSet's rollout endpoint.
 */

type Out = (text: string) => void;

export interface WavesDaemonSet {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; uid: string; resourceVersion: string; generation?: number; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: DaemonSetSpec;
  status?: DaemonSetStatus;
}

export interface WavesTarget {
  name: string;
  namespace: string;
  client: HubClient;
  /** What rolls out in waves: a DaemonSet (default) or a Deployment (`spec.strategy.type: Waves`). */
  wavesKind?: 'daemonset' | 'deployment';
}

const wordOf = (t: WavesTarget) => t.wavesKind ?? 'daemonset';
const pluralOf = (t: WavesTarget) => (t.wavesKind === 'deployment' ? 'deployments' : 'daemonsets');

export interface WavesOptions {
  watch?: boolean;
  timeout?: string;
  revision?: string;
  toRevision?: string;
  dryRun?: boolean;
  /** Draw the live block rather than plain lines; the CLI takes it from stdout. */
  tty?: boolean;
  /** How often `rollout status` looks again while it waits (default 1 s). */
  pollMs?: number;
}

export type WavesAction = 'pause' | 'resume' | 'abort';

/** Who started a rollout that `rollout undo` caused, as its record and `rollout history` show it. */
export const UNDO_PRINCIPAL = 'rollout undo';

const POLL_MS = 1000;

export function isWaves(ds: WavesDaemonSet): boolean {
  return ds.spec.updateStrategy?.type === WAVES || (ds.spec as { strategy?: { type?: string } }).strategy?.type === WAVES;
}

/** The DaemonSet's records (by owner uid), oldest revision first. */
export function recordsOf(ds: WavesDaemonSet, records: RolloutRecord[]): RolloutRecord[] {
  return records
    .filter((r) => r.spec?.target?.uid === ds.metadata.uid || r.metadata.ownerReferences?.some((o) => o.kind === 'DaemonSet' && o.uid === ds.metadata.uid))
    .sort((a, b) => a.spec.revision - b.spec.revision);
}

export function sameTemplate(a: PodTemplate | undefined, b: PodTemplate | undefined): boolean {
  return a !== undefined && b !== undefined && canonical(a) === canonical(b);
}

/** Whether a record rolls out the DaemonSet's template as it is now (by its hash, or the template itself). */
export function rollsOutCurrent(ds: WavesDaemonSet, r: RolloutRecord): boolean {
  return r.spec.toHash === templateHash(ds.spec.template) || sameTemplate(r.spec.toTemplate, ds.spec.template);
}

async function getDaemonSet(t: WavesTarget): Promise<WavesDaemonSet> {
  return (await t.client.request<WavesDaemonSet>('GET', objectPath(pluralOf(t), true, t.namespace, t.name))).body;
}

async function listRecords(t: WavesTarget, ds: WavesDaemonSet): Promise<RolloutRecord[]> {
  const { body } = await t.client.request<{ items: RolloutRecord[] }>('GET', objectPath('rollouts', true, t.namespace));
  return recordsOf(ds, body.items);
}

/**
 * Which record `rollout status` follows: the newest, once it rolls out the DaemonSet's template
 * as it is now. A newer template applied meanwhile supersedes it and the newer rollout is
 * followed instead, so the exit status is that of the template the DaemonSet has at the end.
 */
export function chooseRecord(ds: WavesDaemonSet, records: RolloutRecord[]): { record?: RolloutRecord; waiting?: string; fallback?: true } {
  const kindText = ds.kind === 'Deployment' ? 'deployment' : 'daemon set';
  if ((ds.metadata.generation ?? 0) > (ds.status?.observedGeneration ?? 0)) return { waiting: `Waiting for ${kindText} spec update to be observed...` };
  const newest = records.at(-1);
  // A DaemonSet that became Waves without a new template has no record yet: as for RollingUpdate.
  if (!newest) return { fallback: true };
  if (!rollsOutCurrent(ds, newest)) return { waiting: `Waiting for the rollout of ${kindText} "${ds.metadata.name}" to start...` };
  return { record: newest };
}

/**
 * Follows the rollout until it ends: a live block on a terminal, plain lines elsewhere. Polls
 * the DaemonSet and the record followed, and lists the records only when that record may no
 * longer be the newest (the template changed, or it was superseded).
 */
export async function wavesStatus(t: WavesTarget, o: WavesOptions, out: Out, fallback: (ds: WavesDaemonSet) => { message: string; done: boolean }): Promise<void> {
  if (o.dryRun) return wavesPreview(t, out);
  const timeoutSeconds = o.timeout === undefined || /^0[smhd]?$/.test(o.timeout) ? 0 : parseDuration(o.timeout);
  const deadline = timeoutSeconds ? Date.now() + timeoutSeconds * 1000 : Infinity;
  const watch = o.watch !== false;
  const display: StatusDisplay = (o.tty ?? Boolean(process.stdout.isTTY)) ? new LiveBlock(out, () => process.stdout.columns) : new PlainPrinter(out);
  let record: RolloutRecord | undefined;
  for (;;) {
    const ds = await getDaemonSet(t);
    if (record && rollsOutCurrent(ds, record) && phaseOf(record) !== 'Superseded') {
      record = (await t.client.request<RolloutRecord>('GET', objectPath('rollouts', true, t.namespace, record.metadata.name))).body;
    } else {
      const choice = chooseRecord(ds, await listRecords(t, ds));
      record = choice.record;
      if (!record) {
        const p = choice.fallback ? fallback(ds) : { message: choice.waiting!, done: false };
        display.show([{ key: 'waiting', text: p.message }], [p.message]);
        if (p.done || !watch) return display.finish();
        await sleepUntil(deadline, t, o);
        continue;
      }
    }
    const view = statusView(ds.metadata.name, record, Date.now());
    display.show(view.plain, view.block);
    if (view.error || view.done || !watch) display.finish();
    if (view.error) throw view.error;
    if (view.done) return out(view.done);
    if (!watch) return;
    await sleepUntil(deadline, t, o);
  }
}

async function sleepUntil(deadline: number, t: WavesTarget, o: WavesOptions): Promise<void> {
  if (Date.now() >= deadline) throw new CliError(`timed out waiting for the rollout of ${wordOf(t)}/${t.name} after ${o.timeout}`);
  await new Promise((r) => setTimeout(r, Math.min(o.pollMs ?? POLL_MS, Math.max(0, deadline - Date.now()))));
}

/** `rollout status daemonset/NAME --dry-run`: the waves of the stored DaemonSet's next rollout; nothing changes. */
async function wavesPreview(t: WavesTarget, out: Out): Promise<void> {
  out(previewText(t.name, await fetchPreview(t.client, t.namespace, t.name, undefined, pluralOf(t)), wordOf(t)));
}

/** `rollout pause|resume|abort daemonset/NAME`: one call to the hub, which answers with the record. */
export async function wavesControl(t: WavesTarget, action: WavesAction, out: Out): Promise<void> {
  let record: RolloutRecord;
  try {
    record = (await t.client.request<RolloutRecord>('POST', rolloutEndpoint(t.namespace, t.name, undefined, pluralOf(t)), { action })).body;
  } catch (e) {
    if (e instanceof CliError) throw new CliError(`cannot ${action} the rollout of ${wordOf(t)}/${t.name}: ${e.message}`, e.exitCode, e.details);
    throw e;
  }
  out(controlLine(t.name, action, record));
}

const DONE_WORDS: Record<WavesAction, string> = { pause: 'paused', resume: 'resumed', abort: 'aborted' };

export function controlLine(name: string, action: WavesAction, r: RolloutRecord | undefined): string {
  const where = r?.spec ? ` (rollout of revision ${r.spec.revision}${r.spec.waves.length ? `, wave ${waveText(r)}` : ''})` : '';
  return `${r?.spec ? targetWord(r) : 'daemonset'}/${name} ${DONE_WORDS[action]}${where}`;
}

/** The template a revision had: its own record's, or failing that the previous template of the record that left it. */
export function templateOfRevision(records: RolloutRecord[], revision: number): PodTemplate | undefined {
  const own = records.find((r) => r.spec.revision === revision);
  if (own) return own.spec.toTemplate;
  return records.find((r) => r.spec.fromRevision === revision && r.spec.fromTemplate)?.spec.fromTemplate;
}

/**
 * The DaemonSet to write for an undo, as kubectl's rollback: the template of the chosen revision
 * (by default the newest earlier one with another template), its change cause, and the
 * DaemonSet's resourceVersion so that a concurrent change makes the write fail rather than be
 * lost. No body when the template already is that revision's.
 */
export function wavesUndoTarget(ds: WavesDaemonSet, records: RolloutRecord[], toRevision: number): { body?: WavesDaemonSet; revision: number } {
  const name = ds.metadata.name;
  const word = ds.kind === 'Deployment' ? 'deployment' : 'daemonset';
  if (records.length === 0) throw new CliError(`no rollout history found for ${word} "${name}"`);
  const current = Math.max(...records.map((r) => r.spec.revision));
  let revision = toRevision;
  if (revision === 0) {
    const earlier = records.filter((r) => r.spec.revision < current).sort((a, b) => b.spec.revision - a.spec.revision);
    const previous = earlier.find((r) => !sameTemplate(r.spec.toTemplate, ds.spec.template)) ?? earlier[0];
    const fromNewest = records.find((r) => r.spec.revision === current)?.spec.fromRevision ?? 0;
    revision = previous?.spec.revision ?? fromNewest;
    if (!revision) throw new CliError(`no previous revision of ${word} "${name}" to roll back to`);
  }
  const template = templateOfRevision(records, revision);
  if (!template) throw new CliError(`unable to find the specified revision ${revision} in the history of ${word}/${name}`);
  if (sameTemplate(template, ds.spec.template)) return { revision };
  const { [CHANGE_CAUSE_ANNOTATION]: _cause, [STARTED_BY_ANNOTATION]: _by, ...annotations } = ds.metadata.annotations ?? {};
  const cause = records.find((r) => r.spec.revision === revision)?.spec.changeCause;
  if (cause !== undefined) annotations[CHANGE_CAUSE_ANNOTATION] = cause;
  // The hub writes it into the new record as who started it (the next apply drops it again).
  annotations[STARTED_BY_ANNOTATION] = UNDO_PRINCIPAL;
  const m = ds.metadata;
  const metadata: WavesDaemonSet['metadata'] = { name: m.name, uid: m.uid, resourceVersion: m.resourceVersion, ...(m.namespace ? { namespace: m.namespace } : {}), ...(m.labels ? { labels: m.labels } : {}), ...(Object.keys(annotations).length ? { annotations } : {}) };
  return { body: { apiVersion: ds.apiVersion ?? 'flotilla/v1', kind: ds.kind ?? 'DaemonSet', metadata, spec: { ...ds.spec, template } }, revision };
}

/** `rollout undo daemonset/NAME [--to-revision N]`: writes the old template back; the hub rolls it out in waves as a new revision. */
export async function wavesUndo(t: WavesTarget, ds: WavesDaemonSet, o: WavesOptions, out: Out): Promise<void> {
  const toRevision = Number(o.toRevision ?? '0');
  if (!Number.isInteger(toRevision) || toRevision < 0) throw CliError.usage(`--to-revision must be a revision number, not '${o.toRevision}'`);
  const target = wavesUndoTarget(ds, await listRecords(t, ds), toRevision);
  if (!target.body) {
    out(`${wordOf(t)}/${t.name} skipped rollback (current template already matches revision ${target.revision})`);
    return;
  }
  await t.client.request('PUT', objectPath(pluralOf(t), true, t.namespace, t.name), target.body);
  out(`${wordOf(t)}/${t.name} rolled back to the template of revision ${target.revision} (a new rollout starts; follow it with: flotilla rollout status ${wordOf(t)}/${t.name})`);
}

/** `rollout history daemonset/NAME [--revision N]`: the table of records, or one record in full. */
export async function wavesHistory(t: WavesTarget, ds: WavesDaemonSet, o: WavesOptions, out: Out): Promise<void> {
  const records = await listRecords(t, ds);
  if (o.revision === undefined) {
    out(`${wordOf(t)}/${t.name}`);
    out(records.length === 0 ? 'No rollout history found.' : wavesHistoryTable(records));
    return;
  }
  const record = records.find((r) => String(r.spec.revision) === o.revision);
  if (!record) throw new CliError(`unable to find the specified revision ${o.revision} in the history of ${wordOf(t)}/${t.name}`);
  out(`${wordOf(t)}/${t.name} with revision #${o.revision} (${record.metadata.name})`);
  out(recordLines(record).join('\n'));
}

