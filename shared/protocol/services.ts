import * as z from 'zod';
import { boundedString, MAX_ADDRESS_LENGTH, MAX_NAME_LENGTH, MAX_UID_LENGTH } from './bounds.js';

/**
 * Services on the pod network (docs/PROTOCOL.md, 'Services'). The hub writes, retained, one
 * message per Service on `network/services/{namespace}/{name}`, one per endpoint (a pod a
 * Service picks) on `network/endpoints/{namespace}/{service}/{pod}`, and a count of both on
 * `network/catalog`. A device reads them all and writes none. An endpoint's change costs every
 * device that one small message (and the catalog's, when an endpoint comes or goes); an empty
 * retained payload clears a Service or an endpoint.
 */

const port = z.number().int().min(1).max(65535);
const portName = z.string().min(1).max(63);

export const servicePortAnnouncementSchema = z.object({
  /** The Service port's name; absent for the single unnamed port. */
  name: portName.optional(),
  protocol: z.enum(['TCP', 'UDP']),
  /** The port on the virtual IP. */
  port,
  /** The pod's port: a number, or a container port's name (each endpoint says what it resolved to). */
  targetPort: z.union([port, portName]),
  /** type NodePort: the port every device accepts on its own addresses. */
  nodePort: port.optional(),
});

/**
 * hub → devices, retained, on `network/services/{namespace}/{name}`: one Service. `clusterIP` is
 * 'None' for a headless Service (DNS answers with its endpoints' addresses; no virtual IP).
 */
export const serviceAnnouncementSchema = z.object({
  v: z.literal(1),
  namespace: z.string().min(1).max(MAX_NAME_LENGTH),
  name: z.string().min(1).max(MAX_NAME_LENGTH),
  uid: boundedString(MAX_UID_LENGTH),
  type: z.enum(['ClusterIP', 'NodePort']),
  clusterIP: boundedString(MAX_ADDRESS_LENGTH),
  ports: z.array(servicePortAnnouncementSchema).max(128),
  /** ClientIP: one client's connections go to one endpoint for `affinitySeconds` (Kubernetes' default 10800). */
  sessionAffinity: z.enum(['None', 'ClientIP']).optional(),
  affinitySeconds: z.number().int().min(1).max(86400).optional(),
  /** Local: clients on a device reach only that device's endpoints. */
  internalTrafficPolicy: z.enum(['Cluster', 'Local']).optional(),
  /** Local (NodePort): a device forwards only to its own endpoints and keeps the client's address. */
  externalTrafficPolicy: z.enum(['Cluster', 'Local']).optional(),
  /** A headless Service's DNS names its endpoints whether ready or not (spec.publishNotReadyAddresses); default: the ready ones only. */
  publishNotReadyAddresses: z.boolean().optional(),
  /** PreferClose: endpoints on the same device first, then the same site, then any (spec.trafficDistribution). */
  trafficDistribution: z.literal('PreferClose').optional(),
  /** Bumped by the hub on every change, so a device can tell an old message from a new one. */
  generation: z.number().int().min(0),
});

/**
 * hub → devices, retained, on `network/endpoints/{namespace}/{service}/{pod}`: one pod a Service
 * picks. `ports` maps each Service port's name ('' for the unnamed one) to the pod's port it
 * resolved to; a port the pod does not have is absent (the pod is not an endpoint for it).
 */
export const endpointAnnouncementSchema = z.object({
  v: z.literal(1),
  /** The pod's IPv4 address. */
  ip: boundedString(MAX_ADDRESS_LENGTH),
  /** The node the pod runs on. */
  node: z.string().min(1).max(MAX_NAME_LENGTH),
  /** The node's site (its label topology.kubernetes.io/zone, else site), for PreferClose. */
  site: z.string().max(MAX_NAME_LENGTH).optional(),
  ready: z.boolean(),
  ports: z.record(z.string().max(63), port),
  /** The pod's hostname under a headless Service named by its spec.subdomain (a DNS name of its own). */
  hostname: z.string().min(1).max(63).optional(),
  generation: z.number().int().min(0),
});

/**
 * hub → devices, retained, on `network/catalog`: how many Services and endpoints there are now.
 * A device back from away holds what it cached; once it has seen this many of each since it
 * connected, whatever it cached and did not see again was deleted meanwhile, and goes.
 */
export const catalogAnnouncementSchema = z.object({
  v: z.literal(1),
  services: z.number().int().min(0),
  endpoints: z.number().int().min(0),
});

export type ServicePortAnnouncement = z.infer<typeof servicePortAnnouncementSchema>;
export type ServiceAnnouncement = z.infer<typeof serviceAnnouncementSchema>;
export type EndpointAnnouncement = z.infer<typeof endpointAnnouncementSchema>;
export type CatalogAnnouncement = z.infer<typeof catalogAnnouncementSchema>;
