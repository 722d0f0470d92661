import type { DesiredPod } from '../../../shared/protocol/messages.js';
import { MAX_DNS_NAMESERVERS, MAX_DNS_SEARCHES, MAX_DNS_SEARCH_CHARS } from '../../../shared/resources/pod.js';
import { CLUSTER_DOMAIN } from './answer.js';

/**
 * What a pod's /etc/resolv.conf, /etc/hosts and hostname say (docs/ARCHITECTURE.md, 'DNS'),
 * without I/O: the kubelet's rules (pkg/kubelet/network/dns/dns.go, and its managed hosts file).
 */

export interface ResolvConf {
  nameservers: string[];
  searches: string[];
  options: string[];
}

/** The lines of a resolv.conf that matter (the last `search` or `domain` line wins, as in glibc). */
export function parseResolvConf(text: string): ResolvConf {
  const out: ResolvConf = { nameservers: [], searches: [], options: [] };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    if (!line) continue;
    const [key, ...fields] = line.split(/\s+/);
    if (key === 'nameserver' && fields[0]) out.nameservers.push(fields[0]);
    else if (key === 'search' || key === 'domain') out.searches = fields.filter((f) => f !== '.');
    else if (key === 'options') out.options.push(...fields);
  }
  return out;
}

export function formatResolvConf(c: ResolvConf): string {
  const lines: string[] = [];
  if (c.searches.length) lines.push(`search ${c.searches.join(' ')}`);
  for (const ns of c.nameservers) lines.push(`nameserver ${ns}`);
  if (c.options.length) lines.push(`options ${c.options.join(' ')}`);
  return `${lines.join('\n')}\n`;
}

export function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1';
}

export interface PodDnsContext {
  /** The device's DNS server (the pod gateway), when the device runs one. */
  clusterDns?: string;
  /** The device's own resolver configuration (--resolv-conf). */
  host: ResolvConf;
  domain?: string;
}

/**
 * The pod's resolv.conf, or undefined to leave the engine's own (no cluster DNS, policy Default
 * and no dnsConfig: the engine already gives the device's resolver). Kubelet's getPodDNSType:
 * ClusterFirst for a hostNetwork pod falls back to Default, ClusterFirstWithHostNet does not,
 * and a cluster policy without a cluster DNS falls back to Default too.
 */
export function podResolvConf(pod: DesiredPod, ctx: PodDnsContext): ResolvConf | undefined {
  const domain = ctx.domain ?? CLUSTER_DOMAIN;
  const policy = pod.spec.dnsPolicy ?? 'ClusterFirst';
  const cluster = ctx.clusterDns !== undefined && (policy === 'ClusterFirstWithHostNet' || (policy === 'ClusterFirst' && !pod.spec.hostNetwork));
  const config = pod.spec.dnsConfig;
  let base: ResolvConf;
  if (policy === 'None') base = { nameservers: [], searches: [], options: [] };
  else if (cluster) {
    base = {
      nameservers: [ctx.clusterDns!],
      searches: [`${pod.namespace}.svc.${domain}`, `svc.${domain}`, domain, ...ctx.host.searches],
      options: ['ndots:5'],
    };
  } else {
    if (!config && ctx.clusterDns === undefined) return undefined;
    // The device's resolver. A loopback stub (systemd-resolved's 127.0.0.53) is unreachable from
    // a pod's own network namespace: the device's DNS server, which forwards to it, stands in.
    let nameservers = ctx.host.nameservers;
    if (!pod.spec.hostNetwork) {
      const reachable = nameservers.filter((n) => !isLoopback(n));
      nameservers = reachable.length ? reachable : ctx.clusterDns !== undefined ? [ctx.clusterDns] : nameservers;
    }
    base = { nameservers, searches: [...ctx.host.searches], options: [...ctx.host.options] };
  }
  if (config) {
    base = {
      nameservers: unique([...base.nameservers, ...(config.nameservers ?? [])]),
      searches: unique([...base.searches, ...(config.searches ?? [])]),
      options: mergeOptions(base.options, (config.options ?? []).map((o) => (o.value !== undefined ? `${o.name}:${o.value}` : o.name))),
    };
  } else base = { ...base, searches: unique(base.searches) };
  return fitLimits(base);
}

/** Kubelet's mergeDNSOptions: an option of dnsConfig replaces the one of the same name. */
function mergeOptions(existing: string[], added: string[]): string[] {
  const byName = new Map<string, string>();
  for (const o of [...existing, ...added]) byName.set(o.split(':')[0]!, o);
  return [...byName.values()];
}

function unique(list: string[]): string[] {
  return [...new Set(list)];
}

/**
 * Kubelet's formDNSConfigFitsLimits: a host's long search list is cut to what a resolver reads
 * (the pod's own dnsConfig was held to the limits at the hub).
 */
function fitLimits(c: ResolvConf): ResolvConf {
  const searches: string[] = [];
  let chars = 0;
  for (const s of c.searches) {
    const more = (searches.length ? 1 : 0) + s.length;
    if (searches.length >= MAX_DNS_SEARCHES || chars + more > MAX_DNS_SEARCH_CHARS) break;
    searches.push(s);
    chars += more;
  }
  return { nameservers: c.nameservers.slice(0, MAX_DNS_NAMESERVERS), searches, options: c.options };
}

/** The pod's hostname: spec.hostname, else its name cut to a label's 63 characters (kubelet's GeneratePodHostNameAndDomain). */
export function podHostname(pod: DesiredPod): string {
  if (pod.spec.hostname) return pod.spec.hostname;
  return pod.name.length <= 63 ? pod.name : pod.name.slice(0, 63).replace(/[-.]+$/, '');
}

/** The pod's domain, with a subdomain: `SUBDOMAIN.NS.svc.DOMAIN`. */
export function podDomain(pod: DesiredPod, domain = CLUSTER_DOMAIN): string | undefined {
  return pod.spec.subdomain ? `${pod.spec.subdomain}.${pod.namespace}.svc.${domain}` : undefined;
}

/** The kubelet's managed /etc/hosts of a pod on the pod network. */
export function podHostsFile(pod: DesiredPod, podIP: string | undefined, domain = CLUSTER_DOMAIN): string {
  const hostname = podHostname(pod);
  const sub = podDomain(pod, domain);
  const lines = [
    '# Kubernetes-managed hosts file.',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
  ];
  if (podIP) lines.push(sub ? `${podIP}\t${hostname}.${sub}\t${hostname}` : `${podIP}\t${hostname}`);
  return `${lines.join('\n')}\n`;
}
