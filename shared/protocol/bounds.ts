import * as z from 'zod';
import type { NodeReport, PodStatusReport, StatusReport } from './messages.js';

/**
 * Bounds of what a device may send. Every string, array and map of a device message has one, so
 * that no schema-valid message can make the hub store an object of megabytes. They are generous
 * for real use: the status of a device with 100 pods is a few hundred KiB at most, far below the
 * packet limit. The agent fits its own messages to them (fitStatusReport), so that a device never
 * sends what the hub refuses.
 */

/** The most bytes of one MQTT packet a device may send (the embedded broker's default; `flotilla hub --mqtt-max-packet-size`). */
export const DEFAULT_MAX_PACKET_BYTES = 1024 * 1024;
/**
 * The most bytes of a status report the agent sends: under the smallest packet limit a hub takes
 * (1 MiB), with room for the topic and the packet's header. A device whose every container fails
 * with a long message could otherwise send more, be cut off for it, and send it again.
 */
export const MAX_STATUS_REPORT_BYTES = 768 * 1024;
/** Names of objects, namespaces, nodes and containers (a DNS subdomain's 253 characters). */
export const MAX_NAME_LENGTH = 253;
export const MAX_UID_LENGTH = 128;
export const MAX_TIMESTAMP_LENGTH = 64;
/** A reason is a short CamelCase word (Kubernetes' are well under 128 characters). */
export const MAX_REASON_LENGTH = 128;
/** A pod's or container's message: the kubelet caps a termination message at 4096 bytes. */
export const MAX_STATUS_MESSAGE_LENGTH = 4096;
/** A node's messages (the engine's error, its conditions'): they become Events, whose message Kubernetes cuts at 1 KiB. */
export const MAX_NODE_MESSAGE_LENGTH = 1024;
/** Image references and image ids (a registry, a path, a tag and a digest). */
export const MAX_IMAGE_LENGTH = 1024;
/** System facts: OS image, kernel version, engine version… */
export const MAX_INFO_LENGTH = 256;
export const MAX_ADDRESS_LENGTH = 256;
export const MAX_ADDRESSES = 64;
export const MAX_CAPACITY_ENTRIES = 64;
export const MAX_QUANTITY_LENGTH = 64;
export const MAX_PODS_PER_REPORT = 1024;
export const MAX_CONTAINERS_PER_POD = 256;
export const MAX_POD_CONDITIONS = 8;
export const MAX_NODE_CONDITIONS = 8;
/** Labels a device may ask for at join; a label key is at most a 253-character prefix, '/', and 63 characters. */
export const MAX_JOIN_LABELS = 64;
export const MAX_LABEL_KEY_LENGTH = 317;

/** A string of at most `max` characters. */
export function boundedString(max: number): z.ZodString {
  return z.string().max(max);
}

/** A map of at most `maxEntries` entries whose keys and values are bounded strings. */
export function boundedRecord(maxEntries: number, maxKey: number, maxValue: number) {
  return z
    .record(z.string().max(maxKey, `a key has at most ${maxKey} characters`), z.string().max(maxValue))
    .refine((r) => Object.keys(r).length <= maxEntries, `must have at most ${maxEntries} entries`);
}

/** `text` cut to `max` characters, the cut marked; never splits a surrogate pair. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}

function cut<T extends Record<string, unknown>>(obj: T, key: keyof T & string, max: number): T {
  const value = obj[key];
  return typeof value === 'string' && value.length > max ? { ...obj, [key]: truncate(value, max) } : obj;
}

function fitNode(node: NodeReport): NodeReport {
  let out = cut(node, 'engineMessage', MAX_NODE_MESSAGE_LENGTH);
  if (out.conditions) out = { ...out, conditions: out.conditions.slice(0, MAX_NODE_CONDITIONS).map((c) => cut(cut(c, 'message', MAX_NODE_MESSAGE_LENGTH), 'reason', MAX_REASON_LENGTH)) };
  if (out.addresses) out = { ...out, addresses: out.addresses.slice(0, MAX_ADDRESSES).map((a) => cut(a, 'address', MAX_ADDRESS_LENGTH)) };
  const info = { ...out.info };
  for (const key of Object.keys(info) as (keyof typeof info)[]) if (typeof info[key] === 'string') info[key] = truncate(info[key], MAX_INFO_LENGTH);
  return { ...out, info };
}

type ContainerState = PodStatusReport['containerStatuses'][number]['state'];

function fitState(state: ContainerState, message: number): ContainerState {
  const out = { ...state };
  if (out.waiting) out.waiting = cut(cut(out.waiting, 'message', message), 'reason', MAX_REASON_LENGTH);
  if (out.terminated) out.terminated = cut(cut(out.terminated, 'message', message), 'reason', MAX_REASON_LENGTH);
  return out;
}

function fitPod(pod: PodStatusReport, message: number): PodStatusReport {
  const out = cut(cut(pod, 'message', message), 'reason', MAX_REASON_LENGTH);
  return {
    ...out,
    containerStatuses: out.containerStatuses.slice(0, MAX_CONTAINERS_PER_POD).map((c) => ({
      ...cut(c, 'image', MAX_IMAGE_LENGTH),
      state: fitState(c.state, message),
      ...(c.lastState ? { lastState: fitState(c.lastState, message) } : {}),
    })),
    ...(out.conditions ? { conditions: out.conditions.slice(0, MAX_POD_CONDITIONS) } : {}),
  };
}

/** Shorter and shorter cuts of the pods' messages, tried in turn until the report fits MAX_STATUS_REPORT_BYTES. */
const MESSAGE_CUTS = [MAX_STATUS_MESSAGE_LENGTH, 256, 32];

/**
 * A status report cut to the bounds the hub enforces: free text (the engine's error, waiting and
 * termination messages) is truncated, and lists beyond their bound are cut; then, while the
 * whole is over `maxBytes`, the pods' messages are cut shorter, and at last pods are left out
 * (their status stays as last reported). Names and ids are left alone: the hub refuses a report
 * with one too long, which only a broken device would send.
 */
export function fitStatusReport(report: StatusReport, maxBytes = MAX_STATUS_REPORT_BYTES): StatusReport {
  const node = fitNode(report.node);
  const pods = report.pods.slice(0, MAX_PODS_PER_REPORT);
  let fitted: StatusReport = report;
  for (const message of MESSAGE_CUTS) {
    fitted = { ...report, node, pods: pods.map((p) => fitPod(p, message)) };
    if (Buffer.byteLength(JSON.stringify(fitted)) <= maxBytes) return fitted;
  }
  let count = fitted.pods.length;
  while (count > 0 && Buffer.byteLength(JSON.stringify({ ...fitted, pods: fitted.pods.slice(0, count) })) > maxBytes) count = Math.floor(count / 2);
  return { ...fitted, pods: fitted.pods.slice(0, count) };
}
