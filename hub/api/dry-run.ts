import { isPlainObject } from '../../shared/resources/fields.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoredObject } from '../store/types.js';
import { HubError } from './errors.js';

/**
 * Kubernetes' `dryRun` values: `All` is the only one it knows. `true` is Flotilla's older
 * spelling for /api/v1/apply (what earlier CLIs send); `false` asks for a real write.
 */
const DRY = new Set(['All', 'true']);
const WET = new Set(['false']);

/**
 * The `dryRun` query parameter of a write. An unknown value is refused rather than taken for a
 * real write: a client that meant "try it" must never see its change made.
 */
export function dryRunOf(query: URLSearchParams): boolean {
  const values = query.getAll('dryRun');
  return values.length > 0 && dryRunValues(values, 'dryRun');
}

/**
 * `dryRun` of a DeleteOptions body, or of an Eviction's `deleteOptions`: client-go sends a
 * delete's options in its body (`kubectl delete --dry-run=server` does), not in the query.
 */
export function dryRunOfOptions(options: unknown, path: string): boolean {
  if (!isPlainObject(options) || options.dryRun === undefined) return false;
  const values = options.dryRun;
  if (!Array.isArray(values) || !values.every((v) => typeof v === 'string')) throw new HubError('HUB_ERR_BAD_REQUEST', `${path}: must be a list of strings, e.g. ["All"]`);
  return values.length > 0 && dryRunValues(values as string[], path);
}

/** The `dryRun` of a DELETE's body: DeleteOptions as JSON, or nothing. */
export function dryRunOfDeleteOptions(body: Buffer): boolean {
  const text = body.toString('utf8').trim();
  if (text === '') return false;
  let options: unknown;
  try {
    options = JSON.parse(text);
  } catch (err) {
    throw new HubError('HUB_ERR_BAD_REQUEST', `body is not valid JSON (DeleteOptions expected): ${(err as Error).message}`);
  }
  return dryRunOfOptions(options, 'dryRun');
}

function dryRunValues(values: string[], path: string): boolean {
  for (const v of values) {
    if (!DRY.has(v) && !WET.has(v)) throw new HubError('HUB_ERR_BAD_REQUEST', `${path}: unsupported value ${JSON.stringify(v)} (supported: All)`);
  }
  const dry = values.some((v) => DRY.has(v));
  if (dry && values.some((v) => WET.has(v))) throw new HubError('HUB_ERR_BAD_REQUEST', `${path}: both a dry run and a real write asked for (${values.join(', ')})`);
  return dry;
}

/** What a dry run's transaction throws to roll itself back. */
const ROLL_BACK = Symbol('dry run');

/**
 * Runs `write` in one store transaction; with `dryRun`, rolls it back once it has run. Every
 * check of a real write is made (the namespace, a name taken, a stale resourceVersion, a
 * Deployment's budget) and the answer is what it would have stored, but nothing is committed,
 * no watcher hears of it and no resourceVersion is used up, as Kubernetes' dryRun=All.
 */
export function writeOrDryRun<T>(store: ObjectStore, dryRun: boolean | undefined, write: () => T): T {
  if (!dryRun) return store.transaction(write);
  let result: { value: T } | undefined;
  try {
    store.transaction(() => {
      result = { value: write() };
      throw ROLL_BACK;
    });
  } catch (err) {
    if (err !== ROLL_BACK) throw err;
  }
  return result!.value;
}

/**
 * An object a dry run answers with. Nothing was stored, so it carries no new resourceVersion:
 * the current one for an object that exists, none for one that would be created (as
 * Kubernetes' dry-run storage answers).
 */
export function asDryRunAnswer(object: StoredObject, currentResourceVersion: string | undefined): StoredObject {
  const metadata = { ...object.metadata };
  if (currentResourceVersion === undefined) delete (metadata as Partial<typeof metadata>).resourceVersion;
  else metadata.resourceVersion = currentResourceVersion;
  return { ...object, metadata };
}
