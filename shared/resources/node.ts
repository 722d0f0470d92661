import type { NodeNetworkReport } from '../protocol/network.js';
import * as z from 'zod';
import { validateLabelValue, validateQualifiedName } from '../labels/validation.js';

export const nodeSpecSchema = z.object({
  /** Cordoned: no new pods are placed here (DaemonSet pods included, as `kubectl cordon`). */
  unschedulable: z.boolean().optional(),
  /** The node's block of the cluster CIDR, allocated by the hub when the node joins (IPAM). */
  podCIDR: z.string().optional(),
  /** Kubernetes' list form of podCIDR (one IPv4 block here). */
  podCIDRs: z.array(z.string()).optional(),
  taints: z
    .array(
      z.object({
        key: z.string(),
        value: z.string().optional(),
        effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']),
        /** When a NoExecute taint was added (RFC 3339): tolerationSeconds count from it, as in Kubernetes. */
        timeAdded: z.string().optional(),
      }),
    )
    // Kubernetes' validateNodeTaints: the key a label key, the value a label value, one taint per key and effect.
    .superRefine((taints, ctx) => {
      const seen = new Set<string>();
      taints.forEach((t, i) => {
        for (const message of validateQualifiedName(t.key)) ctx.addIssue({ code: 'custom', path: [i, 'key'], message: `invalid key '${t.key}': ${message}` });
        if (t.value) for (const message of validateLabelValue(t.value)) ctx.addIssue({ code: 'custom', path: [i, 'value'], message: `invalid value '${t.value}': ${message}` });
        const key = `${t.key}:${t.effect}`;
        if (seen.has(key)) ctx.addIssue({ code: 'custom', path: [i], message: `taints must be unique by key and effect pair: '${key}' is given twice` });
        seen.add(key);
      });
    })
    .optional(),
});

export type NodeSpec = z.infer<typeof nodeSpecSchema>;
export type Taint = NonNullable<NodeSpec['taints']>[number];

/** Kubernetes' well-known NoExecute taints that the node lifecycle controller puts on a node whose Ready is Unknown / False. */
export const TAINT_NODE_UNREACHABLE = 'node.kubernetes.io/unreachable';
export const TAINT_NODE_NOT_READY = 'node.kubernetes.io/not-ready';

export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface NodeCondition {
  type: 'Ready' | 'DiskPressure' | 'MemoryPressure' | 'NetworkUnavailable' | string;
  status: ConditionStatus;
  reason?: string;
  message?: string;
  lastHeartbeatTime?: string;
  lastTransitionTime?: string;
}

export interface NodeInfo {
  hostname: string;
  operatingSystem: string;
  osImage?: string;
  kernelVersion?: string;
  architecture: string;
  containerRuntimeVersion?: string;
  agentVersion: string;
}

export interface NodeStatus {
  conditions?: NodeCondition[];
  capacity?: Record<string, string>;
  allocatable?: Record<string, string>;
  addresses?: { type: 'Hostname' | 'InternalIP' | 'ExternalIP'; address: string }[];
  nodeInfo?: NodeInfo;
  /** The revision of the desired set the hub last published to this node, and the one the agent has applied. */
  desiredRevision?: number;
  observedRevision?: number;
  lastHeartbeatTime?: string;
  /** The device's side of the pod network, as its agent last reported it. */
  overlay?: NodeNetworkReport;
}

export function nodeCondition(status: NodeStatus | undefined, type: string): NodeCondition | undefined {
  return status?.conditions?.find((c) => c.type === type);
}

export function isNodeReady(status: NodeStatus | undefined): boolean {
  return nodeCondition(status, 'Ready')?.status === 'True';
}
