/**
 * Intent-revealing builders for unit tests, in the style of balena-supervisor's
 * `test/lib/state-helper.ts`: a test says what the situation is ("an app container that exited
 * with 1, on its second restart"), and the builder fills in labels and hashes exactly as the
 * agent and the hub would.
 */
import { pino, type Logger } from 'pino';
import { expect } from 'vitest';
import { containerSpecHash, infraSpecHash } from '../../agent/reconcile/hash.js';
import type { ActualState, PlanContext, Step, StepAction } from '../../agent/reconcile/plan.js';
import {
  INFRA_CONTAINER,
  LABEL_CONTAINER,
  LABEL_NAMESPACE,
  LABEL_NODE,
  LABEL_POD,
  LABEL_POD_UID,
  LABEL_RESTART_COUNT,
  LABEL_SPEC_HASH,
  type ContainerRunState,
  type RuntimeContainer,
} from '../../agent/runtime/runtime.js';
import type { MessageBus } from '../../hub/broker/bus.js';
import { EventRecorder } from '../../hub/events/recorder.js';
import { ObjectStore } from '../../hub/store/objects.js';
import { openHubDatabase } from '../../hub/store/schema.js';
import type { Database } from '../../hub/store/db.js';
import type { NewObject, StoredObject } from '../../hub/store/types.js';
import type { DesiredPod } from '../../shared/protocol/messages.js';
import type { Container, PodSpec } from '../../shared/resources/pod.js';

// ---------------------------------------------------------------------------------------------
// Agent side: desired pods, containers as the engine reports them, plan context.

/** A message bus that carries nothing: for ingest classes whose handlers a test calls directly. */
export const idleBus: MessageBus = {
  publish: async () => {},
  subscribe: async () => {},
  disconnectNode: () => {},
  connectedClients: () => 0,
  close: async () => {},
};

export const NODE = 'edge-1';
export const PAUSE_IMAGE = 'flotilla/pause:3.9';
export const POD_NETWORK = 'flotilla-pods';
/** A fixed clock for the planner: back-offs are "in the future" or "in the past" relative to it. */
export const NOW = Date.parse('2025-01-01T12:00:00Z');

export function container(c: Partial<Container> & { name: string; image: string }): Container {
  return { ...c };
}

export interface DesiredPodOptions {
  name: string;
  uid?: string;
  namespace?: string;
  containers: Container[];
  restartPolicy?: PodSpec['restartPolicy'];
  hostNetwork?: boolean;
}

export function desiredPod(o: DesiredPodOptions): DesiredPod {
  return {
    uid: o.uid ?? `uid-${o.name}`,
    name: o.name,
    namespace: o.namespace ?? 'default',
    spec: {
      containers: o.containers,
      ...(o.restartPolicy ? { restartPolicy: o.restartPolicy } : {}),
      ...(o.hostNetwork !== undefined ? { hostNetwork: o.hostNetwork } : {}),
    },
  };
}

/** The infra hash the agent computes for `pod` with the test's pause image and pod network. */
export function infraHashOf(pod: DesiredPod): string {
  return infraSpecHash(pod, PAUSE_IMAGE, POD_NETWORK);
}

/** The spec hash the agent computes for one of `pod`'s app containers. */
export function appHashOf(pod: DesiredPod, name: string): string {
  const spec = pod.spec.containers.find((c) => c.name === name);
  if (!spec) throw new Error(`pod ${pod.name} has no container ${name}`);
  return containerSpecHash(pod, spec, infraHashOf(pod));
}

export interface RuntimeContainerOptions {
  pod: DesiredPod;
  /** An app container's name, or INFRA_CONTAINER for the pod's infra container. */
  container: string;
  state?: ContainerRunState;
  exitCode?: number;
  oomKilled?: boolean;
  /** Defaults to the hash the agent would compute from `pod` now, i.e. an up-to-date container. */
  hash?: string;
  restartCount?: number;
  id?: string;
  createdAt?: string;
  startedAt?: string;
  finishedAt?: string;
  /** The node label; only ever this node's in what the agent lists. */
  node?: string;
}

let nextId = 0;

/** A container as `ContainerRuntime.listContainers` reports it, labelled as the executor labels it. */
export function runtimeContainer(o: RuntimeContainerOptions): RuntimeContainer {
  const isInfra = o.container === INFRA_CONTAINER;
  const spec = isInfra ? undefined : o.pod.spec.containers.find((c) => c.name === o.container);
  const hash = o.hash ?? (isInfra ? infraHashOf(o.pod) : appHashOf(o.pod, o.container));
  const id = o.id ?? `${o.pod.name}-${o.container.toLowerCase()}-${++nextId}`;
  return {
    id,
    name: `${o.pod.namespace}_${o.pod.name}_${o.container}`,
    image: isInfra ? PAUSE_IMAGE : (spec?.image ?? 'unknown:0'),
    labels: {
      [LABEL_NODE]: o.node ?? NODE,
      [LABEL_POD_UID]: o.pod.uid,
      [LABEL_POD]: o.pod.name,
      [LABEL_NAMESPACE]: o.pod.namespace,
      [LABEL_CONTAINER]: o.container,
      [LABEL_SPEC_HASH]: hash,
      [LABEL_RESTART_COUNT]: String(o.restartCount ?? 0),
    },
    state: o.state ?? 'running',
    ...(o.exitCode !== undefined ? { exitCode: o.exitCode } : {}),
    ...(o.oomKilled !== undefined ? { oomKilled: o.oomKilled } : {}),
    createdAt: o.createdAt ?? '2025-01-01T11:00:00.000000000Z',
    ...(o.startedAt ? { startedAt: o.startedAt } : {}),
    ...(o.finishedAt ? { finishedAt: o.finishedAt } : {}),
  };
}

/** The running infra container of `pod` (its sandbox), up to date unless `hash` says otherwise. */
export function infraContainer(o: Omit<RuntimeContainerOptions, 'container'>): RuntimeContainer {
  return runtimeContainer({ ...o, container: INFRA_CONTAINER });
}

export function actualState(o: { containers?: RuntimeContainer[]; images?: string[] } = {}): ActualState {
  return { containers: o.containers ?? [], images: new Set(o.images ?? []) };
}

export function planContext(o: Partial<PlanContext> = {}): PlanContext {
  return {
    pauseImage: PAUSE_IMAGE,
    podNetwork: POD_NETWORK,
    now: NOW,
    backoff: new Map(),
    pullBackoff: new Map(),
    pulledThisPass: new Set(),
    ...o,
  };
}

/** Asserts the kinds of the planned steps, in order (balena's expectSteps). */
export function expectSteps(steps: readonly Step[], actions: readonly StepAction[]): void {
  expect(steps.map((s) => s.action)).toEqual(actions);
}

/** The one step of a kind, failing the test when there is not exactly one. */
export function onlyStep<A extends StepAction>(steps: readonly Step[], action: A): Extract<Step, { action: A }> {
  const found = steps.filter((s): s is Extract<Step, { action: A }> => s.action === action);
  expect(found, `exactly one ${action} step`).toHaveLength(1);
  return found[0]!;
}

/** The ids of the containers that `steps` remove, in order. */
export function removedIds(steps: readonly Step[]): string[] {
  return steps.flatMap((s) => (s.action === 'remove' ? [s.container.id] : []));
}

// ---------------------------------------------------------------------------------------------
// Hub side: a real object store on an in-memory SQLite database, and the objects in it.

export interface TestHub {
  db: Database;
  store: ObjectStore;
  events: EventRecorder;
  log: Logger;
}

/** A hub store on `:memory:`; close it with `db.close()` (tests do so in afterEach). */
export function testHub(): TestHub {
  const db = openHubDatabase(':memory:');
  const store = new ObjectStore(db);
  const log = pino({ level: 'silent' });
  return { db, store, events: new EventRecorder(store, 'test', log), log };
}

export interface NodeOptions {
  name: string;
  labels?: Record<string, string>;
  /** Ready condition True (default) or False; `undefined` status is never reported by a joined node. */
  ready?: boolean;
  unschedulable?: boolean;
}

export function nodeObject(o: NodeOptions): NewObject {
  return {
    apiVersion: 'flotilla/v1',
    kind: 'Node',
    metadata: { name: o.name, ...(o.labels ? { labels: o.labels } : {}) },
    spec: o.unschedulable ? { unschedulable: true } : {},
    status: readyStatus(o.ready ?? true),
  };
}

export function readyStatus(ready: boolean): { conditions: { type: string; status: 'True' | 'False' }[] } {
  return { conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] };
}

export function createNode(store: ObjectStore, o: NodeOptions): StoredObject {
  return store.create(nodeObject(o));
}

export function setNodeReady(store: ObjectStore, name: string, ready: boolean): void {
  store.updateStatus('Node', '', name, readyStatus(ready));
}

export function setNodeLabels(store: ObjectStore, name: string, labels: Record<string, string>): void {
  store.mutate('Node', '', name, (cur) => ({ ...cur, metadata: { ...cur.metadata, labels } }));
}

export interface DaemonSetOptions {
  name: string;
  namespace?: string;
  /** The app label of selector and template (default: the DaemonSet's name). */
  app?: string;
  nodeSelector?: Record<string, string>;
  containers?: Container[];
}

export function daemonSetObject(o: DaemonSetOptions): NewObject {
  const app = o.app ?? o.name;
  return {
    apiVersion: 'flotilla/v1',
    kind: 'DaemonSet',
    metadata: { name: o.name, namespace: o.namespace ?? 'default' },
    spec: {
      selector: { matchLabels: { app } },
      template: {
        metadata: { labels: { app } },
        spec: {
          ...(o.nodeSelector ? { nodeSelector: o.nodeSelector } : {}),
          containers: o.containers ?? [container({ name: 'reader', image: 'registry.example/sensor-reader:2.1' })],
        },
      },
    },
  };
}

export interface PodObjectOptions {
  name: string;
  namespace?: string;
  nodeName?: string;
  nodeSelector?: Record<string, string>;
  labels?: Record<string, string>;
  containers?: Container[];
}

export function podObject(o: PodObjectOptions): NewObject {
  return {
    apiVersion: 'flotilla/v1',
    kind: 'Pod',
    metadata: { name: o.name, namespace: o.namespace ?? 'default', ...(o.labels ? { labels: o.labels } : {}) },
    spec: {
      containers: o.containers ?? [container({ name: 'app', image: 'flotilla-test/busybox:1' })],
      ...(o.nodeName ? { nodeName: o.nodeName } : {}),
      ...(o.nodeSelector ? { nodeSelector: o.nodeSelector } : {}),
    },
  };
}

/** Events recorded about the object `name` (of `kind`), as `Type Reason: message`. */
export function eventsAbout(store: ObjectStore, kind: string, name: string): string[] {
  return store
    .list('Event')
    .items.filter((e) => {
      const involved = e.involvedObject as { kind: string; name: string };
      return involved.kind === kind && involved.name === name;
    })
    .map((e) => `${e.type as string} ${e.reason as string}: ${e.message as string}`);
}
