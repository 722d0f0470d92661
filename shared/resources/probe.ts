import * as z from 'zod';

// Kubernetes' Probe (core/v1): one handler (exec, httpGet or tcpSocket) and the timing around it.
// Defaults are filled in here, at the boundary, as the Kubernetes API server fills them in, so
// the stored pod and the agent see the same numbers.

const portNumber = z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535');

/** A port by number, or by the name of one of the container's ports (an IANA_SVC_NAME, as Kubernetes validates it). */
const probePort = z.union([
  portNumber,
  z.string().regex(/^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'must be a port number or an IANA service name (at most 15 lowercase letters, digits and \'-\', with at least one letter)').refine((s) => !s.includes('--'), 'must not contain \'--\''),
], { error: 'must be a port number or a port name' });

const execAction = z.object({ command: z.array(z.string(), { error: 'is required' }).min(1, 'must not be empty') });

const httpGetAction = z.object({
  path: z.string().optional(),
  port: probePort,
  host: z.string().optional(),
  scheme: z.enum(['HTTP', 'HTTPS']).optional(),
  httpHeaders: z.array(z.object({ name: z.string().min(1, 'is required'), value: z.string() })).optional(),
});

const tcpSocketAction = z.object({ port: probePort, host: z.string().optional() });

function atLeast(min: number, def: number) {
  return z.number({ error: 'must be a number' }).int('must be an integer').min(min, `must be greater than or equal to ${min}`).default(def);
}

const probeBase = z.object({
  exec: execAction.optional(),
  httpGet: httpGetAction.optional(),
  tcpSocket: tcpSocketAction.optional(),
  initialDelaySeconds: atLeast(0, 0),
  periodSeconds: atLeast(1, 10),
  timeoutSeconds: atLeast(1, 1),
  successThreshold: atLeast(1, 1),
  failureThreshold: atLeast(1, 3),
});

/** `kind` decides what Kubernetes' validation adds: liveness and startup probes need successThreshold 1. */
function probeSchema(kind: 'liveness' | 'readiness' | 'startup') {
  return probeBase.superRefine((p, ctx) => {
    const handlers = (['exec', 'httpGet', 'tcpSocket'] as const).filter((h) => p[h] !== undefined);
    if (handlers.length === 0) ctx.addIssue({ code: 'custom', message: 'must specify a handler type (exec, httpGet or tcpSocket)' });
    for (const extra of handlers.slice(1)) ctx.addIssue({ code: 'custom', path: [extra], message: 'may not specify more than 1 handler type' });
    if (kind !== 'readiness' && p.successThreshold !== 1) ctx.addIssue({ code: 'custom', path: ['successThreshold'], message: 'must be 1' });
  });
}

export const livenessProbeSchema = probeSchema('liveness');
export const readinessProbeSchema = probeSchema('readiness');
export const startupProbeSchema = probeSchema('startup');

export type Probe = z.infer<typeof probeBase>;
export type ProbeKind = 'liveness' | 'readiness' | 'startup';
