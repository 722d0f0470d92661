import * as z from 'zod';
import { daemonSetSpecSchema } from './daemonset.js';
import { configMapFieldsSchema, mergeStringData, secretFieldsSchema } from './config.js';
import { eventFieldsSchema } from './event.js';
import { checkDeploymentSpec, deploymentSpecSchema, replicaSetSpecSchema } from './deployment.js';
import { cronJobSpecSchema, jobSpecSchema } from './job.js';
import { endpointSliceFieldsSchema, endpointsFieldsSchema, serviceSpecSchema } from './service.js';
import { ingressSpecSchema } from './ingress.js';
import { namespaceSpecSchema } from './namespace.js';
import { defaultPolicyTypes, networkPolicySpecSchema, type NetworkPolicySpec } from './networkpolicy.js';
import { nodeSpecSchema } from './node.js';
import { podSpecSchema } from './pod.js';
import { ROLLOUT_KIND, rolloutSpecSchema } from './rollout.js';
import type { FieldError } from './fields.js';
import { labelSelectorAsSelector, matches, selectorToString, type LabelSelector } from '../labels/selector.js';

export const API_VERSION = 'flotilla/v1';

export interface KindInfo {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  namespaced: boolean;
  /** apiVersions accepted in manifests: ours, and the Kubernetes one of the same kind. */
  apiVersions: string[];
  nameRule: 'subdomain' | 'label';
  /** A shorter limit on the name than its rule's, where Kubernetes has one (CronJob). */
  maxNameLength?: number;
  /** Where the kind keeps its user-written fields: under `spec`, or at the top level (Event). */
  body: { field: 'spec'; schema: z.ZodType; required: boolean } | { field: 'top'; schema: z.ZodObject };
  /** Checks across fields that the schema cannot express. */
  check?: (body: Record<string, unknown>) => FieldError[];
  /** The write path's rewrite of a valid body before it is stored (Secret: stringData into data; a spec kind's defaults). */
  normalize?: (body: Record<string, unknown>) => Record<string, unknown>;
  /** Written by the hub only: never accepted from a manifest. */
  systemOnly?: boolean;
}

const kinds: KindInfo[] = [
  {
    kind: 'Namespace',
    plural: 'namespaces',
    singular: 'namespace',
    shortNames: ['ns'],
    namespaced: false,
    apiVersions: [API_VERSION, 'v1'],
    nameRule: 'label',
    body: { field: 'spec', schema: namespaceSpecSchema, required: false },
  },
  {
    kind: 'Node',
    plural: 'nodes',
    singular: 'node',
    shortNames: ['no'],
    namespaced: false,
    apiVersions: [API_VERSION, 'v1'],
    nameRule: 'subdomain',
    body: { field: 'spec', schema: nodeSpecSchema, required: false },
  },
  {
    kind: 'Pod',
    plural: 'pods',
    singular: 'pod',
    shortNames: ['po'],
    namespaced: true,
    apiVersions: [API_VERSION, 'v1'],
    nameRule: 'subdomain',
    body: { field: 'spec', schema: podSpecSchema, required: true },
  },
  {
    kind: 'DaemonSet',
    plural: 'daemonsets',
    singular: 'daemonset',
    shortNames: ['ds'],
    namespaced: true,
    apiVersions: [API_VERSION, 'apps/v1'],
    nameRule: 'subdomain',
    body: { field: 'spec', schema: daemonSetSpecSchema, required: true },
    check: (body) => [...checkSelectorMatchesTemplate(body), ...checkRestartAlways(body)],
  },
  {
    kind: 'Deployment',
    plural: 'deployments',
    singular: 'deployment',
    shortNames: ['deploy'],
    namespaced: true,
    apiVersions: [API_VERSION, 'apps/v1'],
    nameRule: 'subdomain',
    body: { field: 'spec', schema: deploymentSpecSchema, required: true },
    check: (body) => [...checkSelectorMatchesTemplate(body), ...checkRestartAlways(body), ...checkDeploymentSpec(body)],
  },
  {
    kind: 'ReplicaSet',
    plural: 'replicasets',
    singular: 'replicaset',
    shortNames: ['rs'],
    namespaced: true,
    apiVersions: [API_VERSION, 'apps/v1'],
    nameRule: 'subdomain',
    body: { field: 'spec', schema: replicaSetSpecSchema, required: true },
    check: (body) => [...checkSelectorMatchesTemplate(body), ...checkRestartAlways(body)],
  },
  {
    kind: 'Job',
    plural: 'jobs',
    singular: 'job',
    shortNames: [],
    namespaced: true,
    apiVersions: [API_VERSION, 'batch/v1'],
    nameRule: 'subdomain',
    body: { field: 'spec', schema: jobSpecSchema, required: true },
    // The selector is optional (the hub selects by controller-uid); one given must select the template.
    check: (body) => (body.selector ? checkSelectorMatchesTemplate(body) : []),
  },
  {
    kind: 'CronJob',
    plural: 'cronjobs',
    singular: 'cronjob',
    shortNames: ['cj'],
    namespaced: true,
    apiVersions: [API_VERSION, 'batch/v1'],
    nameRule: 'subdomain',
    // Kubernetes' limit: the Jobs it makes are named <cronjob>-<11 characters>, within 63.
    maxNameLength: 52,
    body: { field: 'spec', schema: cronJobSpecSchema, required: true },
  },
  {
    kind: 'Service',
    plural: 'services',
    singular: 'service',
    shortNames: ['svc'],
    namespaced: true,
    apiVersions: [API_VERSION, 'v1'],
    nameRule: 'label',
    body: { field: 'spec', schema: serviceSpecSchema, required: true },
  },
  {
    kind: 'Ingress',
    plural: 'ingresses',
    singular: 'ingress',
    shortNames: ['ing'],
    namespaced: true,
    apiVersions: [API_VERSION, 'networking.k8s.io/v1'],
    nameRule: 'subdomain',
    body: { field: 'spec', schema: ingressSpecSchema, required: true },
  },
  {
    kind: 'NetworkPolicy',
    plural: 'networkpolicies',
    singular: 'networkpolicy',
    shortNames: ['netpol'],
    namespaced: true,
    apiVersions: [API_VERSION, 'networking.k8s.io/v1'],
    nameRule: 'subdomain',
    body: { field: 'spec', schema: networkPolicySpecSchema, required: true },
    normalize: (spec) => defaultPolicyTypes(spec as NetworkPolicySpec) as Record<string, unknown>,
  },
  {
    kind: 'Endpoints',
    plural: 'endpoints',
    singular: 'endpoints',
    shortNames: ['ep'],
    namespaced: true,
    apiVersions: [API_VERSION, 'v1'],
    nameRule: 'label',
    body: { field: 'top', schema: endpointsFieldsSchema },
    systemOnly: true,
  },
  {
    kind: 'EndpointSlice',
    plural: 'endpointslices',
    singular: 'endpointslice',
    shortNames: [],
    namespaced: true,
    apiVersions: [API_VERSION, 'discovery.k8s.io/v1'],
    nameRule: 'subdomain',
    body: { field: 'top', schema: endpointSliceFieldsSchema },
    systemOnly: true,
  },
  {
    kind: ROLLOUT_KIND,
    plural: 'rollouts',
    singular: 'rollout',
    shortNames: ['ro'],
    namespaced: true,
    apiVersions: [API_VERSION],
    nameRule: 'subdomain',
    body: { field: 'spec', schema: rolloutSpecSchema, required: true },
    systemOnly: true,
  },
  {
    kind: 'Event',
    plural: 'events',
    singular: 'event',
    shortNames: ['ev'],
    namespaced: true,
    apiVersions: [API_VERSION, 'v1', 'events.k8s.io/v1'],
    nameRule: 'subdomain',
    body: { field: 'top', schema: eventFieldsSchema },
  },
  {
    kind: 'ConfigMap',
    plural: 'configmaps',
    singular: 'configmap',
    shortNames: ['cm'],
    namespaced: true,
    apiVersions: [API_VERSION, 'v1'],
    nameRule: 'subdomain',
    body: { field: 'top', schema: configMapFieldsSchema },
  },
  {
    kind: 'Secret',
    plural: 'secrets',
    singular: 'secret',
    shortNames: [],
    namespaced: true,
    apiVersions: [API_VERSION, 'v1'],
    nameRule: 'subdomain',
    body: { field: 'top', schema: secretFieldsSchema },
    normalize: mergeStringData,
  },
];

const byAnyName = new Map<string, KindInfo>();
for (const k of kinds) {
  for (const alias of [k.kind, k.plural, k.singular, ...k.shortNames]) byAnyName.set(alias.toLowerCase(), k);
}

/** The kind a CLI argument or API path names: `pods`, `pod`, `po`, `Pod`. */
export function lookupKind(name: string): KindInfo | undefined {
  return byAnyName.get(name.toLowerCase());
}

export function kindByPlural(plural: string): KindInfo | undefined {
  const k = byAnyName.get(plural.toLowerCase());
  return k && k.plural === plural.toLowerCase() ? k : undefined;
}

export function allKinds(): readonly KindInfo[] {
  return kinds;
}

/**
 * Kubernetes refuses a workload whose selector does not select its own template ("selector does
 * not match template labels"): matchLabels and matchExpressions alike, as
 * LabelSelectorAsSelector(selector).Matches(template labels).
 */
function checkSelectorMatchesTemplate(body: Record<string, unknown>): FieldError[] {
  const spec = body as { selector?: LabelSelector; template?: { metadata?: { labels?: Record<string, string> } } };
  const labels = spec.template?.metadata?.labels ?? {};
  if (Object.keys(spec.selector?.matchLabels ?? {}).length === 0 && (spec.selector?.matchExpressions?.length ?? 0) === 0) {
    return [{ path: 'spec.selector', message: 'empty selector is invalid for a workload' }];
  }
  let selector;
  try {
    selector = labelSelectorAsSelector(spec.selector);
  } catch {
    return []; // the selector's own error is reported by its schema
  }
  if (matches(selector, labels)) return [];
  const unmet = selector.requirements.find((r) => !matches({ requirements: [r] }, labels));
  const text = unmet ? selectorToString({ requirements: [unmet] }) : '';
  const which = !unmet ? '' : unmet.operator === 'In' && unmet.values.length === 1 ? ` (${text} is missing)` : ` ('${text}' does not hold)`;
  return [{ path: 'spec.template.metadata.labels', message: `selector does not match template labels${which}` }];
}

/**
 * The pods of a DaemonSet, Deployment or ReplicaSet are kept running by their controller:
 * Kubernetes allows them restartPolicy Always only.
 */
function checkRestartAlways(body: Record<string, unknown>): FieldError[] {
  const policy = (body as { template?: { spec?: { restartPolicy?: string } } }).template?.spec?.restartPolicy;
  if (policy === undefined || policy === 'Always') return [];
  return [{ path: 'spec.template.spec.restartPolicy', message: `Unsupported value: '${policy}': supported values: 'Always'` }];
}
