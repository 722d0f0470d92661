import type { Logger } from 'pino';
import { isPlainObject } from '../../shared/resources/fields.js';
import type { EventRecorder } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';
import { dryRunOfOptions, writeOrDryRun } from './dry-run.js';
import { HubError } from './errors.js';
import { checkDisruption } from './eviction-budget.js';

/** How a refusal for the budget's sake begins: the CLI's drain waits and tries again on it. */
export const BUDGET_REFUSAL = 'Cannot evict pod as it would violate';

/**
 * `POST /api/v1/namespaces/{ns}/pods/{name}/eviction`, Kubernetes' eviction subresource: the
 * pod is deleted (its owner's controller makes a replacement, which the scheduler places on a
 * node that is not cordoned) unless that would take its Deployment below the availability its
 * rolling-update budget promises (eviction-budget.ts); then the answer is 429 Too Many
 * Requests and the caller tries again later, as `kubectl drain` does. The check and the
 * deletion are one transaction, so concurrent evictions cannot overdraw the budget.
 */
export class EvictionRoutes {
  constructor(
    private readonly store: ObjectStore,
    private readonly events: EventRecorder,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Validates the optional body (an Eviction object, or nothing), then evicts. A dry run (the
   * query's `dryRun`, or the Eviction's `deleteOptions.dryRun`, as `kubectl drain
   * --dry-run=server` sends it) makes every check, the budget's too, and deletes nothing.
   */
  handle(namespace: string, name: string, body: Buffer, dryRun = false): { status: number; body: Record<string, unknown> } {
    const text = body.toString('utf8').trim();
    let dry = dryRun;
    if (text !== '') {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        throw new HubError('HUB_ERR_BAD_REQUEST', `body is not valid JSON: ${(err as Error).message}`);
      }
      if (!isPlainObject(value)) throw new HubError('HUB_ERR_BAD_REQUEST', 'body: must be an Eviction object');
      if (value.kind !== undefined && value.kind !== 'Eviction') throw new HubError('HUB_ERR_BAD_REQUEST', `kind: must be Eviction, not '${String(value.kind)}'`);
      const meta = value.metadata;
      if (isPlainObject(meta) && meta.name !== undefined && meta.name !== name) throw new HubError('HUB_ERR_BAD_REQUEST', `metadata.name: '${String(meta.name)}' does not match the pod in the path '${name}'`);
      dry = dryRunOfOptions(value.deleteOptions, 'deleteOptions.dryRun') || dry;
    }
    this.evict(namespace, name, dry);
    return { status: 201, body: { kind: 'Status', status: 'Success', code: 201, message: `pod "${name}" ${dry ? 'would be evicted (dry run: nothing was deleted)' : 'evicted'}` } };
  }

  evict(namespace: string, name: string, dryRun = false): void {
    const pod = writeOrDryRun(this.store, dryRun, () => {
      const current = this.store.get('Pod', namespace, name);
      if (!current) throw new HubError('HUB_ERR_NOT_FOUND', `pods "${name}" not found`);
      const check = checkDisruption(this.store, current, this.now());
      if (!check.allowed) {
        throw new HubError(
          'HUB_ERR_TOO_MANY_REQUESTS',
          `${BUDGET_REFUSAL} the disruption budget of ${check.workload}: ${check.available} available, at least ${check.minAvailable} must stay available (maxUnavailable ${check.maxUnavailable})`,
        );
      }
      this.store.delete('Pod', namespace, name);
      return current;
    });
    if (dryRun) return;
    this.events.normal(pod, 'Evicted', `Evicted from node ${(pod.spec as { nodeName?: string }).nodeName ?? '<none>'} by the eviction API`);
    this.log.info({ pod: `${namespace}/${name}` }, 'pod evicted');
  }
}
