import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import {
  decodePayload,
  presenceSchema,
  statusReportSchema,
  type PodStatusReport,
  type Presence,
  type StatusReport,
} from '../../shared/protocol/messages.js';
import type { Topics } from '../../shared/protocol/topics.js';
import { formatFieldErrors } from '../../shared/resources/validate.js';
import type { NodeCondition, NodeStatus } from '../../shared/resources/node.js';
import type { PodCondition, PodSpec, PodStatus } from '../../shared/resources/pod.js';
import type { MessageBus } from '../broker/bus.js';
import type { EventRecorder } from '../events/recorder.js';
import type { ObjectStore } from '../store/objects.js';

interface Liveness {
  online: boolean;
  session: number;
  engineReady: boolean;
  engineMessage?: string;
}

/**
 * What the hub last wrote (or found already written) for one report of a pod or a node: a
 * fingerprint of the report, and the object's resourceVersion after it. While nobody else has
 * written the object since (a watch event with a newer version forgets the entry), the same
 * report again would write the same thing, and is skipped without reading the object.
 */
interface Applied {
  fp: string;
  rv: number;
}

interface NodeApplied extends Applied {
  /** When the stored lastHeartbeatTime was written (epoch ms). */
  beatAt: number;
  /** The Ready condition last set (status, reason, message), while the entry holds. */
  ready?: string;
}

function fingerprint(...parts: unknown[]): string {
  return createHash('sha1').update(JSON.stringify(parts)).digest('base64');
}

/**
 * Takes in what devices say (status reports and presence) and writes it to Node and Pod
 * status. Every payload is validated first; a malformed one is dropped and logged, and the hub
 * keeps serving. A device can only ever write the status of pods bound to itself: the topic
 * it may publish on names its node, and the broker lets it publish only there.
 */
export class StatusIngest {
  private readonly liveness = new Map<string, Liveness>();
  private readonly podsApplied = new Map<string, Applied>();
  private readonly nodesApplied = new Map<string, NodeApplied>();
  private unwatch: (() => void)[] = [];
  dropped = 0;
  /** Pod status reports skipped because the same report was already applied (for tests and benchmarks). */
  unchangedPodReports = 0;

  constructor(
    private readonly store: ObjectStore,
    private readonly bus: MessageBus,
    private readonly topics: Topics,
    private readonly events: EventRecorder,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    // A write by anyone else, or a rolled-back one, ends what the memos may assume.
    const forget = (memo: Map<string, Applied>, key: string, rv: string) => {
      const entry = memo.get(key);
      if (entry && Number(rv) > entry.rv) memo.delete(key);
    };
    this.unwatch.push(
      this.store.watch({ kind: 'Pod' }, (e) => forget(this.podsApplied, podKey(e.object.metadata.namespace, e.object.metadata.name), e.object.metadata.resourceVersion)),
      this.store.watch({ kind: 'Node' }, (e) => (e.type === 'DELETED' ? this.nodesApplied.delete(e.object.metadata.name) : forget(this.nodesApplied, e.object.metadata.name, e.object.metadata.resourceVersion))),
      this.store.onRollback(() => {
        this.podsApplied.clear();
        this.nodesApplied.clear();
      }),
    );
    // After a hub restart a node keeps its last Ready status until its agent reports or its
    // grace period runs out (the node lifecycle controller's fresh grace, as in Kubernetes):
    // marking every node Unknown here would turn every pod NotReady on each hub restart.
    await this.bus.subscribe(this.topics.allNodes('status'), (topic, payload) => this.onStatus(topic, payload));
    await this.bus.subscribe(this.topics.allNodes('presence'), (topic, payload) => this.onPresence(topic, payload));
  }

  private drop(node: string, channel: string, reason: string): void {
    this.dropped++;
    this.log.warn({ node, channel, reason }, 'malformed payload dropped');
  }

  onPresence(topic: string, payload: Buffer): void {
    const parsed = this.topics.parseNodeTopic(topic);
    if (!parsed || payload.length === 0) return;
    const decoded = decodePayload(presenceSchema, payload);
    if (!decoded.ok) return this.drop(parsed.node, 'presence', formatFieldErrors(decoded.errors));
    const presence: Presence = decoded.value;
    const live = this.liveness.get(parsed.node) ?? { online: false, session: 0, engineReady: true };
    // A will delivered late, after the device already came back in a newer session, must not mark it offline.
    if (presence.session < live.session) return;
    live.online = presence.state === 'online';
    live.session = presence.session;
    this.liveness.set(parsed.node, live);
    if (!this.store.get('Node', '', parsed.node)) return;
    this.applyReadiness(parsed.node, live);
  }

  onStatus(topic: string, payload: Buffer): void {
    const parsed = this.topics.parseNodeTopic(topic);
    if (!parsed) return;
    const decoded = decodePayload(statusReportSchema, payload);
    if (!decoded.ok) return this.drop(parsed.node, 'status', formatFieldErrors(decoded.errors));
    const report: StatusReport = decoded.value;
    const nodeName = parsed.node;
    const memo = this.nodesApplied.get(nodeName);
    // A remembered node exists: the watch forgets a deleted one.
    if (!memo && !this.store.has('Node', '', nodeName)) return;
    const live = this.liveness.get(nodeName) ?? { online: true, session: 0, engineReady: true };
    // A status report is proof of life even when the presence message was lost.
    live.online = true;
    const engineChanged = live.engineReady !== report.node.engineReady;
    live.engineReady = report.node.engineReady;
    live.engineMessage = report.node.engineMessage;
    this.liveness.set(nodeName, live);
    const nowMs = Date.now();
    const now = new Date(nowMs).toISOString();
    const nodeFp = fingerprint(report.node, report.observedRev);
    this.store.transaction(() => {
      // The same node report again, while the stored heartbeat is fresh, would write nothing.
      if (!memo || memo.fp !== nodeFp || nowMs - memo.beatAt >= HEARTBEAT_WRITE_MS) this.applyNodeStatus(nodeName, report, nodeFp, now);
      this.applyReadiness(nodeName, live);
      for (const podReport of report.pods) this.applyPodStatus(nodeName, podReport);
    });
    if (engineChanged && !report.node.engineReady) {
      this.events.warning({ kind: 'Node', name: nodeName }, 'ContainerRuntimeUnhealthy', report.node.engineMessage ?? 'container engine unavailable', nodeName);
    }
  }

  private applyNodeStatus(nodeName: string, report: StatusReport, fp: string, now: string): void {
    let beatAt = Date.parse(now);
    const after = this.store.mutate('Node', '', nodeName, (cur) => {
      const before = (cur.status as NodeStatus | undefined) ?? {};
      const status = { ...before };
      status.nodeInfo = report.node.info;
      status.capacity = report.node.capacity;
      status.allocatable = report.node.capacity;
      if (report.node.addresses) status.addresses = report.node.addresses;
      // The device's side of the pod network (its key, port, addresses): the relay and the peer messages are made from it.
      if (report.node.network) status.overlay = report.node.network;
      if (report.observedRev !== null) status.observedRevision = report.observedRev;
      if (report.node.conditions) status.conditions = mergeConditions(status.conditions ?? [], report.node.conditions, now);
      status.lastHeartbeatTime = now;
      // The liveness the node lifecycle controller counts on is in memory (every packet); the
      // stored heartbeat only needs to stay fresh: a report that changes nothing else is not a write.
      if (onlyHeartbeatMoved(before, status, beatAt)) {
        beatAt = Date.parse(before.lastHeartbeatTime!);
        return undefined;
      }
      return { ...cur, status };
    });
    if (!after) return;
    const prev = this.nodesApplied.get(nodeName);
    const rv = Number(after.metadata.resourceVersion);
    this.nodesApplied.set(nodeName, { fp, rv, beatAt, ...(prev?.ready !== undefined && prev.rv === rv ? { ready: prev.ready } : {}) });
  }

  private applyReadiness(node: string, live: Liveness): void {
    if (!live.online) {
      this.setReady(node, { status: 'Unknown', reason: 'NodeStatusUnknown', message: 'Agent disconnected.' });
    } else if (!live.engineReady) {
      this.setReady(node, { status: 'False', reason: 'ContainerRuntimeUnavailable', message: live.engineMessage ?? 'container engine unavailable' });
    } else {
      this.setReady(node, { status: 'True', reason: 'AgentReady', message: 'Agent is connected and its container engine answers.' });
    }
  }

  private setReady(node: string, ready: Pick<NodeCondition, 'status' | 'reason' | 'message'>): void {
    const readyKey = `${ready.status}\u0000${ready.reason ?? ''}\u0000${ready.message ?? ''}`;
    const memo = this.nodesApplied.get(node);
    if (memo?.ready === readyKey) return;
    let before: NodeCondition | undefined;
    const exists = this.store.mutate('Node', '', node, (cur) => {
      const status = { ...((cur.status as NodeStatus | undefined) ?? {}) };
      const others = (status.conditions ?? []).filter((c) => c.type !== 'Ready');
      const prev = status.conditions?.find((c) => c.type === 'Ready');
      before = prev;
      const changed = prev?.status !== ready.status;
      const condition: NodeCondition = {
        type: 'Ready',
        ...ready,
        lastTransitionTime: changed || !prev?.lastTransitionTime ? new Date().toISOString() : prev.lastTransitionTime,
      };
      status.conditions = [condition, ...others];
      return { ...cur, status };
    });
    if (exists && memo) {
      const current = this.nodesApplied.get(node);
      if (current) {
        current.ready = readyKey;
        current.rv = Number(exists.metadata.resourceVersion);
      }
    }
    if (exists && before?.status !== ready.status) {
      if (ready.status === 'True') this.events.normal({ kind: 'Node', name: node }, 'NodeReady', `Node ${node} status is now: NodeReady`, node);
      else if (before?.status === 'True') this.events.warning({ kind: 'Node', name: node }, 'NodeNotReady', `Node ${node} status is now: ${ready.reason ?? 'NodeNotReady'}`, node);
    }
  }

  /**
   * A pod's status, as its device reports it. The desired-set revision the report was made
   * against is the node's (status.observedRevision), written in the same transaction: a new
   * revision alone rewrites no pod.
   */
  private applyPodStatus(node: string, report: PodStatusReport): void {
    const key = podKey(report.namespace, report.name);
    const fp = fingerprint(node, report);
    if (this.podsApplied.get(key)?.fp === fp) {
      this.unchangedPodReports++;
      return;
    }
    let accepted = false;
    const after = this.store.mutate('Pod', report.namespace, report.name, (cur) => {
      // Only a pod that is bound to this node and is the same incarnation (uid) may be written.
      if (cur.metadata.uid !== report.uid || (cur.spec as PodSpec).nodeName !== node) return undefined;
      accepted = true;
      const prev = (cur.status as PodStatus | undefined) ?? { phase: 'Pending' };
      const allReady = report.containerStatuses.length > 0 && report.containerStatuses.every((c) => c.ready);
      const conditions: PodCondition[] = [
        { type: 'PodScheduled', status: 'True' },
        condition(prev, 'Ready', allReady ? 'True' : 'False'),
        condition(prev, 'ContainersReady', allReady ? 'True' : 'False'),
        // The device's own conditions (UpdateLocked), as it reports them; the three above are the hub's.
        ...(report.conditions ?? []).filter((c) => !HUB_POD_CONDITIONS.has(c.type)),
      ];
      const status: PodStatus = {
        phase: report.phase,
        ...(report.reason ? { reason: report.reason } : {}),
        ...(report.message ? { message: report.message } : {}),
        ...(report.podIP ? { podIP: report.podIP } : {}),
        ...(report.startTime ? { startTime: report.startTime } : {}),
        conditions,
        containerStatuses: report.containerStatuses,
      };
      return { ...cur, status };
    });
    if (after && accepted) this.podsApplied.set(key, { fp, rv: Number(after.metadata.resourceVersion) });
  }

  /** Stops following the store. */
  stop(): void {
    for (const u of this.unwatch) u();
    this.unwatch = [];
  }
}

function podKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

const HUB_POD_CONDITIONS: ReadonlySet<string> = new Set(['PodScheduled', 'Ready', 'ContainersReady']);

/** How old the stored heartbeat of a node may grow before a status report that changes nothing else is written anyway. */
export const HEARTBEAT_WRITE_MS = 30_000;

/**
 * True when `next` differs from `prev` only in its heartbeat times (the node's and its
 * conditions') and the stored heartbeat is younger than HEARTBEAT_WRITE_MS at `nowMs`.
 */
export function onlyHeartbeatMoved(prev: NodeStatus, next: NodeStatus, nowMs: number): boolean {
  const beatAt = Date.parse(prev.lastHeartbeatTime ?? '');
  if (!(nowMs - beatAt < HEARTBEAT_WRITE_MS)) return false;
  const beats = new Map((prev.conditions ?? []).map((c) => [c.type, c.lastHeartbeatTime]));
  const withOldBeats: NodeStatus = {
    ...next,
    lastHeartbeatTime: prev.lastHeartbeatTime,
    ...(next.conditions ? { conditions: next.conditions.map((c) => ({ ...c, lastHeartbeatTime: beats.get(c.type) })) } : {}),
  };
  return JSON.stringify(withOldBeats) === JSON.stringify(prev);
}

function condition(prev: PodStatus, type: string, status: 'True' | 'False'): PodCondition {
  const before = prev.conditions?.find((c) => c.type === type);
  return { type, status, lastTransitionTime: before && before.status === status && before.lastTransitionTime ? before.lastTransitionTime : new Date().toISOString() };
}

/**
 * The device's own conditions (DiskPressure, MemoryPressure) over the stored ones; Ready is the
 * hub's to decide and is kept. lastTransitionTime moves only when a status changes.
 */
function mergeConditions(current: NodeCondition[], reported: Pick<NodeCondition, 'type' | 'status' | 'reason' | 'message'>[], now: string): NodeCondition[] {
  const byType = new Map(current.map((c) => [c.type, c]));
  for (const r of reported) {
    if (r.type === 'Ready') continue;
    const prev = byType.get(r.type);
    byType.set(r.type, { ...r, lastHeartbeatTime: now, lastTransitionTime: prev && prev.status === r.status && prev.lastTransitionTime ? prev.lastTransitionTime : now });
  }
  return [...byType.values()];
}
