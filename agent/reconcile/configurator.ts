import type { Logger } from 'pino';
import type { DesiredState } from '../../shared/protocol/messages.js';
import { LABEL_POD_UID, type RuntimeContainer } from '../runtime/runtime.js';
import { VolumeManager, type VolumeBlock } from '../volumes/manager.js';
import { podConfig, type PodConfig } from './config.js';
import type { PodEvent } from './execute.js';
import type { Waiting } from './status.js';

/**
 * The agent's side of ConfigMaps and Secrets, run before each plan: writes the pods' volumes
 * (ConfigMap and Secret files are updated in place), resolves the env they take from them, and
 * tells, once per problem, which containers must wait. File writes happen here, never in the
 * planner, which stays pure.
 */
export class PodConfigurator {
  private readonly volumes: VolumeManager;
  /** Containers waiting for their configuration, by `podUid/container`, as of the last prepare(). */
  waiting: ReadonlyMap<string, Waiting> = new Map();
  /** The last problem announced as an event, per container, so each is sent once. */
  private readonly announced = new Map<string, string>();

  constructor(
    stateDir: string,
    private readonly log: Logger,
    private readonly onEvent: (e: PodEvent) => void,
  ) {
    this.volumes = new VolumeManager(stateDir, (podUid, reason, message) => onEvent({ podUid, type: 'Warning', reason, message }));
  }

  prepare(target: DesiredState): PodConfig {
    const sources = { configs: target.configs, secrets: target.secrets };
    let blocks = new Map<string, VolumeBlock>();
    try {
      blocks = this.volumes.sync(target.pods, sources);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'could not prepare pod volumes');
    }
    const config = podConfig(target.pods, sources, blocks);
    this.waiting = config.waiting;
    for (const [key, w] of config.waiting) {
      if (this.announced.get(key) === w.message) continue;
      this.announced.set(key, w.message);
      const [podUid, container] = key.split('/') as [string, string];
      // The kubelet's events: Failed for a container it cannot configure, FailedMount for a volume.
      const configError = w.reason === 'CreateContainerConfigError';
      this.onEvent({ podUid, container, type: 'Warning', reason: configError ? 'Failed' : 'FailedMount', message: configError ? `Error: ${w.message}` : w.message });
    }
    for (const key of this.announced.keys()) if (!config.waiting.has(key)) this.announced.delete(key);
    return config;
  }

  /** Volume folders go once their pod is neither desired nor has a container left on the engine. */
  cleanup(desired: DesiredState['pods'], containers: readonly RuntimeContainer[]): void {
    const keep = new Set([...desired.map((p) => p.uid), ...containers.map((c) => c.labels[LABEL_POD_UID] ?? '')]);
    try {
      this.volumes.cleanup(keep);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not remove the volumes of a removed pod');
    }
  }
}
