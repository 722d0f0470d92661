import * as z from 'zod';

export const namespaceSpecSchema = z.object({ finalizers: z.array(z.string()).optional() });

export const DEFAULT_NAMESPACE = 'default';

/** The label Kubernetes puts on every namespace, its value the namespace's name (immutable, set by the hub). */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';
