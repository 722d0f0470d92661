import * as z from 'zod';
import { DEFAULT_TOPIC_PREFIX } from '../shared/protocol/topics.js';
import { fieldErrorsFromZod } from '../shared/resources/fields.js';

/** The hub's configuration: a schema with defaults, validated once at start, then frozen. */
export const hubConfigSchema = z.object({
  dataDir: z.string().min(1).default('./flotilla-data'),
  /** Loopback unless asked: nothing listens beyond this machine by default. */
  listen: z.string().min(1).default('127.0.0.1'),
  apiPort: z.number().int().min(0).max(65535).default(8080),
  mqttPort: z.number().int().min(0).max(65535).default(1883),
  topicPrefix: z.string().min(1).default(DEFAULT_TOPIC_PREFIX),
  bodyLimitBytes: z.number().int().min(1024).default(1024 * 1024),
  /** Reserved for the node-lifecycle controller: silence before Ready turns Unknown, and eviction. */
  nodeGraceSeconds: z.number().int().min(1).default(40),
  evictionTimeoutSeconds: z.number().int().min(0).default(300),
});

export type HubConfig = Readonly<z.infer<typeof hubConfigSchema>>;

export function loadHubConfig(input: Record<string, unknown>): HubConfig {
  const parsed = hubConfigSchema.safeParse(input);
  if (!parsed.success) {
    const first = fieldErrorsFromZod(parsed.error)[0]!;
    throw new Error(`invalid hub configuration: ${first.path}: ${first.message}`);
  }
  return Object.freeze(parsed.data);
}
