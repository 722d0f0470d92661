import * as z from 'zod';

export const namespaceSpecSchema = z.object({ finalizers: z.array(z.string()).optional() });

export const DEFAULT_NAMESPACE = 'default';
