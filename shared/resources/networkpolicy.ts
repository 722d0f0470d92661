import * as z from 'zod';
import { validatePortName } from '../labels/validation.js';
import { containsCidr, formatCidr, parseCidr, type Cidr } from '../net/cidr.js';
import { labelSelectorSchema } from './meta.js';

/**
 * NetworkPolicy (networking.k8s.io/v1): which traffic the pods it selects accept and send
 * (docs/ARCHITECTURE.md, 'Network policy'). Validated as Kubernetes' ValidateNetworkPolicySpec
 * does, with its messages; IPv4 only, as the pod network is.
 */

const cidrText = z.string().superRefine((v, ctx) => {
  const parsed = parseCidr(v, false);
  if ('error' in parsed) ctx.addIssue({ code: 'custom', message: `Invalid value: '${v}': must be a valid IPv4 CIDR (${parsed.error})` });
});

const ipBlockSchema = z
  .object({ cidr: cidrText, except: z.array(cidrText).optional() })
  // Kubernetes: every except entry must be a strict subset of cidr.
  .superRefine((block, ctx) => {
    const outer = parseCidr(block.cidr, false);
    if ('error' in outer) return;
    block.except?.forEach((text, i) => {
      const inner = parseCidr(text, false);
      if ('error' in inner) return;
      if (!containsCidr(outer, inner) || inner.bits <= outer.bits) ctx.addIssue({ code: 'custom', path: ['except', i], message: `Invalid value: '${text}': must be a strict subset of \`cidr\`` });
    });
  });

const peerSchema = z
  .object({
    podSelector: labelSelectorSchema.optional(),
    namespaceSelector: labelSelectorSchema.optional(),
    ipBlock: ipBlockSchema.optional(),
  })
  // Kubernetes: one of podSelector / namespaceSelector (either or both) or ipBlock, never ipBlock with a selector.
  .superRefine((peer, ctx) => {
    const selectors = Number(peer.podSelector !== undefined) + Number(peer.namespaceSelector !== undefined);
    if (peer.ipBlock !== undefined && selectors > 0) ctx.addIssue({ code: 'custom', message: 'Forbidden: may not specify more than 1 peer type (ipBlock with podSelector or namespaceSelector)' });
    else if (peer.ipBlock === undefined && selectors === 0) ctx.addIssue({ code: 'custom', message: 'Required value: must specify a peer (podSelector, namespaceSelector or ipBlock)' });
  });

const portNumber = z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'Invalid value: must be between 1 and 65535, inclusive').max(65535, 'Invalid value: must be between 1 and 65535, inclusive');

const policyPortSchema = z
  .object({
    protocol: z.enum(['TCP', 'UDP'], { error: "Unsupported value: supported values: 'TCP', 'UDP'" }).optional(),
    /** A number, or the name of a container port of the pod at the other end. Absent: every port. */
    port: z
      .union([
        portNumber,
        z.string().superRefine((v, ctx) => {
          for (const message of validatePortName(v)) ctx.addIssue({ code: 'custom', message: `Invalid value: '${v}': ${message}` });
        }),
      ])
      .optional(),
    endPort: portNumber.optional(),
  })
  // Kubernetes: endPort needs a numeric port, at most endPort.
  .superRefine((p, ctx) => {
    if (p.endPort === undefined) return;
    if (p.port === undefined) ctx.addIssue({ code: 'custom', path: ['endPort'], message: 'Required value: may not be specified when `port` is not specified' });
    else if (typeof p.port === 'string') ctx.addIssue({ code: 'custom', path: ['endPort'], message: 'Invalid value: may not be specified when `port` is non-numeric' });
    else if (p.endPort < p.port) ctx.addIssue({ code: 'custom', path: ['endPort'], message: 'Invalid value: must be greater than or equal to `port`' });
  });

export const networkPolicySpecSchema = z
  .object({
    /** The pods the policy is about, in its namespace; empty selects every pod of the namespace. */
    podSelector: labelSelectorSchema.optional(),
    policyTypes: z.array(z.enum(['Ingress', 'Egress'], { error: "Unsupported value: supported values: 'Ingress', 'Egress'" })).max(2, 'Too many: may not have more than 2 items').optional(),
    ingress: z.array(z.object({ from: z.array(peerSchema).optional(), ports: z.array(policyPortSchema).optional() })).optional(),
    egress: z.array(z.object({ to: z.array(peerSchema).optional(), ports: z.array(policyPortSchema).optional() })).optional(),
  })
  .superRefine((spec, ctx) => {
    const seen = new Set<string>();
    spec.policyTypes?.forEach((t, i) => {
      if (seen.has(t)) ctx.addIssue({ code: 'custom', path: ['policyTypes', i], message: `Duplicate value: '${t}'` });
      seen.add(t);
    });
  });

export type NetworkPolicySpec = z.infer<typeof networkPolicySpecSchema>;
export type NetworkPolicyPeer = z.infer<typeof peerSchema>;
export type NetworkPolicyPort = z.infer<typeof policyPortSchema>;

/**
 * The policy types in force, defaulted as Kubernetes defaults them: Ingress always, Egress when
 * the policy has egress rules.
 */
export function policyTypesOf(spec: NetworkPolicySpec): { ingress: boolean; egress: boolean } {
  if (spec.policyTypes && spec.policyTypes.length > 0) return { ingress: spec.policyTypes.includes('Ingress'), egress: spec.policyTypes.includes('Egress') };
  return { ingress: true, egress: (spec.egress?.length ?? 0) > 0 };
}

/** Kubernetes stores the defaulted policyTypes: the write path does too, so `get -o yaml` shows them. */
export function defaultPolicyTypes(spec: NetworkPolicySpec): NetworkPolicySpec {
  if (spec.policyTypes && spec.policyTypes.length > 0) return spec;
  const types = policyTypesOf(spec);
  return { ...spec, policyTypes: [...(types.ingress ? ['Ingress' as const] : []), ...(types.egress ? ['Egress' as const] : [])] };
}

/** The ipBlock's address ranges: cidr less every except, as inclusive [first, last] pairs of 32-bit numbers, sorted. */
export function ipBlockRanges(block: { cidr: string; except?: string[] }): [number, number][] {
  const outer = parseCidr(block.cidr, false) as Cidr;
  let ranges: [number, number][] = [[outer.base, outer.base + 2 ** (32 - outer.bits) - 1]];
  for (const text of block.except ?? []) {
    const hole = parseCidr(text, false) as Cidr;
    const [lo, hi] = [hole.base, hole.base + 2 ** (32 - hole.bits) - 1];
    ranges = ranges.flatMap(([a, b]): [number, number][] => {
      if (hi < a || lo > b) return [[a, b]];
      const out: [number, number][] = [];
      if (lo > a) out.push([a, lo - 1]);
      if (hi < b) out.push([hi + 1, b]);
      return out;
    });
  }
  return ranges;
}

/** A CIDR as the canonical text (host bits cleared). */
export function canonicalCidr(text: string): string {
  return formatCidr(parseCidr(text, false) as Cidr);
}
