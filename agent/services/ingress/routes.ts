import type { IngressEntry } from '../../../shared/protocol/ingress.js';
import type { IngressBackend, IngressPathType } from '../../../shared/resources/ingress.js';

/**
 * The ingress's routing table, without I/O (docs/ARCHITECTURE.md, 'Ingress'): the rules of every
 * Ingress merged by host, as one server block per host in nginx. A request picks its host group
 * (an exact host, else the wildcard `*.rest` whose one label it fills, else the rules without a
 * host), then the longest matching path of that group (Exact before Prefix of the same
 * length; Prefix by whole path elements: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`),
 * else the default backend, else nothing (404).
 */

/** Where a request goes: a Service of the Ingress's namespace and one of its ports. */
export interface Route {
  namespace: string;
  service: string;
  /** The Service port by number or by name. */
  port: number | string;
  /** Which Ingress sent it there (for logs). */
  ingress: string;
}

interface PathRule {
  path: string;
  exact: boolean;
  route: Route;
}

export class RouteTable {
  private readonly exactHosts = new Map<string, PathRule[]>();
  /** By the part after `*.`. */
  private readonly wildcardHosts = new Map<string, PathRule[]>();
  private readonly anyHost: PathRule[] = [];
  private readonly fallback: Route | undefined;

  /** `entries` in a stable order (namespace, name): where two Ingresses give the same host and path, the first wins. */
  constructor(entries: readonly IngressEntry[]) {
    let fallback: Route | undefined;
    for (const entry of entries) {
      const ingress = `${entry.namespace}/${entry.name}`;
      if (entry.spec.defaultBackend && !fallback) fallback = routeOf(entry.namespace, entry.spec.defaultBackend, ingress);
      for (const rule of entry.spec.rules ?? []) {
        const host = rule.host?.toLowerCase();
        const group = host === undefined ? this.anyHost : groupOf(host.startsWith('*.') ? this.wildcardHosts : this.exactHosts, host.startsWith('*.') ? host.slice(2) : host);
        for (const p of rule.http?.paths ?? []) {
          const exact = (p.pathType as IngressPathType) === 'Exact';
          // ImplementationSpecific is read as Prefix; a Prefix path's trailing slash is not part of its elements.
          const path = exact ? (p.path ?? '/') : trimSlash(p.path || '/');
          if (group.some((r) => r.exact === exact && r.path === path)) continue;
          group.push({ path, exact, route: routeOf(entry.namespace, p.backend, ingress) });
        }
      }
    }
    this.fallback = fallback;
    // Longest first; of the same length, Exact first.
    for (const group of [...this.exactHosts.values(), ...this.wildcardHosts.values(), this.anyHost]) group.sort((a, b) => b.path.length - a.path.length || Number(b.exact) - Number(a.exact));
  }

  /** The route for a request's Host (a port in it is ignored) and path (a query is ignored); undefined for 404. */
  match(hostHeader: string | undefined, url: string): Route | undefined {
    const host = hostOnly(hostHeader);
    const path = pathOnly(url);
    const group = this.hostGroup(host);
    for (const rule of group) if (pathMatches(rule, path)) return rule.route;
    return this.fallback;
  }

  /** The rules of the host group a host falls in. */
  private hostGroup(host: string): readonly PathRule[] {
    const exact = this.exactHosts.get(host);
    if (exact) return exact;
    const dot = host.indexOf('.');
    if (dot > 0) {
      const wildcard = this.wildcardHosts.get(host.slice(dot + 1));
      if (wildcard) return wildcard;
    }
    return this.anyHost;
  }
}

function groupOf(map: Map<string, PathRule[]>, key: string): PathRule[] {
  let group = map.get(key);
  if (!group) map.set(key, (group = []));
  return group;
}

function routeOf(namespace: string, backend: IngressBackend, ingress: string): Route {
  const port = backend.service.port;
  return { namespace, service: backend.service.name, port: port.number ?? port.name ?? 0, ingress };
}

function trimSlash(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed === '' ? '/' : trimmed;
}

function pathMatches(rule: PathRule, path: string): boolean {
  if (rule.exact) return path === rule.path;
  if (rule.path === '/') return true;
  return path === rule.path || (path.startsWith(rule.path) && path[rule.path.length] === '/');
}

/** The host of a Host header, lower case, without a port (`[v6]:port` too). */
export function hostOnly(header: string | undefined): string {
  if (!header) return '';
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.indexOf(':');
  return (colon >= 0 ? h.slice(0, colon) : h).replace(/\.$/, '');
}

/** The path of a request target: no query or fragment; an absolute-form target's path; always starting with '/'. */
export function pathOnly(url: string): string {
  let target = url;
  if (/^https?:\/\//i.test(target)) {
    const slash = target.indexOf('/', target.indexOf('//') + 2);
    target = slash < 0 ? '/' : target.slice(slash);
  }
  const end = target.search(/[?#]/);
  const path = end >= 0 ? target.slice(0, end) : target;
  return path.startsWith('/') ? path : `/${path}`;
}

/**
 * The certificate for a TLS server name: an exact host of a `tls` entry, else a wildcard one
 * (`*.example.com` for `a.example.com`); undefined when none (the default certificate).
 */
export function certificateFor<T>(byHost: ReadonlyMap<string, T>, servername: string): T | undefined {
  const name = servername.toLowerCase().replace(/\.$/, '');
  const exact = byHost.get(name);
  if (exact !== undefined) return exact;
  const dot = name.indexOf('.');
  return dot > 0 ? byHost.get(`*${name.slice(dot)}`) : undefined;
}
