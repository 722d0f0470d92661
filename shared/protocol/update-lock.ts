// The device veto of an update (balena's update lock): a container writes a file on a folder the
// agent provides to every app container, and while it is there the agent does not replace the
// pod's running containers for a spec change. Both sides read these names: the agent writes the
// condition, the hub's rollout reads it and overrides a lock that is too old.

/** Where every app container of a pod sees its pod's lock folder (read-write). */
export const UPDATE_LOCK_MOUNT_PATH = '/run/flotilla';

/** The file whose presence in that folder vetoes the update. */
export const UPDATE_LOCK_FILE = 'update.lock';

/** The pod condition the agent reports while a lock defers an update of the pod. */
export const UPDATE_LOCKED_CONDITION = 'UpdateLocked';

/** The reason of that condition. */
export const UPDATE_LOCK_HELD_REASON = 'UpdateLockHeld';

/** The message of that condition. */
export const UPDATE_LOCK_MESSAGE = `update deferred by ${UPDATE_LOCK_MOUNT_PATH}/${UPDATE_LOCK_FILE}`;

/**
 * The pod annotation that overrides a lock: its value is an ISO 8601 time, and a lock whose file
 * was last written at or before it no longer vetoes; a lock written after it vetoes again. The
 * hub sets it to the condition's lastTransitionTime (the lock file's mtime).
 */
export const UPDATE_LOCK_OVERRIDE_ANNOTATION = 'flotilla.io/override-update-lock';

/** The event recorded when an update proceeds despite a lock, by the override. */
export const UPDATE_LOCK_OVERRIDDEN_REASON = 'UpdateLockOverridden';

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/** The instant (ms) of an override annotation's value, or undefined when it is not an ISO 8601 time with a zone. */
export function parseOverrideTime(value: string): number | undefined {
  if (!ISO_TIME.test(value)) return undefined;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : at;
}

/**
 * Whether an override at `overrideAt` lifts a lock written at `lockedAt` (both ms). A file's
 * mtime is finer than a millisecond; it is compared as the millisecond its ISO form shows, so
 * an override set to the reported lastTransitionTime always covers that lock.
 */
export function overrideCovers(lockedAt: number, overrideAt: number): boolean {
  return Math.trunc(lockedAt) <= overrideAt;
}
