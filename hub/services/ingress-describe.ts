import type { IngressBackend, IngressSpec, IngressStatus } from '../../shared/resources/ingress.js';
import { kv } from '../cli/print.js';

/** `flotilla describe ingress`: kubectl's layout (address, class, default backend, TLS, then each host's paths and backends). */
export function describeIngress(obj: Record<string, unknown>): string[] {
  const spec = (obj.spec ?? {}) as IngressSpec;
  const addresses = ((obj.status as IngressStatus | undefined)?.loadBalancer?.ingress ?? []).map((a) => a.ip ?? a.hostname ?? '').filter(Boolean);
  const lines = [kv('Address', addresses.join(',') || '<none>'), kv('Ingress Class', spec.ingressClassName ?? '<none>'), kv('Default backend', spec.defaultBackend ? backendText(spec.defaultBackend) : '<default>')];
  if (spec.tls?.length) {
    lines.push('TLS:');
    for (const t of spec.tls) lines.push(`  ${t.secretName ?? '<none>'} terminates ${(t.hosts ?? []).join(',') || '<default>'}`);
  }
  lines.push('Rules:', '  Host        Path  Backends', '  ----        ----  --------');
  for (const rule of spec.rules ?? []) {
    lines.push(`  ${rule.host ?? '*'}`);
    for (const p of rule.http?.paths ?? []) lines.push(`              ${p.path ?? '/'} (${p.pathType})  ${backendText(p.backend)}`);
  }
  return lines;
}

function backendText(b: IngressBackend): string {
  return `${b.service.name}:${b.service.port.number ?? b.service.port.name ?? ''}`;
}
