import * as z from 'zod';
import { DEFAULT_MAX_PACKET_BYTES } from '../shared/protocol/bounds.js';
import { DEFAULT_CLUSTER_CIDR, DEFAULT_NODE_CIDR_MASK_SIZE } from '../shared/protocol/network.js';
import { DEFAULT_TOPIC_PREFIX } from '../shared/protocol/topics.js';
import { fieldErrorsFromZod } from '../shared/resources/fields.js';
import { parsePodNetworkSettings } from './network/ipam.js';
import { DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, parseServiceNetworkSettings } from './services/allocator.js';

/** The hub's configuration: a schema with defaults, validated once at start, then frozen. */
export const hubConfigSchema = z.object({
  dataDir: z.string().min(1).default('./flotilla-data'),
  /** Loopback unless asked: nothing listens beyond this machine by default. */
  listen: z.string().min(1).default('127.0.0.1'),
  apiPort: z.number().int().min(0).max(65535).default(8080),
  mqttPort: z.number().int().min(0).max(65535).default(1883),
  /** An external MQTT broker (mqtt:// or mqtts://) the hub joins as a client instead of running aedes. */
  brokerUrl: z
    .string()
    .refine((s) => /^mqtts?:\/\/[^/?#]+(:\d+)?\/?$/.test(s) && URL.canParse(s), 'must be mqtt://HOST:PORT or mqtts://HOST:PORT')
    .optional(),
  topicPrefix: z.string().min(1).default(DEFAULT_TOPIC_PREFIX),
  /**
   * The most bytes of one MQTT packet from a device: the embedded broker closes the connection of
   * a client that sends a larger one before reading it, and the hub drops a larger message that
   * an external broker delivers. Not below 1 MiB: an agent keeps its status reports under 768 KiB
   * (shared/protocol/bounds.ts), and a device cut off for a packet would only send it again.
   */
  mqttMaxPacketBytes: z.number().int().min(DEFAULT_MAX_PACKET_BYTES, 'must be at least 1Mi (1048576 bytes)').max(256 * 1024 * 1024).default(DEFAULT_MAX_PACKET_BYTES),
  /** Kubernetes' apiserver's 3 MiB: a Secret or ConfigMap of 1 MiB of data fits, base64 and all. */
  bodyLimitBytes: z.number().int().min(1024).default(3 * 1024 * 1024),
  /** The hub's WireGuard relay between devices (hub/network/relay.ts): auto = on where the hub can make the interface. */
  relay: z.enum(['auto', 'on', 'off']).default('auto'),
  /** WireGuard's own port by default. */
  relayPort: z.number().int().min(1).max(65535).default(51820),
  relayInterface: z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/).default('flotilla-relay'),
  /** What devices are told to reach the relay at; absent: their MQTT URL's host. */
  relayEndpoint: z.object({ host: z.string().min(1), port: z.number().int().min(1).max(65535).optional() }).optional(),
  /**
   * The node lifecycle controller's: silence (no packet from the device, not even its keepalive
   * ping) before Ready turns Unknown, and how long pods stay on a node that is not Ready.
   */
  nodeGraceSeconds: z.number().int().min(1).default(40),
  evictionTimeoutSeconds: z.number().int().min(0).default(300),
  /**
   * Devices' metrics: how long raw samples, 1-minute rollups and 1-hour rollups are kept. Raw
   * samples at least 2 h: an hour of them is rolled up only once that hour is over.
   */
  metricsRawRetentionSeconds: z.number().int().min(7200).default(6 * 3600),
  metricsMinuteRetentionSeconds: z.number().int().min(3600).default(7 * 86400),
  metricsHourRetentionSeconds: z.number().int().min(86400).default(90 * 86400),
  /** The pod network: the IPv4 range every pod address comes from, and the size of each node's block of it (hub/network/ipam.ts checks the two together). */
  clusterCIDR: z.string().default(DEFAULT_CLUSTER_CIDR),
  nodeCIDRMaskSize: z.number().int().default(DEFAULT_NODE_CIDR_MASK_SIZE),
  /** Services: the IPv4 range of their virtual IPs (apart from the cluster CIDR) and the NodePorts' range (hub/services/allocator.ts checks them). */
  serviceCIDR: z.string().default(DEFAULT_SERVICE_CIDR),
  serviceNodePortRange: z.string().default(DEFAULT_NODE_PORT_RANGE),
});

export type HubConfig = Readonly<z.infer<typeof hubConfigSchema>>;

export function loadHubConfig(input: Record<string, unknown>): HubConfig {
  const parsed = hubConfigSchema.safeParse(input);
  if (!parsed.success) {
    const first = fieldErrorsFromZod(parsed.error)[0]!;
    throw new Error(`invalid hub configuration: ${first.path}: ${first.message}`);
  }
  const network = parsePodNetworkSettings(parsed.data.clusterCIDR, parsed.data.nodeCIDRMaskSize);
  if ('error' in network) throw new Error(`invalid hub configuration: ${network.error}`);
  const services = parseServiceNetworkSettings(parsed.data.serviceCIDR, parsed.data.serviceNodePortRange, parsed.data.clusterCIDR);
  if ('error' in services) throw new Error(`invalid hub configuration: ${services.error}`);
  return Object.freeze(parsed.data);
}
