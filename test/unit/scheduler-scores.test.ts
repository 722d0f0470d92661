import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { feasibleNodesToFind } from '../../hub/scheduler/scheduler.js';
import { SchedulerFixture, type PodOptions } from './scheduler-builders.js';

let f: SchedulerFixture;
beforeEach(() => {
  f = new SchedulerFixture();
});
afterEach(() => f.close());

const many = (prefix: string, n: number, o: Omit<PodOptions, 'name'> = {}): PodOptions[] => Array.from({ length: n }, (_, i) => ({ name: `${prefix}-${i}`, ...o }));
const names = (pods: PodOptions[]) => pods.map((p) => p.name);

describe('spread (the default)', () => {
  it('puts each pod on the node with the fewest pods', async () => {
    f.nodes({ name: 'a' }, { name: 'b' }, { name: 'c' }).pods({ name: 'old', nodeName: 'a' }).start();
    const pods = many('web', 5);
    await f.schedule(...pods);
    expect(f.countByNode(names(pods))).toEqual({ a: 1, b: 2, c: 2 });
  });

  it('prefers the least requested node', async () => {
    f.nodes({ name: 'busy', cpu: '4', memory: '4Gi' }, { name: 'idle', cpu: '4', memory: '4Gi' }).pods({ name: 'hog', nodeName: 'busy', cpu: '3' }, { name: 'tiny-1', nodeName: 'idle' }, { name: 'tiny-2', nodeName: 'idle' }).start();
    await f.schedule({ name: 'app', cpu: '100m' });
    // idle runs more pods, but busy has far less room.
    expect(f.nodeOf('app')).toBe('idle');
  });
});

describe('binpack', () => {
  it('fills the most used node first, while the pod fits there, then the next', async () => {
    f.nodes({ name: 'a', cpu: '1' }, { name: 'b', cpu: '1' }, { name: 'c', cpu: '1' }).pods({ name: 'seed', nodeName: 'b', cpu: '100m' }).start();
    const pods = many('small', 12, { cpu: '200m', strategy: 'binpack' });
    await f.schedule(...pods);
    // b has room for four more (900m), then a and c take the rest, one filled before the other.
    const counts = f.countByNode(names(pods));
    expect(counts.b).toBe(4);
    expect([counts.a, counts.c].sort()).toEqual([3, 5]);
  });

  it('packs pods without requests by pod count', async () => {
    f.nodes({ name: 'a' }, { name: 'b' }).start();
    const pods = many('p', 6, { strategy: 'binpack' });
    await f.schedule(...pods);
    expect(Object.values(f.countByNode(names(pods)))).toEqual([6]);
  });

  it('mixes with spread pods, each by its own strategy', async () => {
    f.nodes({ name: 'a' }, { name: 'b' }).start();
    await f.schedule(...many('pack', 3, { strategy: 'binpack' }));
    await f.schedule({ name: 'spread' });
    expect(f.nodeOf('spread')).not.toBe(f.nodeOf('pack-0'));
  });
});

describe('random', () => {
  it('takes the node the random numbers pick, among feasible nodes only', async () => {
    const draws = [0.1, 0.9, 0.5];
    let i = 0;
    const rigged = new SchedulerFixture({ random: () => draws[i++ % draws.length]! });
    try {
      rigged.nodes({ name: 'a' }, { name: 'b' }, { name: 'c' }, { name: 'down', ready: false }).start();
      await rigged.schedule({ name: 'r', strategy: 'random' });
      expect(rigged.nodeOf('r')).toBe('b');
    } finally {
      rigged.close();
    }
  });

  it('spreads pods over the nodes in the long run', async () => {
    f.nodes({ name: 'a' }, { name: 'b' }, { name: 'c' }).start();
    const pods = many('r', 60, { strategy: 'random' });
    await f.schedule(...pods);
    const counts = f.countByNode(names(pods));
    expect(Object.keys(counts).sort()).toEqual(['a', 'b', 'c']);
  });
});

describe('preferred node affinity', () => {
  it('adds the weights of the terms a node matches; the heaviest wins over the strategy', async () => {
    f.nodes({ name: 'ssd', labels: { disk: 'ssd' } }, { name: 'ssd-fast', labels: { disk: 'ssd', net: 'fast' } }, { name: 'hdd', labels: { disk: 'hdd' } }).start();
    const preference = {
      nodeAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          { weight: 20, preference: { matchExpressions: [{ key: 'disk', operator: 'In' as const, values: ['ssd'] }] } },
          { weight: 10, preference: { matchExpressions: [{ key: 'net', operator: 'Exists' as const }] } },
        ],
      },
    };
    await f.schedule(...many('db', 3, { affinity: preference }));
    expect(f.countByNode(['db-0', 'db-1', 'db-2'])).toEqual({ 'ssd-fast': 3 });
  });

  it('gives way to a required rule', async () => {
    f.nodes({ name: 'ssd', labels: { disk: 'ssd' } }, { name: 'hdd', labels: { disk: 'hdd' } }).start();
    await f.schedule({
      name: 'p',
      nodeSelector: { disk: 'hdd' },
      affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, preference: { matchExpressions: [{ key: 'disk', operator: 'In', values: ['ssd'] }] } }] } },
    });
    expect(f.nodeOf('p')).toBe('hdd');
  });
});

describe('PreferNoSchedule taints', () => {
  it('keeps pods off a node with an untolerated PreferNoSchedule taint while others fit, and onto it when none do', async () => {
    f.nodes({ name: 'old', taints: [{ key: 'legacy', effect: 'PreferNoSchedule' }] }, { name: 'new', pods: 2 }).start();
    await f.schedule(...many('p', 3));
    expect(f.countByNode(['p-0', 'p-1', 'p-2'])).toEqual({ new: 2, old: 1 });
    expect(f.nodeOf('p-2')).toBe('old');
  });

  it('is ignored by a pod that tolerates the taint', async () => {
    f.nodes({ name: 'old', taints: [{ key: 'legacy', effect: 'PreferNoSchedule' }] }, { name: 'new' }).pods({ name: 'there', nodeName: 'new' }).start();
    await f.schedule({ name: 'tolerant', tolerations: [{ key: 'legacy', operator: 'Exists' }] });
    expect(f.nodeOf('tolerant')).toBe('old');
  });

  it('outweighs the binpack strategy', async () => {
    f.nodes({ name: 'full', taints: [{ key: 'legacy', effect: 'PreferNoSchedule' }] }, { name: 'empty' }).pods({ name: 'a', nodeName: 'full' }, { name: 'b', nodeName: 'full' }).start();
    await f.schedule({ name: 'packed', strategy: 'binpack' });
    expect(f.nodeOf('packed')).toBe('empty');
  });
});

describe('combinations', () => {
  it('binpacks within the nodes a nodeSelector allows, around a taint', async () => {
    f.nodes(
      { name: 'north-1', labels: { site: 'north' }, cpu: '1' },
      { name: 'north-2', labels: { site: 'north' }, cpu: '1', taints: [{ key: 'gpu', effect: 'NoSchedule' }] },
      { name: 'north-3', labels: { site: 'north' }, cpu: '1' },
      { name: 'south-1', labels: { site: 'south' }, cpu: '1' },
    ).start();
    const pods = many('job', 7, { cpu: '300m', nodeSelector: { site: 'north' }, strategy: 'binpack' });
    await f.schedule(...pods);
    const counts = f.countByNode(names(pods));
    expect(counts['north-2']).toBeUndefined();
    expect(counts['south-1']).toBeUndefined();
    expect([counts['north-1'], counts['north-3']].sort()).toEqual([3, 3]);
    expect(f.whyPending(pods.find((p) => f.nodeOf(p.name) === undefined)!.name)).toBe(
      "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {gpu: }, 2 Insufficient cpu.",
    );
  });

  it('spreads one replica per node with anti-affinity while preferring a site', async () => {
    f.nodes({ name: 'n1', labels: { site: 'north' } }, { name: 'n2', labels: { site: 'north' } }, { name: 's1', labels: { site: 'south' } }).start();
    const pods = many('web', 3, {
      labels: { app: 'web' },
      affinity: {
        podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: 'web' } }, topologyKey: 'kubernetes.io/hostname' }] },
        nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 50, preference: { matchExpressions: [{ key: 'site', operator: 'In', values: ['north'] }] } }] },
      },
    });
    await f.schedule(...pods);
    expect(names(pods).map((p) => f.nodeOf(p))).toEqual(['n1', 'n2', 's1']);
  });
});

describe('how many nodes are looked at', () => {
  it("follows Kubernetes' adaptive percentageOfNodesToScore", () => {
    expect(feasibleNodesToFind(50)).toBe(50);
    expect(feasibleNodesToFind(1_000)).toBe(420);
    expect(feasibleNodesToFind(10_000)).toBe(500);
    expect(feasibleNodesToFind(10_000, 100)).toBe(10_000);
    expect(feasibleNodesToFind(10_000, 0.5)).toBe(100);
  });

  it('looks at a rotating sample of a large fleet, so spread still reaches far beyond one sample', async () => {
    const fleet = Array.from({ length: 300 }, (_, i) => ({ name: `n-${String(i).padStart(3, '0')}` }));
    f.nodes(...fleet).start();
    const pods = many('p', 300);
    await f.schedule(...pods);
    const counts = f.countByNode(names(pods));
    expect(counts['<none>']).toBeUndefined();
    // One sample is 144 of the 300 nodes (48 %); the best of each sample has the fewest pods.
    expect(Object.keys(counts).length).toBeGreaterThan(feasibleNodesToFind(300));
    expect(Math.max(...Object.values(counts))).toBeLessThanOrEqual(2);
  });

  it('looks at every node with percentageOfNodesToScore 100', async () => {
    const all = new SchedulerFixture({ percentageOfNodesToScore: 100 });
    try {
      all.nodes(...Array.from({ length: 300 }, (_, i) => ({ name: `n-${String(i).padStart(3, '0')}` }))).start();
      const pods = many('p', 300);
      await all.schedule(...pods);
      expect(Object.values(all.countByNode(names(pods)))).toEqual(Array(300).fill(1));
    } finally {
      all.close();
    }
  });
});
