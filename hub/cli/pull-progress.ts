/**
 * Image pull progress as devices tell it: Pulling events whose message is
 * `Pulling image "REF": 1/2 layers, 1.5 of 3.0 MB downloaded`, at most one every few seconds
 * per pull. Each is its own Event; `describe` shows the latest of each pull, not every step.
 */

interface PullEvent {
  reason: string;
  message: string;
  lastTimestamp?: string;
}

const PROGRESS = /^Pulling image "(.+)": (.+)$/;

/** The image and the progress a Pulling progress event tells; undefined for any other event. */
export function pullProgress(e: PullEvent): { image: string; progress: string } | undefined {
  if (e.reason !== 'Pulling') return undefined;
  const m = PROGRESS.exec(e.message);
  return m ? { image: m[1]!, progress: m[2]! } : undefined;
}

/** The events, oldest first, with only the latest progress event of each image's pull. */
export function latestPullProgress<E extends PullEvent>(sorted: readonly E[]): E[] {
  const last = new Map<string, E>();
  for (const e of sorted) {
    const p = pullProgress(e);
    if (p) last.set(p.image, e);
  }
  return sorted.filter((e) => {
    const p = pullProgress(e);
    return !p || last.get(p.image) === e;
  });
}

/** The progress of a pull of `image` still under way: its latest progress, unless the pull ended (Pulled, Failed) or began again after it. */
export function pullUnderWay(sorted: readonly PullEvent[], image: string): string | undefined {
  let progress: string | undefined;
  for (const e of sorted) {
    const p = pullProgress(e);
    if (p) {
      if (p.image === image) progress = p.progress;
    } else if ((e.reason === 'Pulled' || e.reason === 'Failed' || e.reason === 'Pulling') && e.message.includes(`image "${image}"`)) progress = undefined;
  }
  return progress;
}

/** Moves the cursor to the line before and clears it: that line is written again. */
export const REWRITE_PREVIOUS_LINE = '\x1b[1A\x1b[2K';

/**
 * For `get events -w` on a terminal: a pull's progress line takes the place of the line just
 * before it when that one told the same pull's progress, so a pull shows as one line that
 * grows. Other output (and any output that is not a terminal) stays one line per event.
 */
export class ProgressLines {
  private last: string | undefined;

  /** What to write before the line of the Event `e` (as the API returns it): REWRITE_PREVIOUS_LINE or nothing. */
  prefix(e: Record<string, unknown>): string {
    const p = typeof e.reason === 'string' && typeof e.message === 'string' ? pullProgress({ reason: e.reason, message: e.message }) : undefined;
    const o = e.involvedObject as { kind?: string; name?: string; uid?: string } | undefined;
    const key = p ? `${o?.kind}/${o?.name}/${o?.uid ?? ''}/${p.image}` : undefined;
    const rewrite = key !== undefined && key === this.last;
    this.last = key;
    return rewrite ? REWRITE_PREVIOUS_LINE : '';
  }
}
