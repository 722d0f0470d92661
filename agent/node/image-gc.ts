import type { Logger } from 'pino';
import { imagesToCollect } from '../runtime/images.js';
import type { ContainerRuntime } from '../runtime/runtime.js';
import { DISK_AVAILABLE_MIN_RATIO, type FsUsage } from './pressure.js';

/** Something that happened to the device itself, for an Event about its Node. */
export interface NodeEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/** Unused images are collected at most this often while the node is under DiskPressure. */
export const IMAGE_GC_INTERVAL_MS = 60_000;
/** The same failure is told at most this often (the kubelet's image GC period), so a full disk does not fill the uplink. */
export const IMAGE_GC_EVENT_REPEAT_MS = 5 * 60_000;

/**
 * The bytes that must be freed to end DiskPressure: on each file system under pressure, what
 * is missing to the DISK_AVAILABLE_MIN_RATIO threshold; the largest of them. 0 without pressure.
 */
export function bytesToFree(disks: readonly (FsUsage | undefined)[]): number {
  let wanted = 0;
  for (const d of disks) {
    if (!d || d.sizeBytes <= 0) continue;
    wanted = Math.max(wanted, Math.ceil(d.sizeBytes * DISK_AVAILABLE_MIN_RATIO - d.availableBytes));
  }
  return wanted;
}

export interface ImageGcResult {
  wantedBytes: number;
  freedBytes: number;
  removed: string[];
}

/**
 * Image garbage collection under DiskPressure, as the kubelet's: removes the images that no
 * container of the engine uses (ours or not) and no desired pod refers to, oldest first, until
 * the pressure clears. When that fails, or frees less than needed, it says so with a Warning
 * about the node (ImageGCFailed, FreeDiskSpaceFailed), as the kubelet does.
 */
export class ImageCollector {
  private lastRunAt = -Infinity;
  private readonly told = new Map<string, number>();

  constructor(
    private readonly runtime: ContainerRuntime,
    /** The file systems that matter: the agent's state directory's and the engine's data root's. */
    private readonly disks: () => readonly (FsUsage | undefined)[],
    private readonly log: Logger,
    private readonly onEvent: (e: NodeEvent) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** Collects if the node is under DiskPressure and the last run is old enough; what it did, or undefined when it did not run. */
  async collect(keep: ReadonlySet<string>): Promise<ImageGcResult | undefined> {
    const now = this.now();
    if (now - this.lastRunAt < IMAGE_GC_INTERVAL_MS) return undefined;
    const wantedBytes = bytesToFree(this.disks());
    if (wantedBytes <= 0) return undefined;
    this.lastRunAt = now;
    const removed: string[] = [];
    let freedBytes = 0;
    try {
      const [images, containers] = await Promise.all([this.runtime.listImages(), this.runtime.listContainers({})]);
      for (const image of imagesToCollect(images, containers, keep)) {
        try {
          await this.runtime.removeImage(image.id);
          removed.push(image.tags[0] ?? image.id);
          freedBytes += image.sizeBytes;
        } catch (err) {
          this.log.debug({ image: image.id, err: (err as Error).message }, 'could not remove an unused image');
        }
        if (bytesToFree(this.disks()) <= 0) break;
      }
    } catch (err) {
      this.tell({ type: 'Warning', reason: 'ImageGCFailed', message: `Failed to garbage collect images: ${(err as Error).message}` });
      return { wantedBytes, freedBytes, removed };
    }
    if (removed.length > 0) this.log.info({ images: removed, freedBytes }, 'removed unused images under disk pressure');
    if (bytesToFree(this.disks()) > 0) {
      this.tell({
        type: 'Warning',
        reason: 'FreeDiskSpaceFailed',
        message: `Failed to garbage collect required amount of images. Wanted to free ${wantedBytes} bytes, but freed ${freedBytes} bytes (${removed.length} unused image${removed.length === 1 ? '' : 's'} removed)`,
      });
    }
    return { wantedBytes, freedBytes, removed };
  }

  private tell(e: NodeEvent): void {
    this.log.warn({ reason: e.reason }, e.message);
    const now = this.now();
    if (now - (this.told.get(e.reason) ?? -Infinity) < IMAGE_GC_EVENT_REPEAT_MS) return;
    this.told.set(e.reason, now);
    this.onEvent(e);
  }
}
