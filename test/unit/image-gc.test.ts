import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { IMAGE_GC_EVENT_REPEAT_MS, IMAGE_GC_INTERVAL_MS, ImageCollector, bytesToFree, type NodeEvent } from '../../agent/node/image-gc.js';
import type { FsUsage } from '../../agent/node/pressure.js';
import type { RuntimeImage } from '../../agent/runtime/images.js';
import type { ContainerRuntime, RuntimeContainer } from '../../agent/runtime/runtime.js';

// Image garbage collection under DiskPressure: what it removes, and the Warning about the node
// when it fails or frees less than the disk needs (the kubelet's ImageGCFailed and
// FreeDiskSpaceFailed).

const MB = 1_000_000;
const log = pino({ level: 'silent' });

/** An engine holding `images`; removing one frees its size on a disk of 1,000 MB. */
class EngineDisk {
  images: RuntimeImage[];
  availableBytes: number;
  failList = false;
  refused = new Set<string>();

  constructor(images: RuntimeImage[], availableBytes: number, private readonly containers: RuntimeContainer[] = []) {
    this.images = images;
    this.availableBytes = availableBytes;
  }

  disks = (): FsUsage[] => [{ path: '/var/lib/docker', sizeBytes: 1_000 * MB, availableBytes: this.availableBytes }];

  runtime(): ContainerRuntime {
    return {
      listImages: async () => {
        if (this.failList) throw new Error('engine unavailable');
        return this.images;
      },
      listContainers: async () => this.containers,
      removeImage: async (id: string) => {
        if (this.refused.has(id)) throw new Error('conflict: image is in use');
        const image = this.images.find((i) => i.id === id)!;
        this.images = this.images.filter((i) => i !== image);
        this.availableBytes += image.sizeBytes;
      },
    } as Partial<ContainerRuntime> as ContainerRuntime;
  }
}

function image(id: string, sizeMB: number, created: number): RuntimeImage {
  return { id, tags: [`old/${id}:1`], created, sizeBytes: sizeMB * MB };
}

function collector(engine: EngineDisk, clock: { now: number }): { gc: ImageCollector; events: NodeEvent[] } {
  const events: NodeEvent[] = [];
  return { gc: new ImageCollector(engine.runtime(), engine.disks, log, (e) => events.push(e), () => clock.now), events };
}

describe('bytesToFree', () => {
  it('is what the fullest file system lacks to 10% free, and 0 without pressure', () => {
    expect(bytesToFree([{ path: '/a', sizeBytes: 1_000, availableBytes: 40 }, { path: '/b', sizeBytes: 1_000, availableBytes: 90 }])).toBe(60);
    expect(bytesToFree([{ path: '/a', sizeBytes: 1_000, availableBytes: 100 }])).toBe(0);
    expect(bytesToFree([undefined])).toBe(0);
  });
});

describe('ImageCollector', () => {
  it('removes unused images oldest first until the pressure clears, and tells nothing', async () => {
    const engine = new EngineDisk([image('c', 50, 3), image('a', 30, 1), image('b', 40, 2)], 50 * MB);
    const { gc, events } = collector(engine, { now: 0 });
    const result = await gc.collect(new Set());
    expect(result).toEqual({ wantedBytes: 50 * MB, freedBytes: 70 * MB, removed: ['old/a:1', 'old/b:1'] });
    expect(engine.images.map((i) => i.id)).toEqual(['c']);
    expect(events).toEqual([]);
  });

  it('does nothing without DiskPressure', async () => {
    const engine = new EngineDisk([image('a', 30, 1)], 500 * MB);
    const { gc } = collector(engine, { now: 0 });
    expect(await gc.collect(new Set())).toBeUndefined();
    expect(engine.images).toHaveLength(1);
  });

  it('keeps the images desired pods use, and warns FreeDiskSpaceFailed when the rest is not enough', async () => {
    const engine = new EngineDisk([image('a', 10, 1), image('wanted', 300, 2)], 20 * MB);
    engine.images[1]!.tags = ['app/wanted:1'];
    const { gc, events } = collector(engine, { now: 0 });
    const result = await gc.collect(new Set(['app/wanted:1']));
    expect(result).toMatchObject({ wantedBytes: 80 * MB, freedBytes: 10 * MB, removed: ['old/a:1'] });
    expect(events).toEqual([{ type: 'Warning', reason: 'FreeDiskSpaceFailed', message: `Failed to garbage collect required amount of images. Wanted to free ${80 * MB} bytes, but freed ${10 * MB} bytes (1 unused image removed)` }]);
  });

  it('counts an image the engine refuses to remove as not freed', async () => {
    const engine = new EngineDisk([image('a', 200, 1)], 20 * MB);
    engine.refused.add('a');
    const { gc, events } = collector(engine, { now: 0 });
    expect(await gc.collect(new Set())).toMatchObject({ freedBytes: 0, removed: [] });
    expect(events.map((e) => e.reason)).toEqual(['FreeDiskSpaceFailed']);
  });

  it('warns ImageGCFailed when the engine cannot list its images', async () => {
    const engine = new EngineDisk([], 20 * MB);
    engine.failList = true;
    const { gc, events } = collector(engine, { now: 0 });
    await gc.collect(new Set());
    expect(events).toEqual([{ type: 'Warning', reason: 'ImageGCFailed', message: 'Failed to garbage collect images: engine unavailable' }]);
  });

  it('runs at most once per interval and repeats the same warning only every few minutes', async () => {
    const engine = new EngineDisk([], 20 * MB);
    const clock = { now: 0 };
    const { gc, events } = collector(engine, clock);
    expect(await gc.collect(new Set())).toBeDefined();
    clock.now += IMAGE_GC_INTERVAL_MS - 1;
    expect(await gc.collect(new Set())).toBeUndefined();
    clock.now += 1;
    expect(await gc.collect(new Set())).toBeDefined();
    expect(events).toHaveLength(1);
    clock.now = IMAGE_GC_EVENT_REPEAT_MS;
    await gc.collect(new Set());
    expect(events).toHaveLength(2);
  });
});
