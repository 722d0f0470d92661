/**
 * Builders for the scheduler's unit tests: nodes with capacity, labels and taints, pods with
 * requests, ports and placement rules, and a scheduler started on an in-memory store.
 */
import type { NewObject } from '../../hub/store/types.js';
import { Scheduler, type SchedulerOptions } from '../../hub/scheduler/scheduler.js';
import type { Taint } from '../../shared/resources/node.js';
import type { PodCondition, PodSpec, PodStatus } from '../../shared/resources/pod.js';
import type { Affinity, PodAffinityTerm, SchedulingStrategy, Toleration } from '../../shared/resources/scheduling.js';
import { container, eventsAbout, testHub, type TestHub } from './builders.js';

export interface NodeOptions {
  name: string;
  labels?: Record<string, string>;
  ready?: boolean;
  unschedulable?: boolean;
  taints?: Taint[];
  /** Allocatable; a node without any reports no limit. */
  cpu?: string;
  memory?: string;
  pods?: number;
}

export function nodeObject(o: NodeOptions): NewObject {
  const allocatable: Record<string, string> = {
    ...(o.cpu !== undefined ? { cpu: o.cpu } : {}),
    ...(o.memory !== undefined ? { memory: o.memory } : {}),
    ...(o.pods !== undefined ? { pods: String(o.pods) } : {}),
  };
  return {
    apiVersion: 'flotilla/v1',
    kind: 'Node',
    metadata: { name: o.name, ...(o.labels ? { labels: o.labels } : {}) },
    spec: { ...(o.unschedulable ? { unschedulable: true } : {}), ...(o.taints ? { taints: o.taints } : {}) },
    status: { conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }], ...(Object.keys(allocatable).length ? { allocatable } : {}) },
  };
}

export interface PodOptions {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  nodeName?: string;
  nodeSelector?: Record<string, string>;
  cpu?: string;
  memory?: string;
  /** Host ports "80" or "UDP/53". */
  hostPorts?: string[];
  affinity?: Affinity;
  tolerations?: Toleration[];
  strategy?: SchedulingStrategy;
  phase?: PodStatus['phase'];
}

export function podObject(o: PodOptions): NewObject {
  const requests = { ...(o.cpu ? { cpu: o.cpu } : {}), ...(o.memory ? { memory: o.memory } : {}) };
  const ports = (o.hostPorts ?? []).map((p) => {
    const [protocol, port] = p.includes('/') ? p.split('/') : ['TCP', p];
    return { containerPort: Number(port), hostPort: Number(port), protocol: protocol as 'TCP' | 'UDP' };
  });
  const spec: PodSpec = {
    containers: [container({ name: 'app', image: 'flotilla-test/busybox:1', ...(Object.keys(requests).length ? { resources: { requests } } : {}), ...(ports.length ? { ports } : {}) })],
    ...(o.nodeName ? { nodeName: o.nodeName } : {}),
    ...(o.nodeSelector ? { nodeSelector: o.nodeSelector } : {}),
    ...(o.affinity ? { affinity: o.affinity } : {}),
    ...(o.tolerations ? { tolerations: o.tolerations } : {}),
    ...(o.strategy ? { schedulingStrategy: o.strategy } : {}),
  };
  return {
    apiVersion: 'flotilla/v1',
    kind: 'Pod',
    metadata: { name: o.name, namespace: o.namespace ?? 'default', ...(o.labels ? { labels: o.labels } : {}) },
    spec,
    ...(o.phase ? { status: { phase: o.phase } } : {}),
  };
}

/** A required pod (anti-)affinity term selecting `app`, over `topologyKey`. */
export function appTerm(app: string, topologyKey: string): PodAffinityTerm {
  return { labelSelector: { matchLabels: { app } }, topologyKey };
}

/** A scheduler on an in-memory store, started, with no back-off (retries happen at once). */
export class SchedulerFixture {
  readonly hub: TestHub = testHub();
  readonly scheduler: Scheduler;

  constructor(options: SchedulerOptions = {}) {
    this.scheduler = new Scheduler(this.hub.store, this.hub.events, this.hub.log, { initialBackoffMs: 0, maxBackoffMs: 0, ...options });
  }

  start(): this {
    this.scheduler.start();
    return this;
  }

  close(): void {
    this.scheduler.stop();
    this.hub.db.close();
  }

  nodes(...list: NodeOptions[]): this {
    for (const o of list) this.hub.store.create(nodeObject(o));
    return this;
  }

  pods(...list: PodOptions[]): this {
    for (const o of list) this.hub.store.create(podObject(o));
    return this;
  }

  /** Creates the pods and waits until the scheduler has tried them all. */
  async schedule(...list: PodOptions[]): Promise<void> {
    this.pods(...list);
    await this.scheduler.idle();
  }

  async settle(): Promise<void> {
    await this.scheduler.idle();
  }

  nodeOf(pod: string, namespace = 'default'): string | undefined {
    return (this.hub.store.get('Pod', namespace, pod)!.spec as PodSpec).nodeName;
  }

  statusOf(pod: string, namespace = 'default'): PodStatus | undefined {
    return this.hub.store.get('Pod', namespace, pod)!.status as PodStatus | undefined;
  }

  scheduledCondition(pod: string): PodCondition | undefined {
    return this.statusOf(pod)?.conditions?.find((c) => c.type === 'PodScheduled');
  }

  /** The FailedScheduling message of an unschedulable pod. */
  whyPending(pod: string): string | undefined {
    const c = this.scheduledCondition(pod);
    return c?.status === 'False' ? c.message : undefined;
  }

  events(pod: string): string[] {
    return eventsAbout(this.hub.store, 'Pod', pod);
  }

  /** How many of `pods` each node got. */
  countByNode(pods: string[]): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const p of pods) {
      const node = this.nodeOf(p) ?? '<none>';
      counts[node] = (counts[node] ?? 0) + 1;
    }
    return counts;
  }
}
