import * as z from 'zod';
import { parseCidr, parseIPv4 } from '../net/cidr.js';

/**
 * The network policy of one node, as the hub compiles it for the node's desired set
 * (docs/PROTOCOL.md, 'Payloads'; docs/ARCHITECTURE.md, 'Network policy'). Only the node's own
 * pods that some NetworkPolicy selects are named, by uid (the device knows their IPs); the
 * peers they may talk to are resolved by the hub to addresses, fleet-wide, and named ports to
 * numbers. Ids are stable: a peer's IP appearing changes one set's elements and nothing else.
 */

const id = z.string().min(1).max(512);
const ipv4 = z.string().refine((v) => parseIPv4(v) !== undefined, 'must be an IPv4 address');
const cidr = z.string().refine((v) => !('error' in parseCidr(v, false)), 'must be an IPv4 CIDR');
const port = z.number().int().min(1).max(65535);

/** Addresses of a rule's peers: the pods its selectors pick (their IPs) and its ipBlocks (cidr less except). */
export const policyPeerSetSchema = z.object({
  ips: z.array(ipv4).optional(),
  blocks: z.array(z.object({ cidr, except: z.array(cidr).optional() })).optional(),
});

export const policyPortSchema = z.object({
  protocol: z.enum(['TCP', 'UDP']),
  /** Absent: every port of the protocol. */
  port: port.optional(),
  /** With `port`: the range port..endPort. */
  endPort: port.optional(),
});

/** One rule: traffic from (ingress) or to (egress) the set's addresses, on one of the ports. */
export const policyRuleSchema = z.object({
  /** The id of a set in `sets`; absent: any address. */
  peers: id.optional(),
  /** Absent: every port and protocol. */
  ports: z.array(policyPortSchema).optional(),
});

/**
 * What pods of one profile accept and send. `ingress` present: the pods are isolated for
 * ingress and accept only what one of its rules allows (an empty list: nothing); absent: no
 * policy restricts their ingress. The same for `egress`.
 */
export const policyProfileSchema = z.object({
  ingress: z.array(policyRuleSchema).optional(),
  egress: z.array(policyRuleSchema).optional(),
});

export const desiredPoliciesSchema = z.object({
  sets: z.record(id, policyPeerSetSchema),
  profiles: z.record(id, policyProfileSchema),
  /** The node's pods some policy selects: pod uid → profile id. */
  pods: z.record(id, id),
});

export type DesiredPolicies = z.infer<typeof desiredPoliciesSchema>;
export type PolicyPeerSet = z.infer<typeof policyPeerSetSchema>;
export type PolicyProfile = z.infer<typeof policyProfileSchema>;
export type PolicyRule = z.infer<typeof policyRuleSchema>;
export type PolicyPortRule = z.infer<typeof policyPortSchema>;
