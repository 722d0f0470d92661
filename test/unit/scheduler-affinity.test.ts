import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HOSTNAME_LABEL } from '../../shared/resources/scheduling.js';
import { appTerm, SchedulerFixture, type PodOptions } from './scheduler-builders.js';

let f: SchedulerFixture;
beforeEach(() => {
  f = new SchedulerFixture();
});
afterEach(() => f.close());

const antiOn = (app: string, key: string): PodOptions['affinity'] => ({ podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [appTerm(app, key)] } });
const withApp = (app: string, key: string): PodOptions['affinity'] => ({ podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [appTerm(app, key)] } });
const replicas = (app: string, n: number, o: Omit<PodOptions, 'name'> = {}): PodOptions[] => Array.from({ length: n }, (_, i) => ({ name: `${app}-${i}`, labels: { app }, ...o }));

describe('required pod anti-affinity', () => {
  it('spreads replicas one per device on kubernetes.io/hostname, the node name standing in for a missing label', async () => {
    // One node has the label (as the join sets it), two do not.
    f.nodes({ name: 'pi-1', labels: { [HOSTNAME_LABEL]: 'pi-1' } }, { name: 'pi-2' }, { name: 'pi-3' }).start();
    const web = replicas('web', 4, { affinity: antiOn('web', HOSTNAME_LABEL) });
    await f.schedule(...web);
    expect(f.countByNode(web.map((p) => p.name))).toEqual({ 'pi-1': 1, 'pi-2': 1, 'pi-3': 1, '<none>': 1 });
    const pending = web.find((p) => f.nodeOf(p.name) === undefined)!;
    expect(f.whyPending(pending.name)).toBe("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.");
  });

  it('spreads over the values of another label (one replica per site); nodes without the label are no domain', async () => {
    f.nodes({ name: 'n1', labels: { site: 'north' } }, { name: 'n2', labels: { site: 'north' } }, { name: 's1', labels: { site: 'south' } }, { name: 'lab' }).start();
    const db = replicas('db', 4, { affinity: antiOn('db', 'site') });
    await f.schedule(...db);
    const sites = db.map((p) => f.nodeOf(p.name)).map((n) => (n === undefined ? 'none' : n.startsWith('n') ? 'north' : n.startsWith('s') ? 'south' : 'lab'));
    // The node without a site label is in no domain, so anti-affinity does not keep pods off it.
    expect(sites.sort()).toEqual(['lab', 'lab', 'north', 'south']);
  });

  it('only counts pods in the namespaces of the term', async () => {
    f.nodes({ name: 'a' }).start();
    await f.schedule({ name: 'other-ns', namespace: 'team-b', labels: { app: 'web' } }, { name: 'web', labels: { app: 'web' }, affinity: antiOn('web', HOSTNAME_LABEL) });
    expect(f.nodeOf('web')).toBe('a');
    await f.schedule({ name: 'strict', affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ ...appTerm('web', HOSTNAME_LABEL), namespaces: ['team-b'] }] } } });
    expect(f.nodeOf('strict')).toBeUndefined();
  });

  it("honours bound pods' anti-affinity: a pod they select stays out of their domain", async () => {
    f.nodes({ name: 'a' }, { name: 'b' }).start();
    await f.schedule({ name: 'loner', nodeName: 'a', affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [appTerm('noisy', HOSTNAME_LABEL)] } } });
    await f.schedule({ name: 'noisy-1', labels: { app: 'noisy' } }, { name: 'noisy-2', labels: { app: 'noisy' } });
    expect([f.nodeOf('noisy-1'), f.nodeOf('noisy-2')]).toEqual(['b', 'b']);
    f.hub.store.delete('Node', '', 'b');
    await f.schedule({ name: 'noisy-3', labels: { app: 'noisy' } });
    expect(f.whyPending('noisy-3')).toBe("0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules.");
  });

  it('sees pods move between domains when a node is relabelled, and leave when deleted', async () => {
    f.nodes({ name: 'n1', labels: { site: 'north' } }, { name: 's1', labels: { site: 'south' } }).start();
    await f.schedule({ name: 'db-0', labels: { app: 'db' }, nodeName: 'n1' });
    f.hub.store.mutate('Node', '', 'n1', (n) => ({ ...n, metadata: { ...n.metadata, labels: { site: 'south' } } }));
    f.hub.store.create({ apiVersion: 'flotilla/v1', kind: 'Node', metadata: { name: 'n2', labels: { site: 'north' } }, spec: {}, status: { conditions: [{ type: 'Ready', status: 'True' }] } });
    await f.schedule({ name: 'db-1', labels: { app: 'db' }, affinity: antiOn('db', 'site') });
    expect(f.nodeOf('db-1')).toBe('n2');
    f.hub.store.delete('Pod', 'default', 'db-0');
    await f.schedule({ name: 'db-2', labels: { app: 'db' }, affinity: antiOn('db', 'site') });
    expect(['n1', 's1']).toContain(f.nodeOf('db-2'));
  });
});

describe('bound pods that change', () => {
  it('counts a bound pod under its new labels, and is not misled by status updates', async () => {
    f.nodes({ name: 'a' }, { name: 'b' }).start();
    // b is busier: spread alone would choose a.
    await f.schedule({ name: 'first', labels: { app: 'db' }, nodeName: 'a' }, { name: 'x', nodeName: 'b' }, { name: 'y', nodeName: 'b' });
    f.hub.store.updateStatus('Pod', 'default', 'first', { phase: 'Running' });
    f.hub.store.mutate('Pod', 'default', 'first', (p) => ({ ...p, metadata: { ...p.metadata, labels: { app: 'web' } } }));
    f.hub.store.updateStatus('Pod', 'default', 'first', { phase: 'Running', podIP: '10.0.0.2' });
    await f.schedule({ name: 'web', labels: { app: 'web' }, affinity: antiOn('web', HOSTNAME_LABEL) });
    expect(f.nodeOf('web')).toBe('b');
    expect(f.scheduler.cache.node('a')?.usage.pods).toBe(1);
  });
});

describe('required pod affinity', () => {
  beforeEach(() => {
    f.nodes({ name: 'n1', labels: { site: 'north' } }, { name: 'n2', labels: { site: 'north' } }, { name: 's1', labels: { site: 'south' } }, { name: 'lab' });
  });

  it('puts a pod in the domain of the pods it is affine to', async () => {
    f.start();
    await f.schedule({ name: 'cache', labels: { app: 'cache' }, nodeName: 'n2' });
    await f.schedule(...replicas('api', 3, { affinity: withApp('cache', 'site') }));
    expect(['api-0', 'api-1', 'api-2'].map((p) => f.nodeOf(p)).sort()).toEqual(['n1', 'n1', 'n2']);
  });

  it('keeps a pod Pending while no pod it needs exists, and binds it when one appears', async () => {
    f.start();
    await f.schedule({ name: 'api', affinity: withApp('cache', 'site') });
    expect(f.whyPending('api')).toBe("0/4 nodes are available: 4 node(s) didn't match pod affinity rules.");
    await f.schedule({ name: 'cache', labels: { app: 'cache' }, nodeName: 's1' });
    await new Promise((r) => setImmediate(r));
    await f.settle();
    expect(f.nodeOf('api')).toBe('s1');
  });

  it('lets the first pod of a group affine to itself go to any node that has the topology key, then keeps the rest with it', async () => {
    f.start();
    const group = replicas('peer', 3, { affinity: withApp('peer', 'site') });
    await f.schedule(...group);
    const nodes = group.map((p) => f.nodeOf(p.name));
    expect(nodes).not.toContain(undefined);
    expect(nodes).not.toContain('lab');
    const north = nodes.every((n) => n === 'n1' || n === 'n2');
    expect(north || nodes.every((n) => n === 's1')).toBe(true);
  });
});

describe('preferred pod (anti-)affinity', () => {
  it('prefers the domain of the pods it likes, and away from those it dislikes, by weight', async () => {
    f.nodes({ name: 'n1', labels: { site: 'north' } }, { name: 's1', labels: { site: 'south' } }, { name: 'e1', labels: { site: 'east' } }).start();
    await f.schedule({ name: 'cache', labels: { app: 'cache' }, nodeName: 's1' }, { name: 'batch', labels: { app: 'batch' }, nodeName: 'n1' });
    await f.schedule({
      name: 'api',
      affinity: {
        podAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 50, podAffinityTerm: appTerm('cache', 'site') }] },
        podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: appTerm('batch', 'site') }] },
      },
    });
    // Spread alone would pick e1 (it has no pod); the liking for the cache outweighs that.
    expect(f.nodeOf('api')).toBe('s1');
    await f.schedule({ name: 'shy', affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 10, podAffinityTerm: appTerm('cache', 'site') }] } }, strategy: 'binpack' });
    // binpack would pick s1 (the fullest); the dislike moves it to n1, the fullest of the rest.
    expect(f.nodeOf('shy')).toBe('n1');
  });

  it("counts bound pods' preferred terms that select the pod being placed", async () => {
    f.nodes({ name: 'a' }, { name: 'b' }).start();
    await f.schedule({ name: 'friendly', nodeName: 'b', affinity: { podAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 80, podAffinityTerm: appTerm('web', HOSTNAME_LABEL) }] } } });
    await f.schedule({ name: 'web', labels: { app: 'web' } });
    expect(f.nodeOf('web')).toBe('b');
  });
});
