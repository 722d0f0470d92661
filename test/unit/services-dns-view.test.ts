import { describe, expect, it } from 'vitest';
import type { ServiceLookup } from '../../agent/services/dns/answer.js';
import { AnsweredServices } from '../../agent/services/dns/view.js';
import type { EndpointAnnouncement, ServiceAnnouncement } from '../../shared/protocol/services.js';

// What the DNS server names lags the service book by the proxy's sync: a Service is named once
// take() has its key, as the book has it then; endpoints are the book's as they are.

function svc(name: string, clusterIP: string): ServiceAnnouncement {
  return { v: 1, namespace: 'default', name, uid: `u-${name}`, type: 'ClusterIP', clusterIP, ports: [{ protocol: 'TCP', port: 80, targetPort: 8080 }], generation: 1 };
}

function book(): ServiceLookup & { svc: Map<string, ServiceAnnouncement>; eps: Map<string, Map<string, EndpointAnnouncement>> } {
  const s = new Map<string, ServiceAnnouncement>();
  const e = new Map<string, Map<string, EndpointAnnouncement>>();
  return {
    svc: s,
    eps: e,
    services: () => s,
    service: (ns, name) => s.get(`${ns}/${name}`),
    endpoints: (ns, name) => e.get(`${ns}/${name}`) ?? new Map(),
  };
}

describe('AnsweredServices', () => {
  it('names a Service only once its key is taken, as the book has it then', () => {
    const b = book();
    const view = new AnsweredServices(b);
    b.svc.set('default/store', svc('store', '10.43.0.10'));
    expect(view.service('default', 'store')).toBeUndefined();
    expect(view.services().size).toBe(0);
    view.take(['default/store']);
    expect(view.service('default', 'store')?.clusterIP).toBe('10.43.0.10');
    // A later change of the book waits for the next take.
    b.svc.set('default/store', svc('store', '10.43.0.11'));
    expect(view.service('default', 'store')?.clusterIP).toBe('10.43.0.10');
    view.take(new Set(['default/store']));
    expect(view.service('default', 'store')?.clusterIP).toBe('10.43.0.11');
  });

  it('forgets a Service the book no longer has when its key is taken, and leaves the others', () => {
    const b = book();
    const view = new AnsweredServices(b);
    b.svc.set('default/a', svc('a', '10.43.0.1'));
    b.svc.set('default/b', svc('b', '10.43.0.2'));
    view.take(['default/a', 'default/b']);
    b.svc.delete('default/a');
    expect(view.service('default', 'a')).toBeDefined();
    view.take(['default/a']);
    expect(view.service('default', 'a')).toBeUndefined();
    expect([...view.services().keys()]).toEqual(['default/b']);
  });

  it('reads endpoints from the book as they are', () => {
    const b = book();
    const view = new AnsweredServices(b);
    const ep: EndpointAnnouncement = { v: 1, ip: '10.42.1.5', node: 'a', ready: true, ports: { '': 8080 }, generation: 1 };
    b.eps.set('default/hl', new Map([['hl-0', ep]]));
    expect([...view.endpoints('default', 'hl').values()]).toEqual([ep]);
  });
});
