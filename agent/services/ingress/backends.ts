import type { EndpointAnnouncement, ServiceAnnouncement } from '../../../shared/protocol/services.js';
import type { Route } from './routes.js';

/** What the ingress reads of the service book (agent/network/services.ts). */
export interface ServiceLookup {
  service(namespace: string, name: string): ServiceAnnouncement | undefined;
  endpoints(namespace: string, name: string): ReadonlyMap<string, EndpointAnnouncement>;
}

export type Pick = { ok: true; address: string; port: number } | { ok: false; reason: string };

/**
 * Picks a ready endpoint of a route's Service, round robin, at the port the endpoint resolved
 * for the Service port the route names (by number or name). The endpoints are reached at their
 * pod IPs, over the overlay for pods on other devices.
 */
export class BackendPicker {
  private readonly next = new Map<string, number>();

  constructor(private readonly book: ServiceLookup) {}

  pick(route: Route): Pick {
    const svc = this.book.service(route.namespace, route.service);
    if (!svc) return { ok: false, reason: `service ${route.namespace}/${route.service} is not known on this device` };
    const port = svc.ports.find((p) => p.protocol === 'TCP' && (typeof route.port === 'number' ? p.port === route.port : p.name === route.port));
    if (!port) return { ok: false, reason: `service ${route.namespace}/${route.service} has no TCP port ${route.port}` };
    const portKey = port.name ?? '';
    const ready: { address: string; port: number }[] = [];
    // In pod-name order, so that the rotation is stable between changes.
    for (const [, e] of [...this.book.endpoints(route.namespace, route.service)].sort(([a], [b]) => a.localeCompare(b))) {
      const target = e.ports[portKey];
      if (e.ready && target !== undefined) ready.push({ address: e.ip, port: target });
    }
    if (ready.length === 0) return { ok: false, reason: `service ${route.namespace}/${route.service} has no ready endpoint` };
    const key = `${route.namespace}/${route.service}/${portKey}`;
    const i = (this.next.get(key) ?? 0) % ready.length;
    this.next.set(key, i + 1);
    return { ok: true, ...ready[i]! };
  }
}
