import { describe, expect, it } from 'vitest';
import { RouteTable, certificateFor, hostOnly, pathOnly } from '../../agent/services/ingress/routes.js';
import { BackendPicker } from '../../agent/services/ingress/backends.js';
import type { IngressEntry } from '../../shared/protocol/ingress.js';
import type { EndpointAnnouncement, ServiceAnnouncement } from '../../shared/protocol/services.js';
import type { IngressSpec } from '../../shared/resources/ingress.js';

const backend = (name: string, port: number | string = 80) => ({ service: { name, port: typeof port === 'number' ? { number: port } : { name: port } } });
const entry = (name: string, spec: IngressSpec, namespace = 'default'): IngressEntry => ({ namespace, name, spec });
const prefix = (path: string, svc: string) => ({ path, pathType: 'Prefix' as const, backend: backend(svc) });
const exact = (path: string, svc: string) => ({ path, pathType: 'Exact' as const, backend: backend(svc) });

function to(table: RouteTable, host: string | undefined, url: string): string | undefined {
  return table.match(host, url)?.service;
}

describe('ingress routing', () => {
  const table = new RouteTable([
    entry('shop', {
      rules: [
        { host: 'shop.example.com', http: { paths: [prefix('/', 'web'), prefix('/api', 'api'), exact('/api', 'api-root'), prefix('/api/v2/', 'api-v2'), { path: '/static', pathType: 'ImplementationSpecific', backend: backend('static') }] } },
        { host: '*.example.com', http: { paths: [prefix('/', 'wild')] } },
        { http: { paths: [prefix('/health', 'health')] } },
      ],
    }),
    entry('zz-later', { defaultBackend: backend('fallback'), rules: [{ host: 'shop.example.com', http: { paths: [prefix('/api', 'shadowed'), prefix('/later', 'later')] } }] }),
  ]);

  it('matches an exact host before a wildcard, and a wildcard covers exactly one label', () => {
    expect(to(table, 'shop.example.com', '/')).toBe('web');
    expect(to(table, 'SHOP.example.com:8443', '/')).toBe('web');
    expect(to(table, 'blog.example.com', '/')).toBe('wild');
    // Two labels are not one: the rules without a host, then the default backend.
    expect(to(table, 'a.b.example.com', '/health')).toBe('health');
    expect(to(table, 'a.b.example.com', '/')).toBe('fallback');
    expect(to(table, 'example.com', '/')).toBe('fallback');
    expect(to(table, undefined, '/health/live')).toBe('health');
  });

  it('takes the longest path, Exact before Prefix of the same length, Prefix by path elements', () => {
    expect(to(table, 'shop.example.com', '/api')).toBe('api-root');
    expect(to(table, 'shop.example.com', '/api/')).toBe('api');
    expect(to(table, 'shop.example.com', '/api/items?x=1')).toBe('api');
    expect(to(table, 'shop.example.com', '/api/v2')).toBe('api-v2');
    expect(to(table, 'shop.example.com', '/api/v2/x')).toBe('api-v2');
    // /api does not match /apix: that falls to /.
    expect(to(table, 'shop.example.com', '/apix')).toBe('web');
    // ImplementationSpecific is read as Prefix.
    expect(to(table, 'shop.example.com', '/static/app.js')).toBe('static');
    expect(to(table, 'shop.example.com', '/staticky')).toBe('web');
  });

  it('merges the rules of several Ingresses for one host; the first by name wins a tie', () => {
    expect(to(table, 'shop.example.com', '/later/x')).toBe('later');
    expect(to(table, 'shop.example.com', '/api/y')).toBe('api');
  });

  it('falls to the default backend, else to nothing (404)', () => {
    const noDefault = new RouteTable([entry('a', { rules: [{ host: 'a.test', http: { paths: [exact('/only', 'only')] } }] })]);
    expect(to(noDefault, 'a.test', '/only')).toBe('only');
    expect(to(noDefault, 'a.test', '/only/more')).toBeUndefined();
    expect(to(noDefault, 'b.test', '/only')).toBeUndefined();
    expect(to(new RouteTable([]), 'x', '/')).toBeUndefined();
  });

  it('keeps the namespace and the port of the route', () => {
    const t = new RouteTable([entry('n', { rules: [{ host: 'n.test', http: { paths: [{ path: '/', pathType: 'Prefix', backend: backend('svc', 'http') }] } }] }, 'shop')]);
    expect(t.match('n.test', '/')).toEqual({ namespace: 'shop', service: 'svc', port: 'http', ingress: 'shop/n' });
  });

  it('reads hosts and request targets as a server does', () => {
    expect(hostOnly('Example.COM.:80')).toBe('example.com');
    expect(hostOnly('[::1]:8080')).toBe('[::1]');
    expect(pathOnly('http://h.test/a/b?c')).toBe('/a/b');
    expect(pathOnly('http://h.test')).toBe('/');
    expect(pathOnly('/x#frag')).toBe('/x');
    expect(pathOnly('*')).toBe('/*');
  });

  it('finds the certificate for a server name: exact, then wildcard', () => {
    const certs = new Map([
      ['shop.example.com', 'shop'],
      ['*.example.com', 'wild'],
    ]);
    expect(certificateFor(certs, 'shop.example.com')).toBe('shop');
    expect(certificateFor(certs, 'Blog.example.com')).toBe('wild');
    expect(certificateFor(certs, 'a.b.example.com')).toBeUndefined();
    expect(certificateFor(certs, 'other.test')).toBeUndefined();
  });
});

describe('the ingress backend picker', () => {
  const svc: ServiceAnnouncement = { v: 1, namespace: 'default', name: 'web', uid: 'u', type: 'ClusterIP', clusterIP: '10.43.0.10', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 'web' }, { name: 'dns', protocol: 'UDP', port: 53, targetPort: 53 }], generation: 1 };
  const ep = (ip: string, ready: boolean, port = 8080): EndpointAnnouncement => ({ v: 1, ip, node: 'n', ready, ports: { http: port }, generation: 1 });
  const endpoints = new Map([
    ['web-a', ep('10.42.1.2', true)],
    ['web-b', ep('10.42.2.2', true, 9090)],
    ['web-c', ep('10.42.3.2', false)],
  ]);
  const book = { service: (ns: string, name: string) => (ns === 'default' && name === 'web' ? svc : undefined), endpoints: (ns: string, name: string) => (ns === 'default' && name === 'web' ? endpoints : new Map()) };

  it('turns between the ready endpoints, at the port each resolved for the Service port named by number or name', () => {
    const picker = new BackendPicker(book);
    const route = { namespace: 'default', service: 'web', port: 80, ingress: 'default/i' };
    const picked = [0, 1, 2, 3].map(() => picker.pick(route));
    expect(picked).toEqual([
      { ok: true, address: '10.42.1.2', port: 8080 },
      { ok: true, address: '10.42.2.2', port: 9090 },
      { ok: true, address: '10.42.1.2', port: 8080 },
      { ok: true, address: '10.42.2.2', port: 9090 },
    ]);
    expect(picker.pick({ ...route, port: 'http' }).ok).toBe(true);
  });

  it('says why there is nothing to pick: no such Service, port (UDP is no HTTP port), or ready endpoint', () => {
    const picker = new BackendPicker(book);
    expect(picker.pick({ namespace: 'default', service: 'nope', port: 80, ingress: 'i' })).toMatchObject({ ok: false, reason: expect.stringContaining('not known') });
    expect(picker.pick({ namespace: 'default', service: 'web', port: 53, ingress: 'i' })).toMatchObject({ ok: false, reason: expect.stringContaining('no TCP port 53') });
    const allDown = new BackendPicker({ service: book.service, endpoints: () => new Map([['web-c', ep('10.42.3.2', false)]]) });
    expect(allDown.pick({ namespace: 'default', service: 'web', port: 80, ingress: 'i' })).toMatchObject({ ok: false, reason: expect.stringContaining('no ready endpoint') });
  });
});
