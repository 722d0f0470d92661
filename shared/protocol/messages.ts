import * as z from 'zod';
import { desiredIngressSchema } from './ingress.js';
import { desiredNetworkSchema, nodeNetworkReportSchema } from './network.js';
import { podSpecSchema } from '../resources/pod.js';
import { fieldErrorsFromZod, type FieldError } from '../resources/fields.js';
import {
  boundedRecord,
  boundedString,
  MAX_ADDRESS_LENGTH,
  MAX_ADDRESSES,
  MAX_CAPACITY_ENTRIES,
  MAX_CONTAINERS_PER_POD,
  MAX_IMAGE_LENGTH,
  MAX_INFO_LENGTH,
  MAX_JOIN_LABELS,
  MAX_LABEL_KEY_LENGTH,
  MAX_NAME_LENGTH,
  MAX_NODE_CONDITIONS,
  MAX_NODE_MESSAGE_LENGTH,
  MAX_POD_CONDITIONS,
  MAX_PODS_PER_REPORT,
  MAX_QUANTITY_LENGTH,
  MAX_REASON_LENGTH,
  MAX_STATUS_MESSAGE_LENGTH,
  MAX_TIMESTAMP_LENGTH,
  MAX_UID_LENGTH,
  truncate,
} from './bounds.js';

/** Version of the payloads below; every payload carries it as `v` (docs/PROTOCOL.md, 'Basics'). */
export const PROTOCOL_VERSION = 1;

const v = z.literal(PROTOCOL_VERSION, { error: `unsupported protocol version (this side speaks v${PROTOCOL_VERSION})` });
const timestamp = z.string().max(MAX_TIMESTAMP_LENGTH);
// What a device sends is bounded field by field (see bounds.ts); what the hub sends is not.
const name = z.string().min(1).max(MAX_NAME_LENGTH);
const reason = boundedString(MAX_REASON_LENGTH);
const statusMessage = boundedString(MAX_STATUS_MESSAGE_LENGTH);
const info = boundedString(MAX_INFO_LENGTH);

export const desiredPodSchema = z.object({
  uid: z.string().min(1),
  name: z.string().min(1),
  namespace: z.string().min(1),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  spec: podSpecSchema,
});

/**
 * A ConfigMap or Secret that a pod on the node refers to. A ConfigMap's `data` is as written
 * (text) and its `binaryData` base64; a Secret's `data` is base64, as in the Kubernetes API.
 */
export const desiredConfigSchema = z.object({
  namespace: z.string().min(1),
  name: z.string().min(1),
  data: z.record(z.string(), z.string()),
  binaryData: z.record(z.string(), z.string()).optional(),
  resourceVersion: z.string(),
});

/**
 * A pod of a desired set that the device could not read (its spec breaks a rule of this side's
 * schema: a hub newer or older than the agent, or a pod stored before a rule existed). The agent
 * leaves that pod's containers as they are, never removes them for it, and says why in an event;
 * every other pod of the set is reconciled as if it were not there.
 */
export interface RefusedPod {
  uid: string;
  name: string;
  namespace: string;
  error: string;
}

const refusedPodSchema = z.object({ uid: z.string(), name: z.string(), namespace: z.string(), error: z.string() });
const podEnvelopeSchema = z.object({ uid: z.string().min(1), name: z.string().min(1), namespace: z.string().min(1) });

/**
 * A desired pod; one whose only fault is a malformed image reference is still read, with that
 * image as it was sent: the agent then reports InvalidImageName for the container, as the
 * kubelet does, and runs the pod's other containers.
 */
function readDesiredPod(entry: unknown): ReturnType<typeof desiredPodSchema.safeParse> {
  const parsed = desiredPodSchema.safeParse(entry);
  if (parsed.success || typeof entry !== 'object' || entry === null) return parsed;
  const badImages = new Map<number, string>();
  for (const issue of parsed.error.issues) {
    const [spec, containers, index, field] = issue.path;
    if (issue.path.length !== 4 || spec !== 'spec' || containers !== 'containers' || field !== 'image' || typeof index !== 'number') return parsed;
    const image = (entry as { spec?: { containers?: { image?: unknown }[] } }).spec?.containers?.[index]?.image;
    if (typeof image !== 'string' || image.trim() === '') return parsed;
    badImages.set(index, image);
  }
  const pod = entry as { spec: { containers: Record<string, unknown>[] } };
  const standIn = { ...pod, spec: { ...pod.spec, containers: pod.spec.containers.map((c, i) => (badImages.has(i) ? { ...c, image: IMAGE_STAND_IN } : c)) } };
  const again = desiredPodSchema.safeParse(standIn);
  if (!again.success) return parsed;
  again.data.spec.containers.forEach((c, i) => {
    const image = badImages.get(i);
    if (image !== undefined) c.image = image;
  });
  return again;
}

/** Stands in for a malformed image while the rest of its pod is read. */
const IMAGE_STAND_IN = 'flotilla.invalid/image-stand-in:1';

/** Each pod of a desired set read on its own: one that cannot be read is refused alone. */
function splitDesiredPods(raw: readonly unknown[], earlier: readonly RefusedPod[]): { pods: DesiredPod[]; refused: RefusedPod[] } {
  const pods: DesiredPod[] = [];
  const refused = [...earlier];
  raw.forEach((entry, i) => {
    const parsed = readDesiredPod(entry);
    if (parsed.success) {
      pods.push(parsed.data);
      return;
    }
    const envelope = podEnvelopeSchema.safeParse(entry);
    const errors = fieldErrorsFromZod(parsed.error).slice(0, MAX_DECODE_ERRORS);
    const error = truncate(errors.map((e) => `${e.path}: ${e.message}`).join('; '), MAX_NODE_MESSAGE_LENGTH);
    refused.push(envelope.success ? { ...envelope.data, error } : { uid: '', name: `pods[${i}]`, namespace: '', error });
  });
  return { pods, refused };
}

/**
 * hub → agent, retained: the whole desired set of one node (level-triggered). Its pods are read
 * one by one: a pod this side cannot read is moved to `refusedPods` rather than failing the set,
 * as the kubelet rejects one pod and runs the rest.
 */
export const desiredStateSchema = z
  .object({
    v,
    rev: z.number().int().min(0),
    pods: z.array(z.unknown()),
    configs: z.array(desiredConfigSchema).default([]),
    secrets: z.array(desiredConfigSchema).default([]),
    /** The node's metrics sampling interval when the hub sets one (the Node's flotilla.io/metrics-interval annotation); else the agent's own. */
    metrics: z.object({ intervalSeconds: z.number().int().min(1).max(3600) }).optional(),
    /** The node's pod network (its pod CIDR in the cluster CIDR), once the hub has allocated one. */
    network: desiredNetworkSchema.optional(),
    /** Ingress devices only: the Ingresses and the certificates they name (shared/protocol/ingress.ts). */
    ingress: desiredIngressSchema.optional(),
    /**
     * The node's network policy (`desiredPoliciesSchema` in policy.ts), read by the agent on its
     * own: a section it cannot read is reported and leaves what is enforced as it is, never
     * refusing the rest of the set.
     */
    policies: z.unknown().optional(),
    /** Written by the agent beside the set it keeps on disk; the hub never sends it. */
    refusedPods: z.array(refusedPodSchema).optional(),
  })
  .transform(({ pods: raw, refusedPods, ...rest }) => {
    const { pods, refused } = splitDesiredPods(raw, refusedPods ?? []);
    return { ...rest, pods, ...(refused.length > 0 ? { refusedPods: refused } : {}) };
  });

const containerStateSchema = z.object({
  running: z.object({ startedAt: timestamp.optional() }).optional(),
  waiting: z.object({ reason: reason.optional(), message: statusMessage.optional() }).optional(),
  terminated: z
    .object({
      exitCode: z.number().int(),
      reason: reason.optional(),
      message: statusMessage.optional(),
      startedAt: timestamp.optional(),
      finishedAt: timestamp.optional(),
    })
    .optional(),
});

export const containerStatusSchema = z.object({
  name: boundedString(MAX_NAME_LENGTH),
  image: boundedString(MAX_IMAGE_LENGTH),
  imageID: boundedString(MAX_IMAGE_LENGTH).optional(),
  containerID: boundedString(MAX_INFO_LENGTH).optional(),
  ready: z.boolean(),
  restartCount: z.number().int().min(0),
  state: containerStateSchema,
  lastState: containerStateSchema.optional(),
});

/**
 * A pod condition the device itself knows of (UpdateLocked, see update-lock.ts), reported as
 * is; Ready and ContainersReady are the hub's to derive from the container statuses.
 */
export const podConditionReportSchema = z.object({
  type: z.string().min(1).max(64),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: reason.optional(),
  message: boundedString(1024).optional(),
  lastTransitionTime: timestamp.optional(),
});

export const podStatusReportSchema = z.object({
  uid: z.string().min(1).max(MAX_UID_LENGTH),
  name: boundedString(MAX_NAME_LENGTH),
  namespace: boundedString(MAX_NAME_LENGTH),
  phase: z.enum(['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown']),
  reason: reason.optional(),
  message: statusMessage.optional(),
  podIP: boundedString(MAX_ADDRESS_LENGTH).optional(),
  startTime: timestamp.optional(),
  containerStatuses: z.array(containerStatusSchema).max(MAX_CONTAINERS_PER_POD),
  conditions: z.array(podConditionReportSchema).max(MAX_POD_CONDITIONS).optional(),
});

export const nodeReportSchema = z.object({
  info: z.object({
    hostname: info,
    operatingSystem: info,
    osImage: info.optional(),
    kernelVersion: info.optional(),
    architecture: info,
    containerRuntimeVersion: info.optional(),
    agentVersion: info,
  }),
  capacity: boundedRecord(MAX_CAPACITY_ENTRIES, MAX_NAME_LENGTH, MAX_QUANTITY_LENGTH),
  addresses: z.array(z.object({ type: z.enum(['Hostname', 'InternalIP', 'ExternalIP']), address: boundedString(MAX_ADDRESS_LENGTH) })).max(MAX_ADDRESSES).optional(),
  /** The container engine answers; when false the node is not ready for pods, with a reason. */
  engineReady: z.boolean(),
  engineMessage: boundedString(MAX_NODE_MESSAGE_LENGTH).optional(),
  /** The device's own conditions besides Ready: DiskPressure and MemoryPressure. */
  conditions: z
    .array(z.object({ type: z.enum(['DiskPressure', 'MemoryPressure']), status: z.enum(['True', 'False', 'Unknown']), reason: reason.optional(), message: boundedString(MAX_NODE_MESSAGE_LENGTH).optional() }))
    .max(MAX_NODE_CONDITIONS)
    .optional(),
  /** The device's side of the pod network; absent from agents older than the overlay. */
  network: nodeNetworkReportSchema.optional(),
});

/** agent → hub: node status, pod statuses, and the revision of the desired set applied. */
export const statusReportSchema = z.object({
  v,
  ts: timestamp,
  observedRev: z.number().int().min(0).nullable(),
  node: nodeReportSchema,
  pods: z.array(podStatusReportSchema).max(MAX_PODS_PER_REPORT),
});

/** agent (and its last will) → hub, retained. */
export const presenceSchema = z.object({
  v,
  state: z.enum(['online', 'offline']),
  ts: timestamp,
  /**
   * Which connection this is about: the same number in a connection's `online` message and in
   * its last will. The hub ignores anything from an older session, so a will delivered late,
   * after the device already reconnected, cannot mark it offline.
   */
  session: z.number().int().min(0),
});

export const joinRequestSchema = z.object({
  v,
  name,
  labels: boundedRecord(MAX_JOIN_LABELS, MAX_LABEL_KEY_LENGTH, MAX_NAME_LENGTH).optional(),
  /**
   * The join token again, so that the hub knows which token's label rule applies whichever
   * broker checked it at CONNECT (a join request without one is refused). Only the hub reads
   * join requests.
   */
  token: z.string().max(1024).optional(),
});

export const joinResponseSchema = z.discriminatedUnion('ok', [
  z.object({ v, ok: z.literal(true), node: z.string(), username: z.string(), password: z.string() }),
  z.object({ v, ok: z.literal(false), error: z.string() }),
]);

/**
 * Bounds of the events channel. A batch holds at most MAX_EVENTS_PER_BATCH events (the agent
 * sends at most one batch a second), and a message is cut to MAX_EVENT_MESSAGE_LENGTH
 * characters, as Kubernetes cuts an Event's message at 1 KiB.
 */
export const MAX_EVENTS_PER_BATCH = 100;
export const MAX_EVENT_MESSAGE_LENGTH = 1024;
export const MAX_EVENT_REASON_LENGTH = 128;

/** Something that happened to a pod on the device (Pulling, Created, Started, Killing, BackOff…). */
export const podEventSchema = z.object({
  /** Absent in the first agents' events, which were all about pods. */
  kind: z.literal('Pod').optional(),
  podUid: z.string().min(1).max(MAX_UID_LENGTH),
  podName: name,
  namespace: name,
  container: name.optional(),
  type: z.enum(['Normal', 'Warning']),
  reason: z.string().min(1).max(MAX_EVENT_REASON_LENGTH),
  message: z.string().max(MAX_EVENT_MESSAGE_LENGTH),
  /** When it happened, by the device's clock. */
  ts: timestamp,
});

/**
 * Something that happened to the device itself (image garbage collection that failed or fell
 * short under DiskPressure…), recorded as an Event about its Node, as the kubelet's node events.
 */
export const nodeEventSchema = z.object({
  kind: z.literal('Node'),
  /** The node it is about: the sender's own (the hub refuses an event about any other). */
  node: name,
  type: z.enum(['Normal', 'Warning']),
  reason: z.string().min(1).max(MAX_EVENT_REASON_LENGTH),
  message: z.string().max(MAX_EVENT_MESSAGE_LENGTH),
  ts: timestamp,
});

/** A device event: about one of its pods (`kind` Pod or absent) or about its node (`kind` Node). */
export const deviceEventSchema = z.discriminatedUnion('kind', [podEventSchema, nodeEventSchema]);

/** agent → hub, QoS 1, best-effort: a batch of device events, and how many the device had to drop since the last batch. */
export const eventBatchSchema = z.object({
  v,
  events: z.array(deviceEventSchema).min(1).max(MAX_EVENTS_PER_BATCH),
  dropped: z.number().int().min(0).optional(),
});

export type DesiredPod = z.infer<typeof desiredPodSchema>;
export type DesiredState = z.infer<typeof desiredStateSchema>;
export type DesiredConfig = z.infer<typeof desiredConfigSchema>;
export type PodStatusReport = z.infer<typeof podStatusReportSchema>;
export type PodConditionReport = z.infer<typeof podConditionReportSchema>;
export type ContainerStatusReport = z.infer<typeof containerStatusSchema>;
export type NodeReport = z.infer<typeof nodeReportSchema>;
export type StatusReport = z.infer<typeof statusReportSchema>;
export type Presence = z.infer<typeof presenceSchema>;
export type JoinRequest = z.infer<typeof joinRequestSchema>;
export type JoinResponse = z.infer<typeof joinResponseSchema>;
export type DevicePodEvent = z.infer<typeof podEventSchema>;
export type DeviceNodeEvent = z.infer<typeof nodeEventSchema>;
export type DeviceEvent = z.infer<typeof deviceEventSchema>;
export type EventBatch = z.infer<typeof eventBatchSchema>;

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

/** Parses an MQTT payload (JSON bytes) against a schema; never throws. */
export function decodePayload<T>(schema: z.ZodType<T>, payload: Uint8Array | string): DecodeResult<T> {
  let json: unknown;
  try {
    json = JSON.parse(typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8'));
  } catch (err) {
    return { ok: false, errors: [{ path: '(payload)', message: `not JSON: ${(err as Error).message}` }] };
  }
  let parsed: ReturnType<typeof schema.safeParse>;
  try {
    parsed = schema.safeParse(json);
  } catch (err) {
    // A refinement or transform that throws on a shape it did not foresee: refused like any bad payload, never thrown at the caller.
    return { ok: false, errors: [{ path: '(root)', message: truncate(`could not be read: ${(err as Error).message}`, MAX_ERROR_PATH_LENGTH) }] };
  }
  if (!parsed.success) {
    // A path names the keys of the payload, which may be a megabyte long, and a payload may
    // break a bound a thousand times: what is logged and answered stays short.
    const errors = fieldErrorsFromZod(parsed.error);
    return { ok: false, errors: errors.slice(0, MAX_DECODE_ERRORS).map((e) => ({ path: truncate(e.path, MAX_ERROR_PATH_LENGTH), message: truncate(e.message, MAX_ERROR_PATH_LENGTH) })) };
  }
  return { ok: true, value: parsed.data };
}

/** The most field errors a refused payload reports, and the most characters of each path or message. */
const MAX_DECODE_ERRORS = 5;
const MAX_ERROR_PATH_LENGTH = 300;

export function encodePayload(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}
