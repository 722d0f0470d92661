import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { StepExecutor } from '../../agent/reconcile/execute.js';
import { containerSpecHash, infraSpecHash } from '../../agent/reconcile/hash.js';
import type { ContainerCreateSpec, ContainerRuntime } from '../../agent/runtime/runtime.js';
import { formatResolvConf, parseResolvConf, podHostname, podHostsFile, podResolvConf, type PodDnsContext } from '../../agent/services/dns/resolv.js';
import type { DesiredPod } from '../../shared/protocol/messages.js';
import { validateManifest } from '../../shared/resources/validate.js';

// A pod's resolv.conf, hosts file and hostname, by the kubelet's rules; and the hub's checks of
// hostname, subdomain, dnsPolicy and dnsConfig.

function pod(spec: Partial<DesiredPod['spec']> = {}, name = 'web-7d4f9'): DesiredPod {
  return { uid: `uid-${name}`, name, namespace: 'shop', spec: { containers: [{ name: 'app', image: 'busybox:1' }], ...spec } };
}

const host = parseResolvConf('# made by the network\nnameserver 192.0.2.53\nnameserver 198.51.100.53\nsearch lan example.org\noptions edns0 timeout:2\n');
const ctx: PodDnsContext = { clusterDns: '10.42.1.1', host };

describe('the device\'s resolv.conf', () => {
  it('is read as glibc reads it: nameservers in order, the last search line, options; comments skipped', () => {
    expect(host).toEqual({ nameservers: ['192.0.2.53', '198.51.100.53'], searches: ['lan', 'example.org'], options: ['edns0', 'timeout:2'] });
    expect(parseResolvConf('search a\ndomain b\nnameserver 127.0.0.53 ; stub\n')).toEqual({ nameservers: ['127.0.0.53'], searches: ['b'], options: [] });
  });
});

describe('a pod\'s resolv.conf', () => {
  it('ClusterFirst (the default): the device\'s DNS server, Kubernetes\' search list then the device\'s, ndots:5', () => {
    const conf = podResolvConf(pod(), ctx)!;
    expect(formatResolvConf(conf)).toBe('search shop.svc.cluster.local svc.cluster.local cluster.local lan example.org\nnameserver 10.42.1.1\noptions ndots:5\n');
  });

  it('Default: the device\'s resolver as it is', () => {
    expect(podResolvConf(pod({ dnsPolicy: 'Default' }), ctx)).toEqual(host);
  });

  it('Default with only a loopback stub: the device\'s DNS server stands in, since the stub is not in the pod\'s namespace', () => {
    const stub = { clusterDns: '10.42.1.1', host: parseResolvConf('nameserver 127.0.0.53\nsearch lan\n') };
    expect(podResolvConf(pod({ dnsPolicy: 'Default' }), stub)!.nameservers).toEqual(['10.42.1.1']);
    // A hostNetwork pod shares the device's loopback: the stub works there.
    expect(podResolvConf(pod({ dnsPolicy: 'Default', hostNetwork: true }), stub)!.nameservers).toEqual(['127.0.0.53']);
  });

  it('ClusterFirst on hostNetwork falls back to Default; ClusterFirstWithHostNet does not', () => {
    expect(podResolvConf(pod({ hostNetwork: true }), ctx)).toEqual(host);
    expect(podResolvConf(pod({ hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet' }), ctx)!.nameservers).toEqual(['10.42.1.1']);
  });

  it('without a cluster DNS (no pod CIDR), ClusterFirst falls back to Default, and the engine\'s file is left when nothing asks otherwise', () => {
    expect(podResolvConf(pod(), { host })).toBeUndefined();
    expect(podResolvConf(pod({ dnsConfig: { options: [{ name: 'ndots', value: '2' }] } }), { host })).toEqual({ ...host, options: ['edns0', 'timeout:2', 'ndots:2'] });
  });

  it('None: dnsConfig only', () => {
    expect(podResolvConf(pod({ dnsPolicy: 'None', dnsConfig: { nameservers: ['1.1.1.1'], searches: ['corp.example'], options: [{ name: 'ndots', value: '1' }, { name: 'rotate' }] } }), ctx)).toEqual({ nameservers: ['1.1.1.1'], searches: ['corp.example'], options: ['ndots:1', 'rotate'] });
  });

  it('merges dnsConfig as the kubelet does: nameservers and searches appended without duplicates, an option replacing its namesake', () => {
    const conf = podResolvConf(pod({ dnsConfig: { nameservers: ['10.42.1.1', '9.9.9.9'], searches: ['cluster.local', 'corp.example'], options: [{ name: 'ndots', value: '2' }, { name: 'edns0' }] } }), ctx)!;
    expect(conf.nameservers).toEqual(['10.42.1.1', '9.9.9.9']);
    expect(conf.searches).toEqual(['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'lan', 'example.org', 'corp.example']);
    expect(conf.options).toEqual(['ndots:2', 'edns0']);
  });

  it('cuts a device\'s long lists to a resolver\'s limits: 3 nameservers, 32 search domains, 2048 characters', () => {
    const many = { clusterDns: '10.42.1.1', host: { nameservers: ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4'], searches: Array.from({ length: 40 }, (_, i) => `d${i}.example`), options: [] } };
    expect(podResolvConf(pod({ dnsPolicy: 'Default' }), many)!.nameservers).toHaveLength(3);
    expect(podResolvConf(pod(), many)!.searches).toHaveLength(32);
    const long = { clusterDns: '10.42.1.1', host: { nameservers: [], searches: Array.from({ length: 10 }, (_, i) => `${String(i).repeat(250)}.example`.slice(0, 253)), options: [] } };
    expect(podResolvConf(pod(), long)!.searches.join(' ').length).toBeLessThanOrEqual(2048);
  });
});

describe('a pod\'s hostname and hosts file', () => {
  it('the hostname is the pod\'s name, or spec.hostname; a name over 63 characters is cut, without a trailing dash', () => {
    expect(podHostname(pod())).toBe('web-7d4f9');
    expect(podHostname(pod({ hostname: 'db-0' }))).toBe('db-0');
    expect(podHostname(pod({}, `${'a'.repeat(62)}-bcd`))).toBe('a'.repeat(62));
  });

  it('the hosts file names the pod\'s address with its hostname, and its FQDN under a subdomain', () => {
    expect(podHostsFile(pod(), '10.42.1.9').split('\n').slice(-2)).toEqual(['10.42.1.9\tweb-7d4f9', '']);
    const fqdn = podHostsFile(pod({ hostname: 'db-0', subdomain: 'db' }), '10.42.1.9');
    expect(fqdn).toContain('127.0.0.1\tlocalhost\n');
    expect(fqdn.trim().split('\n').pop()).toBe('10.42.1.9\tdb-0.db.shop.svc.cluster.local\tdb-0');
  });
});

describe('the hub\'s checks of a pod\'s DNS fields', () => {
  const manifest = (spec: Record<string, unknown>) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'default' }, spec: { containers: [{ name: 'app', image: 'busybox:1' }], ...spec } });
  const errors = (spec: Record<string, unknown>) => validateManifest(manifest(spec)).errors.map((e) => `${e.path}: ${e.message}`);

  it('accepts hostname, subdomain, every dnsPolicy and a dnsConfig within the limits, with no warning', () => {
    const r = validateManifest(manifest({ hostname: 'db-0', subdomain: 'db', dnsPolicy: 'ClusterFirstWithHostNet', dnsConfig: { nameservers: ['1.1.1.1', '2001:db8::1'], searches: ['corp.example.', 'lan'], options: [{ name: 'ndots', value: '2' }, { name: 'edns0' }] } }));
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
  });

  it('refuses a hostname or subdomain that is not a DNS label, naming the field', () => {
    expect(errors({ hostname: 'Db_0' })[0]).toMatch(/^spec\.hostname: /);
    expect(errors({ subdomain: 'a.b' })[0]).toMatch(/^spec\.subdomain: /);
  });

  it('refuses an unknown dnsPolicy, and None without a nameserver', () => {
    expect(errors({ dnsPolicy: 'ClusterFirstish' })[0]).toMatch(/^spec\.dnsPolicy: /);
    expect(errors({ dnsPolicy: 'None' })).toEqual(['spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None']);
  });

  it('refuses more than 3 nameservers, a nameserver that is not an address, more than 32 searches or 2048 characters of them', () => {
    expect(errors({ dnsConfig: { nameservers: ['1.1.1.1', '1.1.1.2', '1.1.1.3', '1.1.1.4'] } })).toEqual(['spec.dnsConfig.nameservers: must not have more than 3 nameservers, not 4']);
    expect(errors({ dnsConfig: { nameservers: ['dns.example'] } })[0]).toMatch(/^spec\.dnsConfig\.nameservers\[0\]: must be a valid IP address/);
    expect(errors({ dnsConfig: { searches: Array.from({ length: 33 }, (_, i) => `d${i}.example`) } })).toEqual(['spec.dnsConfig.searches: must not have more than 32 search paths, not 33']);
    const long = Array.from({ length: 9 }, (_, i) => `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(50)}${i}`);
    expect(errors({ dnsConfig: { searches: long } })[0]).toMatch(/^spec\.dnsConfig\.searches: must not have more than 2048 characters/);
    expect(errors({ dnsConfig: { searches: ['-bad'] } })[0]).toMatch(/^spec\.dnsConfig\.searches\[0\]: invalid search domain/);
    expect(errors({ dnsConfig: { options: [{ name: '' }] } })[0]).toMatch(/^spec\.dnsConfig\.options\[0\]\.name: /);
  });
});

describe('the executor', () => {
  /** The create specs the executor hands the engine for a pod's sandbox and its app container. */
  async function made(p: DesiredPod, podDns?: PodDnsContext): Promise<{ infra: ContainerCreateSpec; app: ContainerCreateSpec; stateDir: string }> {
    const stateDir = mkdtempSync(join(tmpdir(), 'dns-exec-'));
    const specs: ContainerCreateSpec[] = [];
    const runtime = { createContainer: async (spec: ContainerCreateSpec) => (specs.push(spec), `id-${specs.length}`), startContainer: async () => {} } as Partial<ContainerRuntime> as ContainerRuntime;
    const executor = new StepExecutor(runtime, { node: 'edge', stateDir, pauseImage: 'pause:1', podNetwork: 'pods', ...(podDns ? { podDns: () => podDns } : {}) }, pino({ level: 'silent' }), () => {});
    await executor.run({ action: 'createInfra', pod: p, hash: 'h0' });
    await executor.run({ action: 'createContainer', pod: p, container: p.spec.containers[0]!, infraId: 'id-1', hash: 'h1', restartCount: 0, podIP: '10.42.1.9' });
    return { infra: specs[0]!, app: specs[1]!, stateDir };
  }

  it('gives the sandbox the pod\'s hostname, and binds the pod\'s hosts and resolv.conf into each app container', async () => {
    const { infra, app, stateDir } = await made(pod({ hostname: 'db-0', subdomain: 'db' }), ctx);
    try {
      expect(infra.hostname).toBe('db-0');
      expect(app.hostname).toBeUndefined();
      const hosts = `${stateDir}/pods/uid-web-7d4f9/etc-hosts`;
      const resolv = `${stateDir}/pods/uid-web-7d4f9/resolv.conf`;
      expect(app.binds).toEqual(expect.arrayContaining([`${hosts}:/etc/hosts`, `${resolv}:/etc/resolv.conf`]));
      expect(readFileSync(hosts, 'utf8')).toContain('10.42.1.9\tdb-0.db.shop.svc.cluster.local\tdb-0\n');
      expect(readFileSync(resolv, 'utf8')).toContain('nameserver 10.42.1.1\n');
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('leaves a hostNetwork pod the device\'s hostname and hosts file (its resolv.conf: the device\'s), and a container\'s own mount on /etc/hosts in place', async () => {
    const host = await made(pod({ hostNetwork: true }), ctx);
    const own = await made(pod({ volumes: [{ name: 'h', emptyDir: {} }], containers: [{ name: 'app', image: 'busybox:1', volumeMounts: [{ name: 'h', mountPath: '/etc/hosts' }] }] }), ctx);
    try {
      expect(host.infra.hostname).toBeUndefined();
      expect((host.app.binds ?? []).some((b) => b.endsWith(':/etc/hosts'))).toBe(false);
      expect(readFileSync(`${host.stateDir}/pods/uid-web-7d4f9/resolv.conf`, 'utf8')).toBe(formatResolvConf(ctx.host));
      expect((own.app.binds ?? []).filter((b) => b.endsWith(':/etc/hosts'))).toEqual([`${own.stateDir}/pods/uid-web-7d4f9/volumes/h:/etc/hosts`]);
    } finally {
      for (const d of [host.stateDir, own.stateDir]) rmSync(d, { recursive: true, force: true });
    }
  });

  it('without pod DNS (the hollow devices) binds nothing of it', async () => {
    const { app, stateDir } = await made(pod());
    rmSync(stateDir, { recursive: true, force: true });
    expect(app.binds ?? []).toEqual([expect.stringMatching(/:\/run\/flotilla$/)]);
  });

  it('puts none of hostname, subdomain, dnsPolicy or dnsConfig into a spec hash: no running pod is replaced for them', () => {
    const plain = pod();
    const named = pod({ hostname: 'db-0', subdomain: 'db', dnsPolicy: 'None', dnsConfig: { nameservers: ['1.1.1.1'] } });
    expect(infraSpecHash(named, 'pause:1', 'pods')).toBe(infraSpecHash(plain, 'pause:1', 'pods'));
    const infra = infraSpecHash(plain, 'pause:1', 'pods');
    expect(containerSpecHash(named, named.spec.containers[0]!, infra)).toBe(containerSpecHash(plain, plain.spec.containers[0]!, infra));
  });
});
