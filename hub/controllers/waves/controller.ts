import type { DaemonSetSpec } from '../../../shared/resources/daemonset.js';
import { ROLLOUT_KIND, type RolloutStatus } from '../../../shared/resources/rollout.js';
import { UPDATE_LOCK_OVERRIDE_ANNOTATION } from '../../../shared/protocol/update-lock.js';
import { WAVES } from '../../../shared/resources/waves.js';
import { planWaves } from '../../../shared/rollout/plan.js';
import type { StoredObject, WatchEvent } from '../../store/types.js';
import type { WatchOptions } from '../../store/watch.js';
import { Controller, type ControllerContext } from '../controller.js';
import type { RevisionChooser } from '../daemonset.js';
import { templateHash } from '../names.js';
import { objectKey, splitKey, type ReconcileResult } from '../queue.js';
import { advance, resumeRollout, type RolloutRuntime } from './progress.js';
import { endedStatus, fromOf, isActive, isFinished, newRolloutRecord, ROLLOUT_DAEMONSET_LABEL, specOf, statusOf, wavesStrategyOf } from './records.js';
import { targetsOf, waveIndexOf } from './targets.js';
import { nodeRevisions } from './revisions.js';
import { WavesView, type WavePod } from './view.js';

export { UPDATE_ORDER_ANNOTATION } from './revisions.js';

export interface WavesControllerOptions {
  /** The clock (ms); tests inject one. */
  now?: () => number;
  /** Told when the revision some node of a DaemonSet should run may have changed (the DaemonSet controller's queue). */
  onRevisionsChanged?: (dsKey: string) => void;
  /** A DaemonSet's rollout is worked at most once per this many ms (default 250): a storm of pod reports costs a few passes a second. */
  minIntervalMs?: number;
  /** Look again at least this often while a rollout is active (default 10 s). */
  resyncMs?: number;
}

export type RolloutAction = 'pause' | 'resume' | 'abort';
export type ActionResult = { ok: true; record: StoredObject } | { ok: false; status: 404 | 409; message: string };

/**
 * Waves rollouts of DaemonSets (docs/ARCHITECTURE.md, 'Waves rollouts'): keeps one
 * Rollout record per revision of a DaemonSet with `updateStrategy.type: Waves`, moves its devices
 * wave by wave behind health gates, and tells the DaemonSet controller which revision each node
 * runs (`revisionsFor`). All state that matters is in the records and the pods, so a restarted
 * hub goes on where the last one stopped.
 */
export class WavesController extends Controller {
  private readonly view = new WavesView();
  private loaded = false;
  private started = false;
  private readonly latest = new Map<string, StoredObject>();
  private readonly runtimes = new Map<string, RolloutRuntime>();
  private readonly lastRun = new Map<string, number>();
  private unwatchOwn: (() => void)[] = [];
  private readonly now: () => number;
  private readonly opts: WavesControllerOptions;

  constructor(ctx: ControllerContext, opts: WavesControllerOptions = {}) {
    super('waves', ctx);
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  protected triggers(): [WatchOptions, (e: WatchEvent) => string | undefined][] {
    return [[{ kind: 'DaemonSet' }, (e) => objectKey(e.object.metadata.namespace, e.object.metadata.name)]];
  }

  protected initialKeys(): Iterable<string> {
    return this.keysOfKind('DaemonSet');
  }

  override start(): void {
    this.started = true;
    this.load();
    super.start();
  }

  override stop(): void {
    this.started = false;
    for (const u of this.unwatchOwn) u();
    this.unwatchOwn = [];
    this.view.stop();
    super.stop();
  }

  /** The records and the view, once; then kept by watches. */
  private load(): void {
    if (this.loaded) return;
    this.loaded = true;
    const records = this.store.list(ROLLOUT_KIND);
    for (const r of records.items) this.remember(r);
    this.unwatchOwn.push(
      this.store.watch({ kind: ROLLOUT_KIND, fromResourceVersion: records.resourceVersion }, (e) => {
        if (e.type === 'DELETED') {
          if (specOf(e.object).target.kind !== 'DaemonSet') return;
          const key = this.dsKeyOf(e.object);
          if (this.latest.get(key)?.metadata.name === e.object.metadata.name) this.latest.delete(key);
          this.poke(key);
        } else this.remember(e.object);
      }),
    );
    this.view.start(
      this.store,
      (key) => this.poke(key),
      () => {
        for (const [key, r] of this.latest) if (!isFinished(statusOf(r).phase)) this.poke(key);
      },
    );
  }

  private poke(key: string): void {
    if (this.started) this.queue.add(key);
  }

  private dsKeyOf(record: StoredObject): string {
    return objectKey(record.metadata.namespace ?? 'default', specOf(record).target.name);
  }

  private remember(record: StoredObject): void {
    // Records of Deployments are the Deployment rollout controller's (deployment.ts).
    if (specOf(record).target.kind !== 'DaemonSet') return;
    const key = this.dsKeyOf(record);
    const cur = this.latest.get(key);
    if (!cur || specOf(cur).revision <= specOf(record).revision) this.latest.set(key, record);
  }

  /** The newest record of a DaemonSet (of that incarnation), if any. */
  latestRecord(namespace: string, name: string, uid?: string): StoredObject | undefined {
    this.load();
    const r = this.latest.get(objectKey(namespace, name));
    return r && (uid === undefined || specOf(r).target.uid === uid) ? r : undefined;
  }

  /** The nodes a DaemonSet's template targets now, for planning (the preview uses it too). */
  targets(template: DaemonSetSpec['template']): ReturnType<typeof targetsOf> {
    this.load();
    return targetsOf(template, this.view.nodes);
  }

  private runtimeOf(key: string, record: StoredObject): RolloutRuntime {
    let rt = this.runtimes.get(key);
    if (!rt || rt.record !== record.metadata.name) {
      rt = { record: record.metadata.name, planned: waveIndexOf(specOf(record).waves), joined: new Map(), pending: new Map(), lastLockedAt: new Map() };
      this.runtimes.set(key, rt);
    }
    return rt;
  }

  private note(ds: StoredObject, record: StoredObject | undefined, type: 'Normal' | 'Warning', reason: string, message: string): void {
    this.events.record(ds, type, reason, message, undefined, new Date(this.now()));
    if (record) this.events.record(record, type, reason, message, undefined, new Date(this.now()));
  }

  reconcile(key: string): ReconcileResult | void {
    this.load();
    const minInterval = this.opts.minIntervalMs ?? 250;
    const realNow = Date.now();
    const last = this.lastRun.get(key);
    if (minInterval > 0 && last !== undefined && realNow - last < minInterval) return { requeueAfterMs: minInterval - (realNow - last) };
    this.lastRun.set(key, realNow);

    const { namespace, name } = splitKey(key);
    const ds = this.store.get('DaemonSet', namespace, name);
    if (!ds) return this.forget(key, namespace, name);
    const spec = ds.spec as DaemonSetSpec;
    const strategy = wavesStrategyOf(spec);
    let record = this.latestRecord(namespace, name, ds.metadata.uid);
    if (!strategy) {
      this.view.untrack(key);
      if (record && isActive(statusOf(record).phase)) this.finish(ds, record, 'Superseded', 'updateStrategy is no longer Waves', 'RolloutSuperseded');
      return;
    }
    this.view.track(key, ds);
    const now = this.now();
    const hash = templateHash(spec.template);
    if (!record || specOf(record).toHash !== hash) {
      record = this.startRollout(ds, record, hash, now);
      this.opts.onRevisionsChanged?.(key);
    }
    const phase = statusOf(record).phase;
    if (isFinished(phase)) {
      this.runtimes.delete(key);
      return;
    }
    const runtime = this.runtimeOf(key, record);
    let result: ReturnType<typeof advance>;
    let changed = false;
    // A wave that starts (its predecessor passed, or a pause ended) releases its first devices in the same pass.
    for (let pass = 0; ; pass++) {
      const before = statusOf(record);
      const current = record;
      result = advance({
        dsKey: key,
        record: current,
        view: this.view,
        runtime,
        now,
        note: (type, reason, message) => this.note(ds, current, type, reason, message),
        overrideLock: (pod, lockTime) => this.overrideLock(pod, lockTime),
      });
      record = this.writeStatus(current, result.status);
      changed ||= result.revisionsChanged || result.status.phase !== before.phase;
      const moved = result.status.wave !== before.wave || (result.status.phase === 'Progressing' && before.phase === 'Paused');
      if (!moved || pass >= specOf(record).waves.length) break;
    }
    if (changed) this.opts.onRevisionsChanged?.(key);
    if (isFinished(result.status.phase)) return;
    const resync = this.opts.resyncMs ?? 10_000;
    const wait = result.nextAt !== undefined ? Math.min(resync, Math.max(0, result.nextAt - now)) : resync;
    return { requeueAfterMs: wait };
  }

  private startRollout(ds: StoredObject, previous: StoredObject | undefined, hash: string, now: number): StoredObject {
    const spec = ds.spec as DaemonSetSpec;
    const strategy = wavesStrategyOf(spec)!;
    const revision = previous ? specOf(previous).revision + 1 : 1;
    if (previous && (isActive(statusOf(previous).phase) || statusOf(previous).phase === 'RollingBack')) {
      this.finish(ds, previous, 'Superseded', `superseded by revision ${revision}`, 'RolloutSuperseded');
    }
    const from = previous ? fromOf(previous) : undefined;
    const waves = from ? planWaves(strategy.waves, this.targets(spec.template)) : [];
    const record = this.store.create(newRolloutRecord({ ds, revision, ...(from ? { from } : {}), to: { hash, template: spec.template }, strategy, waves, now }));
    this.remember(record);
    if (!from) {
      this.note(ds, record, 'Normal', 'RolloutSucceeded', `revision 1 goes to every target at once (nothing to roll from)`);
    } else {
      const sizes = waves.map((w) => `${w.name} (${w.nodes.length})`).join(', ');
      this.note(ds, record, 'Normal', 'RolloutStarted', `rollout of revision ${revision} from revision ${from.revision} started by ${specOf(record).startedBy}: waves ${sizes}`);
      if (waves[0]) this.note(ds, record, 'Normal', 'WaveStarted', `wave ${waves[0].name} started: ${waves[0].nodes.length} device(s)`);
    }
    return record;
  }

  /** Ends a rollout that has not finished: Superseded or Aborted. */
  private finish(ds: StoredObject, record: StoredObject, phase: 'Superseded' | 'Aborted', message: string, reason: string): StoredObject {
    const status = endedStatus(record, phase, message, this.now());
    const written = this.writeStatus(record, status);
    this.note(ds, record, phase === 'Aborted' ? 'Warning' : 'Normal', reason, `revision ${specOf(record).revision}: ${message}`);
    return written;
  }

  private writeStatus(record: StoredObject, status: RolloutStatus): StoredObject {
    if (JSON.stringify(record.status) === JSON.stringify(status)) return record;
    const written = this.store.updateStatus(ROLLOUT_KIND, record.metadata.namespace, record.metadata.name, status);
    this.remember(written);
    return written;
  }

  private overrideLock(pod: WavePod, lockTime: string): void {
    this.store.mutate('Pod', pod.namespace, pod.name, (cur) => ({ ...cur, metadata: { ...cur.metadata, annotations: { ...(cur.metadata.annotations ?? {}), [UPDATE_LOCK_OVERRIDE_ANNOTATION]: lockTime } } }));
  }

  /** A deleted DaemonSet takes its records with it (they are owned by it). */
  private forget(key: string, namespace: string, name: string): void {
    this.view.untrack(key);
    this.latest.delete(key);
    this.runtimes.delete(key);
    this.lastRun.delete(key);
    const records = this.store.list(ROLLOUT_KIND, { namespace, filter: (r) => r.metadata.labels?.[ROLLOUT_DAEMONSET_LABEL] === name });
    this.store.transaction(() => {
      for (const r of records.items) this.store.delete(ROLLOUT_KIND, namespace, r.metadata.name);
    });
  }

  /**
   * Which revision each node of a DaemonSet should run, for the DaemonSet controller: undefined
   * for a DaemonSet that is not of type Waves (its template everywhere, as before); otherwise a
   * function of the node and the revision hash of its pod (undefined when it has none) that
   * answers a revision to write, or undefined to leave the node as it is.
   */
  readonly revisionsFor: RevisionChooser = (ds) => {
    const spec = ds.spec as DaemonSetSpec;
    if (spec.updateStrategy?.type !== WAVES) return undefined;
    const key = objectKey(ds.metadata.namespace, ds.metadata.name);
    const record = this.latestRecord(ds.metadata.namespace ?? 'default', ds.metadata.name, ds.metadata.uid);
    // No record of this template yet: nothing moves until the rollout has started.
    if (!record || specOf(record).toHash !== templateHash(spec.template)) return () => undefined;
    return nodeRevisions(record, () => this.runtimeOf(key, record), this.now());
  };

  /** pause, resume or abort the DaemonSet's rollout (the API's `rollout` action). */
  act(namespace: string, name: string, action: RolloutAction): ActionResult {
    const ds = this.store.get('DaemonSet', namespace, name);
    if (!ds) return { ok: false, status: 404, message: `daemonsets "${name}" not found` };
    const record = this.latestRecord(namespace, name, ds.metadata.uid);
    if (!record) return { ok: false, status: 409, message: `daemonset ${name} has no rollout${(ds.spec as DaemonSetSpec).updateStrategy?.type === WAVES ? ' yet' : ' (its updateStrategy is not Waves)'}` };
    const status = structuredClone(statusOf(record));
    const revision = specOf(record).revision;
    const now = this.now();
    const key = objectKey(namespace, name);
    if (action === 'abort') {
      if (!isActive(status.phase)) return { ok: false, status: 409, message: `rollout of revision ${revision} is ${status.phase}: nothing to abort` };
      const done = this.finish(ds, record, 'Aborted', 'aborted: nothing more is released', 'RolloutAborted');
      this.opts.onRevisionsChanged?.(key);
      return { ok: true, record: done };
    }
    if (action === 'pause') {
      if (status.phase === 'Paused' && status.pauseUntil === undefined) return { ok: true, record };
      if (!isActive(status.phase)) return { ok: false, status: 409, message: `rollout of revision ${revision} is ${status.phase}: nothing to pause` };
      const ws = status.waves[status.wave];
      if (ws?.phase === 'Progressing') ws.phase = 'Paused';
      status.phase = 'Paused';
      delete status.pauseUntil;
      status.message = 'paused by rollout pause; resume to go on';
      const written = this.writeStatus(record, status);
      this.note(ds, written, 'Normal', 'RolloutPaused', `revision ${revision}: ${status.message}`);
      return { ok: true, record: written };
    }
    if (status.phase !== 'Paused') return { ok: false, status: 409, message: `rollout of revision ${revision} is ${status.phase}, not Paused: nothing to resume` };
    const runtime = this.runtimeOf(key, record);
    const startedWave = status.wave;
    const what = resumeRollout(status, now);
    const written = this.writeStatus(record, status);
    this.note(ds, written, 'Normal', 'RolloutResumed', `revision ${revision}: ${what}`);
    if (status.wave !== startedWave) this.note(ds, written, 'Normal', 'WaveStarted', `wave ${status.waves[status.wave]!.name} started: ${specOf(record).waves[status.wave]!.nodes.length + [...runtime.joined.values()].filter((w) => w === status.wave).length} device(s)`);
    this.lastRun.delete(key);
    this.poke(key);
    return { ok: true, record: written };
  }
}
