import { describe as group, expect, it } from 'vitest';
import { describe } from '../../hub/cli/describe.js';
import { ProgressLines, REWRITE_PREVIOUS_LINE, latestPullProgress, pullProgress, pullUnderWay } from '../../hub/cli/pull-progress.js';

// `flotilla describe pod` shows a pull under way in the container's section, and of a pull's
// progress events only the latest; the rest of the events stay as they are.

const IMAGE = 'registry.example:5000/team/app:2';
const UID = 'uid-web';

function event(reason: string, message: string, second: number, type = 'Normal') {
  return { type, reason, message, count: 1, firstTimestamp: at(second), lastTimestamp: at(second), source: { component: 'flotilla-agent', host: 'edge' }, involvedObject: { kind: 'Pod', name: 'web', uid: UID } };
}

function at(second: number): string {
  return new Date(Date.UTC(2025, 0, 1, 12, 0, second)).toISOString();
}

const pod = (running: boolean) => ({
  kind: 'Pod',
  metadata: { name: 'web', namespace: 'default', uid: UID },
  spec: { nodeName: 'edge', containers: [{ name: 'app', image: IMAGE }] },
  status: running
    ? { phase: 'Running', containerStatuses: [{ name: 'app', image: IMAGE, ready: true, restartCount: 0, state: { running: { startedAt: at(30) } } }] }
    : { phase: 'Pending', containerStatuses: [{ name: 'app', image: IMAGE, ready: false, restartCount: 0, state: { waiting: { reason: 'ContainerCreating' } } }] },
});

const pulling = [
  event('Scheduled', 'Successfully assigned default/web to edge', 0),
  event('Pulling', `Pulling image "${IMAGE}"`, 1),
  event('Pulling', `Pulling image "${IMAGE}": 0/2 layers, 0.5 of 3.0 MB downloaded`, 3),
  event('Pulling', `Pulling image "${IMAGE}": 1/2 layers, 1.5 of 3.0 MB downloaded`, 8),
];

group('pull progress in describe pod', () => {
  it('shows the latest progress of a pull under way beside the container, and only that step among the events', () => {
    const text = describe(pod(false), pulling);
    expect(text).toMatch(/^ {4}Pulling: +1\/2 layers, 1\.5 of 3\.0 MB downloaded$/m);
    expect(text).toContain(`Pulling image "${IMAGE}": 1/2 layers, 1.5 of 3.0 MB downloaded`);
    expect(text).not.toContain('0.5 of 3.0 MB');
    expect(text).toContain(`Pulling image "${IMAGE}"\n`.trimEnd());
    expect(text).toContain('Successfully assigned default/web to edge');
  });

  it('shows no pull under way once the image is pulled, or the pull failed', () => {
    const pulled = describe(pod(true), [...pulling, event('Pulled', `Successfully pulled image "${IMAGE}"`, 20)]);
    expect(pulled).not.toMatch(/^ {4}Pulling:/m);
    expect(pulled).toContain('1.5 of 3.0 MB');
    const failed = [...pulling, event('Failed', `Failed to pull image "${IMAGE}": unexpected EOF`, 20, 'Warning')];
    expect(pullUnderWay(failed, IMAGE)).toBeUndefined();
    expect(describe(pod(false), failed)).not.toMatch(/^ {4}Pulling:/m);
  });

  it('keeps one progress event per image, and tells progress events from the start of a pull', () => {
    const other = event('Pulling', 'Pulling image "other:1": 0/1 layers, 0.1 of 9.0 MB downloaded', 4);
    const sorted = [...pulling.slice(0, 3), other, pulling[3]!];
    expect(latestPullProgress(sorted).map((e) => e.message)).toEqual([pulling[0]!.message, pulling[1]!.message, other.message, pulling[3]!.message]);
    expect(pullProgress(pulling[1]!)).toBeUndefined();
    expect(pullProgress(pulling[3]!)).toEqual({ image: IMAGE, progress: '1/2 layers, 1.5 of 3.0 MB downloaded' });
    expect(pullProgress(event('Failed', `Pulling image "${IMAGE}": x`, 1))).toBeUndefined();
  });
});

group('pull progress in get events -w on a terminal', () => {
  it('rewrites the line before only when it told the same pull\'s progress', () => {
    const lines = new ProgressLines();
    const [scheduled, start, first, second] = pulling;
    expect(lines.prefix(scheduled!)).toBe('');
    expect(lines.prefix(start!)).toBe('');
    expect(lines.prefix(first!)).toBe('');
    expect(lines.prefix(second!)).toBe(REWRITE_PREVIOUS_LINE);
    // Another pod's line in between: the next progress line is a line of its own.
    expect(lines.prefix({ ...event('Started', 'Started container app', 9), involvedObject: { kind: 'Pod', name: 'db', uid: 'uid-db' } })).toBe('');
    expect(lines.prefix(event('Pulling', `Pulling image "${IMAGE}": 2/2 layers, 3.0 of 3.0 MB downloaded`, 13))).toBe('');
    expect(lines.prefix({ ...event('Pulling', `Pulling image "${IMAGE}": 2/2 layers, 3.0 of 3.0 MB downloaded`, 13), involvedObject: { kind: 'Pod', name: 'web', uid: 'uid-2' } })).toBe('');
  });
});
