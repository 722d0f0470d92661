import type { DesiredPod } from '../../shared/protocol/messages.js';
import type { VolumeBlock } from '../volumes/manager.js';
import { resolveEnv, usesConfigEnv, type ConfigSources } from './env.js';
import { backoffKey } from './plan.js';
import type { Waiting } from './status.js';

export interface PodConfig {
  /** Environments taken from ConfigMaps and Secrets, by `podUid/container`. */
  resolvedEnv: Map<string, string[]>;
  /** Containers that cannot be made, and why, by `podUid/container`. */
  waiting: Map<string, Waiting>;
}

/**
 * What the desired pods' containers get from ConfigMaps and Secrets, and which of them must
 * wait: the kubelet's CreateContainerConfigError for a missing object or key in the env, and
 * ContainerCreating with the mount failure for a volume that cannot be set up.
 */
export function podConfig(pods: readonly DesiredPod[], sources: ConfigSources, volumeBlocks: ReadonlyMap<string, VolumeBlock>): PodConfig {
  const resolvedEnv = new Map<string, string[]>();
  const waiting = new Map<string, Waiting>();
  for (const pod of pods) {
    const podBlock = volumeBlocks.get(pod.uid);
    for (const c of pod.spec.containers) {
      const key = backoffKey(pod.uid, c.name);
      if (usesConfigEnv(c)) {
        const env = resolveEnv(pod.namespace, c, sources);
        if (!env.ok) {
          waiting.set(key, { reason: 'CreateContainerConfigError', message: env.message });
          continue;
        }
        resolvedEnv.set(key, env.env);
      }
      if (podBlock) waiting.set(key, podBlock);
    }
  }
  return { resolvedEnv, waiting };
}
