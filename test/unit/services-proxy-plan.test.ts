import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { ProxyDataPlane } from '../../agent/services/proxy/nft.js';
import { EMPTY_PIECE, fullRuleset, goneUdpEndpoints, pickEndpoints, planService, transaction, type ProxyNode } from '../../agent/services/proxy/plan.js';
import { ServiceProxy } from '../../agent/services/proxy/proxy.js';
import type { EndpointAnnouncement, ServiceAnnouncement } from '../../shared/protocol/services.js';
import { MemoryServices } from '../harness/service-source.js';

const node: ProxyNode = { name: 'a', site: 'north', podCIDR: '10.42.1.0/24', clusterCIDR: '10.42.0.0/16' };

function svc(over: Partial<ServiceAnnouncement> = {}): ServiceAnnouncement {
  return { v: 1, namespace: 'shop', name: 'store', uid: 'u1', type: 'ClusterIP', clusterIP: '10.43.0.10', ports: [{ protocol: 'TCP', port: 80, targetPort: 8080 }], generation: 1, ...over };
}

function ep(ip: string, nodeName: string, over: Partial<EndpointAnnouncement> = {}): EndpointAnnouncement {
  return { v: 1, ip, node: nodeName, ready: true, ports: { '': 8080 }, generation: 1, ...over };
}

function eps(...list: [string, EndpointAnnouncement][]): Map<string, EndpointAnnouncement> {
  return new Map(list);
}

/** The DNAT targets (ip:port) in a piece's chains: a single target, or a random map's. */
function targets(chains: Map<string, string[]>): string[] {
  const out: string[] = [];
  for (const rules of chains.values()) {
    for (const r of rules) {
      const one = / dnat to (\d+\.\d+\.\d+\.\d+:\d+)$/.exec(r)?.[1];
      if (one) out.push(one);
      const map = / dnat to numgen random mod \d+ map \{ (.*) \}$/.exec(r)?.[1];
      if (map) for (const m of map.matchAll(/\d+ : (\S+) \. (\d+)/g)) out.push(`${m[1]}:${m[2]}`);
    }
  }
  return out.sort();
}

describe('service proxy planner', () => {
  it('maps a ClusterIP port to a Service chain that picks a ready endpoint at random', () => {
    const p = planService(svc(), eps(['p1', ep('10.42.2.11', 'b')], ['p2', ep('10.42.3.12', 'c')], ['p3', ep('10.42.3.13', 'c', { ready: false })]), node);
    const [vip, verdict] = [...p.elements.get('service-ips')!][0]!;
    expect(vip).toBe('10.43.0.10 . tcp . 80');
    const chain = verdict.replace('goto ', '');
    // One chain, no chain per endpoint: the DNAT picks through an anonymous map.
    expect(p.chains.size).toBe(1);
    expect(p.chains.get(chain)).toEqual(['ip saddr != 10.42.0.0/16 jump mark-for-masquerade', 'meta l4proto tcp dnat to numgen random mod 2 map { 0 : 10.42.2.11 . 8080, 1 : 10.42.3.12 . 8080 }']);
    expect(targets(p.chains)).toEqual(['10.42.2.11:8080', '10.42.3.12:8080']);
    expect(p.elements.get('no-endpoint-services')!.size).toBe(0);
    // Hairpin: only this node's endpoints can reach themselves through the Service.
    expect(p.hairpin).toEqual(new Set());
    const local = planService(svc(), eps(['p1', ep('10.42.1.11', 'a')]), node);
    expect(local.hairpin).toEqual(new Set(['10.42.1.11']));
    expect(fullRuleset(node, [local], local.hairpin)).toContain('elements = { 10.42.1.11 . 10.42.1.11 }');
  });

  it('resolves named target ports per endpoint and leaves out endpoints without the port', () => {
    const s = svc({ ports: [{ name: 'web', protocol: 'TCP', port: 80, targetPort: 'http' }, { name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353 }] });
    const p = planService(s, eps(['p1', ep('10.42.2.11', 'b', { ports: { web: 8081, dns: 5353 } })], ['p2', ep('10.42.2.12', 'b', { ports: { web: 9090 } })]), node);
    expect(targets(p.chains)).toEqual(['10.42.2.11:5353', '10.42.2.11:8081', '10.42.2.12:9090']);
    expect([...p.elements.get('service-ips')!.keys()].sort()).toEqual(['10.43.0.10 . tcp . 80', '10.43.0.10 . udp . 53']);
    expect([...p.udp]).toEqual([['10.43.0.10:53', new Set(['10.42.2.11'])]]);
  });

  it('rejects a Service without ready endpoints, and gives a headless one nothing', () => {
    const p = planService(svc(), eps(['p1', ep('10.42.2.11', 'b', { ready: false })]), node);
    expect(p.chains.size).toBe(0);
    expect([...p.elements.get('no-endpoint-services')!]).toEqual([['10.43.0.10 . tcp . 80', 'goto reject-traffic']]);
    const headless = planService(svc({ clusterIP: 'None' }), eps(['p1', ep('10.42.2.11', 'b')]), node);
    expect(headless.chains.size + [...headless.elements.values()].reduce((n, m) => n + m.size, 0)).toBe(0);
  });

  it('ClientIP affinity: a timed set per endpoint, looked up before the random choice and refreshed on the way out', () => {
    const p = planService(svc({ sessionAffinity: 'ClientIP', affinitySeconds: 600 }), eps(['p1', ep('10.42.2.11', 'b')], ['p2', ep('10.42.2.12', 'b')]), node);
    expect([...p.sets.values()]).toEqual([600, 600]);
    const chain = [...p.chains].find(([n]) => n.startsWith('svc-'))![1];
    expect(chain.filter((r) => /^ip saddr @aff-\S+ goto ep-/.test(r))).toHaveLength(2);
    expect(chain.at(-1)).toMatch(/^numgen random mod 2/);
    for (const [name, rules] of p.chains) if (name.startsWith('ep-')) expect(rules).toContainEqual(expect.stringMatching(/^update @aff-\S+ \{ ip saddr \}$/));
    expect(fullRuleset(node, [p])).toContain('flags dynamic,timeout; timeout 600s;');
  });

  it('internalTrafficPolicy Local keeps this node\'s endpoints only; none here rejects', () => {
    const list = eps(['p1', ep('10.42.1.11', 'a')], ['p2', ep('10.42.2.12', 'b')]);
    expect(targets(planService(svc({ internalTrafficPolicy: 'Local' }), list, node).chains)).toEqual(['10.42.1.11:8080']);
    const elsewhere = planService(svc({ internalTrafficPolicy: 'Local' }), list, { ...node, name: 'c' });
    expect(elsewhere.elements.get('no-endpoint-services')!.size).toBe(1);
  });

  it('PreferClose: this node\'s endpoints, else the same site\'s, else all', () => {
    const all = [
      { ip: '10.42.1.11', port: 1, node: 'a', site: 'north' },
      { ip: '10.42.2.12', port: 1, node: 'b', site: 'north' },
      { ip: '10.42.3.13', port: 1, node: 'c', site: 'south' },
    ];
    const close = { local: false, preferClose: true };
    expect(pickEndpoints(all, close, node).map((b) => b.ip)).toEqual(['10.42.1.11']);
    expect(pickEndpoints(all, close, { ...node, name: 'd' }).map((b) => b.ip)).toEqual(['10.42.1.11', '10.42.2.12']);
    expect(pickEndpoints(all, close, { name: 'd', site: 'south' }).map((b) => b.ip)).toEqual(['10.42.3.13']);
    expect(pickEndpoints(all, close, { name: 'd', site: 'west' }).map((b) => b.ip)).toHaveLength(3);
    expect(pickEndpoints(all, close, { name: 'd' }).map((b) => b.ip)).toHaveLength(3);
    expect(pickEndpoints(all, { local: false, preferClose: false }, node)).toHaveLength(3);
  });

  it('NodePort: any endpoint with masquerade; externalTrafficPolicy Local keeps the client address and drops without a local endpoint', () => {
    const s = svc({ type: 'NodePort', ports: [{ protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }] });
    const list = eps(['p1', ep('10.42.2.12', 'b')]);
    const cluster = planService(s, list, node);
    const ext = cluster.elements.get('service-nodeports')!.get('tcp . 30080')!.replace('goto ', '');
    expect(cluster.chains.get(ext)).toEqual(['jump mark-for-masquerade', 'meta l4proto tcp dnat to 10.42.2.12:8080']);

    const local = planService({ ...s, externalTrafficPolicy: 'Local' }, list, node);
    expect(local.elements.get('service-nodeports')!.size).toBe(0);
    expect([...local.elements.get('no-endpoint-nodeports')!]).toEqual([['tcp . 30080', 'drop']]);
    // The virtual IP still reaches b's endpoint: externalTrafficPolicy is for external traffic only.
    expect(local.elements.get('service-ips')!.size).toBe(1);

    const here = planService({ ...s, externalTrafficPolicy: 'Local' }, eps(['p1', ep('10.42.1.12', 'a')], ['p2', ep('10.42.2.12', 'b')]), node);
    const hereExt = here.elements.get('service-nodeports')!.get('tcp . 30080')!.replace('goto ', '');
    expect(here.chains.get(hereExt)!.some((r) => r.includes('mark-for-masquerade'))).toBe(false);
    expect(here.chains.get(hereExt)).toEqual(['meta l4proto tcp dnat to 10.42.1.12:8080']);
  });

  it('the full script declares the maps, the base chains and every Service\'s chains, replacing the table in one go', () => {
    const script = fullRuleset(node, [planService(svc(), eps(['p1', ep('10.42.2.11', 'b')]), node)]);
    expect(script.startsWith('table ip flotilla-svc\ndelete table ip flotilla-svc\ntable ip flotilla-svc {\n  comment "flotilla-svc v1 node=a pod=10.42.1.0/24 cluster=10.42.0.0/16"')).toBe(true);
    expect(script).toContain('ip daddr . meta l4proto . th dport vmap @service-ips');
    expect(script).toContain('fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports');
    expect(script).toContain('ip daddr 10.42.0.0/16 snat to 10.42.1.1');
    expect(script).toContain('10.43.0.10 . tcp . 80 : goto svc-');
    expect(script).not.toMatch(/flotilla-policy|table ip flotilla[ \n{]/);
  });

  it('one endpoint change is a transaction on that Service\'s chain and nothing else', () => {
    const before = planService(svc(), eps(['p1', ep('10.42.2.11', 'b')], ['p2', ep('10.42.2.12', 'b')]), node);
    const after = planService(svc(), eps(['p1', ep('10.42.2.11', 'b')], ['p2', ep('10.42.2.12', 'b')], ['p3', ep('10.42.2.13', 'b')]), node);
    const chain = [...after.chains.keys()][0]!;
    expect(transaction([{ before, after }])).toEqual([
      `flush chain ip flotilla-svc ${chain}`,
      `add rule ip flotilla-svc ${chain} ip saddr != 10.42.0.0/16 jump mark-for-masquerade`,
      `add rule ip flotilla-svc ${chain} meta l4proto tcp dnat to numgen random mod 3 map { 0 : 10.42.2.11 . 8080, 1 : 10.42.2.12 . 8080, 2 : 10.42.2.13 . 8080 }`,
    ]);
    expect(transaction([{ before: after, after }])).toEqual([]);

    // The last endpoint goes: the virtual IP moves to the reject map, the chain goes after nothing refers to it.
    const down = transaction([{ before: after, after: planService(svc(), eps(), node) }]);
    expect(down).toEqual([
      'delete element ip flotilla-svc service-ips { 10.43.0.10 . tcp . 80 }',
      'add element ip flotilla-svc no-endpoint-services { 10.43.0.10 . tcp . 80 : goto reject-traffic }',
      `flush chain ip flotilla-svc ${chain}`,
      `delete chain ip flotilla-svc ${chain}`,
    ]);
  });

  it('with affinity, endpoint chains and sets come before the Service chain that refers to them, and go after', () => {
    const s = svc({ sessionAffinity: 'ClientIP' });
    const before = planService(s, eps(['p1', ep('10.42.2.11', 'b')]), node);
    const after = planService(s, eps(['p2', ep('10.42.2.12', 'b')]), node);
    const cmds = transaction([{ before, after }]);
    const idx = (re: RegExp) => cmds.findIndex((c) => re.test(c));
    expect(idx(/^add set ip flotilla-svc aff-\S+10\.42\.2\.12/)).toBe(0);
    expect(idx(/^add chain ip flotilla-svc ep-\S+10\.42\.2\.12/)).toBeLessThan(idx(/^flush chain ip flotilla-svc svc-/));
    expect(idx(/^delete chain ip flotilla-svc ep-\S+10\.42\.2\.11/)).toBeGreaterThan(idx(/^add rule ip flotilla-svc svc-\S+ goto ep-/));
    expect(cmds.at(-1)).toMatch(/^delete set ip flotilla-svc aff-\S+10\.42\.2\.11/);
  });

  it('a node port moving from one Service to another in one burst: the delete comes before the add', () => {
    const np = (name: string) => svc({ name, type: 'NodePort', clusterIP: name === 'a' ? '10.43.0.1' : '10.43.0.2', ports: [{ protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }] });
    const list = eps(['p1', ep('10.42.2.11', 'b')]);
    const cmds = transaction([
      { before: EMPTY_PIECE, after: planService(np('b'), list, node) },
      { before: planService(np('a'), list, node), after: EMPTY_PIECE },
    ]);
    const del = cmds.findIndex((c) => c.startsWith('delete element ip flotilla-svc service-nodeports { tcp . 30080 }'));
    const add = cmds.findIndex((c) => c.startsWith('add element ip flotilla-svc service-nodeports { tcp . 30080 : goto ext-'));
    expect(del).toBeGreaterThanOrEqual(0);
    expect(add).toBeGreaterThan(del);
  });

  it('names the UDP endpoints a path lost (their conntrack entries are cleared)', () => {
    const s = svc({ ports: [{ protocol: 'UDP', port: 53, targetPort: 53 }] });
    const before = planService(s, eps(['p1', ep('10.42.2.11', 'b', { ports: { '': 53 } })], ['p2', ep('10.42.2.12', 'b', { ports: { '': 53 } })]), node);
    const after = planService(s, eps(['p1', ep('10.42.2.11', 'b', { ports: { '': 53 } })]), node);
    expect(goneUdpEndpoints(before, after)).toEqual([{ path: '10.43.0.10:53', ip: '10.42.2.12' }]);
  });
});

/** A data plane that records what the proxy asks of it and keeps a pretend table. */
class RecordingPlane implements ProxyDataPlane {
  scripts: string[] = [];
  cleared: string[] = [];
  failNext = false;
  exists = false;
  async apply(script: string): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('nft: Error: Could not process rule');
    }
    this.scripts.push(script);
    this.exists = true;
  }
  async list(): Promise<unknown[] | undefined> {
    return this.exists ? [{ table: { name: 'flotilla-svc', comment: 'someone else' } }] : undefined;
  }
  async remove(): Promise<void> {
    this.exists = false;
  }
  async clearUdp(path: string, ip: string): Promise<boolean> {
    this.cleared.push(`${path}>${ip}`);
    return true;
  }
  async hairpin(): Promise<number> {
    return 0;
  }
  close(): void {}
}

class Book extends MemoryServices {}

describe('ServiceProxy', () => {
  const log = pino({ level: 'silent' });

  it('writes the table whole first, then one small transaction per change; a failed transaction leads to a full sync', async () => {
    const book = new Book();
    for (let i = 0; i < 20; i++) {
      book.svcs.set(`shop/s${i}`, svc({ name: `s${i}`, clusterIP: `10.43.0.${i + 1}`, ports: [{ protocol: 'UDP', port: 53, targetPort: 53 }] }));
      book.eps.set(`shop/s${i}`, eps(['p1', ep(`10.42.2.${i + 1}`, 'b', { ports: { '': 53 } })], ['p2', ep(`10.42.3.${i + 1}`, 'c', { ports: { '': 53 } })]));
    }
    const plane = new RecordingPlane();
    const proxy = new ServiceProxy({ source: book, log, plane });
    proxy.changed(book.svcs.keys());
    await proxy.idle();
    expect(plane.scripts).toHaveLength(0); // no node facts yet
    proxy.setNode(node);
    await proxy.idle();
    expect(plane.scripts).toHaveLength(1);
    expect(plane.scripts[0]).toMatch(/^table ip flotilla-svc\ndelete table/);
    expect(proxy.last?.kind).toBe('full');

    book.eps.get('shop/s7')!.delete('p2');
    proxy.changed(['shop/s7']);
    await proxy.idle();
    expect(plane.scripts).toHaveLength(2);
    const tx = plane.scripts[1]!;
    expect(tx).not.toContain('delete table');
    expect(tx.split('\n').filter(Boolean).every((l) => l.includes('shop/s7/'))).toBe(true);
    expect(plane.cleared).toEqual(['10.43.0.8:53>10.42.3.8']);

    plane.failNext = true;
    book.svcs.delete('shop/s3');
    proxy.changed(['shop/s3']);
    await proxy.idle();
    // The failed transaction is retried as a full sync after the back-off.
    proxy.changed([]);
    await new Promise((r) => setTimeout(r, 1_200));
    await proxy.idle();
    expect(plane.scripts.at(-1)).toMatch(/^table ip flotilla-svc\ndelete table/);
    expect(plane.scripts.at(-1)).not.toContain('shop/s3/');
    await proxy.stop();
  });

  it('a periodic check that finds the table gone or changed writes it whole again', async () => {
    const book = new Book();
    book.svcs.set('shop/store', svc());
    book.eps.set('shop/store', eps(['p1', ep('10.42.2.11', 'b')]));
    const plane = new RecordingPlane();
    const proxy = new ServiceProxy({ source: book, log, plane, checkIntervalMs: 50 });
    proxy.start();
    proxy.setNode(node);
    await proxy.idle();
    expect(await proxy.check()).toMatch(/chains, \d+ expected/);
    plane.exists = false;
    expect(await proxy.check()).toBe('the table is gone');
    await new Promise((r) => setTimeout(r, 150));
    await proxy.idle();
    expect(plane.scripts.length).toBeGreaterThanOrEqual(2);
    await proxy.stop();
  });

  it('services off: the table is removed, and nothing else is asked of the kernel', async () => {
    const plane = new RecordingPlane();
    plane.exists = true;
    const proxy = new ServiceProxy({ source: new Book(), log, plane });
    await proxy.remove();
    expect(plane.exists).toBe(false);
    expect(plane.scripts).toEqual([]);
    await proxy.stop();
  });

  it('a node port held by one Service is not taken by another until it is free', async () => {
    const book = new Book();
    const np = (name: string, ip: string) => svc({ name, type: 'NodePort', clusterIP: ip, ports: [{ protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080 }] });
    book.svcs.set('shop/a', np('a', '10.43.0.1'));
    book.svcs.set('shop/b', np('b', '10.43.0.2'));
    for (const k of ['shop/a', 'shop/b']) book.eps.set(k, eps(['p1', ep('10.42.2.11', 'b')]));
    const plane = new RecordingPlane();
    const proxy = new ServiceProxy({ source: book, log, plane });
    proxy.setNode(node);
    await proxy.idle();
    expect(plane.scripts[0]!.match(/tcp \. 30080 :/g)).toHaveLength(1);
    book.svcs.delete('shop/a');
    proxy.changed(['shop/a']);
    await proxy.idle();
    expect(plane.scripts[1]).toMatch(/add element ip flotilla-svc service-nodeports \{ tcp \. 30080 : goto ext-\S+shop\/b\//);
    await proxy.stop();
  });
});
