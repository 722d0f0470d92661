import * as z from 'zod';
import { MAX_NAME_LENGTH } from './bounds.js';
import { ingressSpecSchema } from '../resources/ingress.js';

/**
 * The desired set's `ingress` section (docs/PROTOCOL.md, 'Payloads'): present only in the
 * desired set of an ingress device (a node labelled `flotilla.io/ingress=true`), and only
 * there do the certificates and keys of the Ingresses' TLS Secrets travel. Its presence is what
 * turns the device's ingress proxy on; with no Ingress it is empty and the proxy answers 404.
 */

/** One Ingress as the hub stored it; the device reads each on its own (see ingressEntrySchema). */
export const ingressEntrySchema = z.object({
  namespace: z.string().min(1).max(MAX_NAME_LENGTH),
  name: z.string().min(1).max(MAX_NAME_LENGTH),
  spec: ingressSpecSchema,
});

/** A kubernetes.io/tls Secret that an Ingress names: its `tls.crt` and `tls.key`, base64 as in the Secret's data. */
export const ingressCertificateSchema = z.object({
  namespace: z.string().min(1).max(MAX_NAME_LENGTH),
  name: z.string().min(1).max(MAX_NAME_LENGTH),
  cert: z.string().min(1),
  key: z.string().min(1),
  resourceVersion: z.string().optional(),
});

export const desiredIngressSchema = z.object({
  /** Each checked by the device on its own: one it cannot read is logged and left out, the rest are served. */
  ingresses: z.array(z.unknown()),
  certificates: z.array(ingressCertificateSchema),
});

export type IngressEntry = z.infer<typeof ingressEntrySchema>;
export type IngressCertificate = z.infer<typeof ingressCertificateSchema>;
export type DesiredIngress = z.infer<typeof desiredIngressSchema>;
