import { describe, expect, it } from 'vitest';
import { PullQueue } from '../../agent/reconcile/pull-queue.js';
import type { Step } from '../../agent/reconcile/plan.js';
import { container, desiredPod } from './builders.js';

// Pulls in the background, one at a time: what the queue runs, in which order, and what it tells.

type PullStep = Extract<Step, { action: 'pull' }>;

const pod = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'a:1' })] });
const pullOf = (image: string): PullStep => ({ action: 'pull', image, pod });

/** A queue over pulls that end when the test says so. */
function queue() {
  const log: string[] = [];
  const pending = new Map<string, { resolve: () => void; reject: (err: Error) => void }>();
  const q = new PullQueue({
    pull: (step) => {
      log.push(`start ${step.image}`);
      return new Promise<void>((resolve, reject) => pending.set(step.image, { resolve, reject }));
    },
    pulled: (step) => log.push(`pulled ${step.image}`),
    failed: (step, message) => log.push(`failed ${step.image}: ${message}`),
    ended: () => log.push('ended'),
  });
  /** Lets queued work run (promise callbacks only; no timers). */
  const settle = async () => {
    for (let i = 0; i < 10; i++) await Promise.resolve();
  };
  return { q, log, pending, settle };
}

describe('PullQueue', () => {
  it('pulls one image at a time, in order, and says when each ends', async () => {
    const { q, log, pending, settle } = queue();
    q.add(pullOf('a:1'));
    q.add(pullOf('b:1'));
    await settle();
    expect(log).toEqual(['start a:1']);
    expect([...q.pulling]).toEqual(['a:1', 'b:1']);
    pending.get('a:1')!.resolve();
    await settle();
    expect(log).toEqual(['start a:1', 'pulled a:1', 'ended', 'start b:1']);
    pending.get('b:1')!.reject(new Error('manifest unknown'));
    await settle();
    expect(log.slice(4)).toEqual(['failed b:1: manifest unknown', 'ended']);
    expect(q.pulling.size).toBe(0);
  });

  it('queues an image once while it is queued or being pulled', async () => {
    const { q, log, pending, settle } = queue();
    q.add(pullOf('a:1'));
    q.add(pullOf('a:1'));
    await settle();
    pending.get('a:1')!.resolve();
    await settle();
    expect(log.filter((l) => l.startsWith('start'))).toEqual(['start a:1']);
    // Once it ended, a new pull of it may be queued (pullPolicy Always on a later change).
    q.add(pullOf('a:1'));
    await settle();
    expect(log.filter((l) => l.startsWith('start'))).toEqual(['start a:1', 'start a:1']);
  });

  it('hands each pulled image to the next reconcile once', async () => {
    const { q, pending, settle } = queue();
    q.add(pullOf('a:1'));
    await settle();
    expect([...q.takePulled()]).toEqual([]);
    pending.get('a:1')!.resolve();
    await settle();
    expect([...q.takePulled()]).toEqual(['a:1']);
    expect([...q.takePulled()]).toEqual([]);
  });

  it('starts no queued pull once stopped, and tells no end', async () => {
    const { q, log, pending, settle } = queue();
    q.add(pullOf('a:1'));
    q.add(pullOf('b:1'));
    await settle();
    q.stop();
    pending.get('a:1')!.resolve();
    await settle();
    expect(log).toEqual(['start a:1', 'pulled a:1']);
  });
});
