/**
 * Store failures, with the reasons and messages of the Kubernetes API server
 * (k8s.io/apimachinery/pkg/api/errors), so that the API layer can pass them through unchanged:
 * NotFound → 404, AlreadyExists → 409, Conflict → 409, Gone → 410, Invalid → 422.
 */

export type StoreErrorCode = 'NotFound' | 'AlreadyExists' | 'Conflict' | 'Gone' | 'Invalid';

export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly code: StoreErrorCode;

  constructor(code: StoreErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}

/**
 * The resource name Kubernetes' messages use (`pods "web" not found`): the lower-cased kind,
 * pluralised the way apimachinery's UnsafeGuessKindToResource does it.
 */
export function resourceName(kind: string): string {
  const lower = kind.toLowerCase();
  if (lower.endsWith('s')) return `${lower}es`;
  if (lower.endsWith('y')) return `${lower.slice(0, -1)}ies`;
  return `${lower}s`;
}

export function notFound(kind: string, name: string): StoreError {
  return new StoreError('NotFound', `${resourceName(kind)} "${name}" not found`);
}

export function alreadyExists(kind: string, name: string): StoreError {
  return new StoreError('AlreadyExists', `${resourceName(kind)} "${name}" already exists`);
}

const MODIFIED = 'the object has been modified; please apply your changes to the latest version and try again';

/**
 * Optimistic concurrency failure: the caller's resourceVersion is not the stored one (the default
 * reason), or another precondition such as the uid failed.
 */
export function conflict(kind: string, name: string, reason: string = MODIFIED): StoreError {
  return new StoreError('Conflict', `Operation cannot be fulfilled on ${resourceName(kind)} "${name}": ${reason}`);
}

/** Kubernetes' watch cache message: the requested version and the oldest one a watch may still start from. */
export function tooOldResourceVersion(requested: number, oldestAvailable: number): StoreError {
  return new StoreError('Gone', `too old resource version: ${requested} (${oldestAvailable})`);
}

export function invalid(message: string): StoreError {
  return new StoreError('Invalid', message);
}

/**
 * Whether a write failed for lack of disk space: SQLite's SQLITE_FULL (its log or database file
 * could not grow), or ENOSPC from a file the hub writes itself.
 */
export function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === 'SQLITE_FULL' || code === 'ENOSPC';
}
