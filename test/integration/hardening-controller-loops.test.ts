import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { startDockerd, type TestDockerd } from '../harness/dockerd.js';
import { apply } from '../harness/fleet.js';
import { BROKEN_IMAGE, buildTestImages, TEST_IMAGE } from '../harness/images.js';
import { cli, getJson, startAgent, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// Pathological specs that a controller could answer with a create/delete loop: pods pinned by
// spec.nodeName to a node that is missing, NotReady or cordoned; DaemonSets that can never run;
// Jobs whose pods fail at once; a CronJob every minute pinned to a missing node; a nodeSelector
// that matches nothing; pods whose node lifecycle would evict them again and again. All are
// applied at once, each in its own namespace, to a real hub with two real agents; then the
// store's writes are counted for 10 s.
//
// How writes are counted: every store write (create, update, status update, delete, Events
// included) takes the next resourceVersion and appends one row to the store's change log (the
// `changes` table a watch resumes from). The test reads that log from the hub's database file
// (read-only; WAL lets a reader in beside the hub) and counts the rows of the window per
// namespace, which tells the specs apart; the global resourceVersion, read from the API, bounds
// the whole.

const GRACE_S = 4;
const EVICTION_S = 2;
const HEARTBEAT_S = 1;
const WINDOW_MS = 10_000;
const MAX_WRITES = 50;

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}
interface PodJson {
  metadata: { name: string; namespace: string; uid: string };
  spec: { nodeName?: string };
  status?: { phase?: string; conditions?: Condition[] };
}
interface NodeJson {
  metadata: { name: string };
  spec?: { taints?: { key: string; effect: string }[] };
  status?: { conditions?: Condition[] };
}
interface EventJson {
  reason: string;
  message: string;
  count?: number;
  involvedObject: { kind: string; name: string };
}

let dockerd: TestDockerd;
let hub: RunningHub;
const dirs = tempDir('loops');

function container(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'main', image: TEST_IMAGE, command: ['sleep', '3600'], ...extra };
}

function podTemplate(app: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { metadata: { labels: { app } }, spec: { terminationGracePeriodSeconds: 1, containers: [container()], ...spec } };
}

function deployment(name: string, replicas: number, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name }, spec: { replicas, selector: { matchLabels: { app: name } }, template: podTemplate(name, spec) } };
}

function daemonSet(name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name }, spec: { selector: { matchLabels: { app: name } }, template: podTemplate(name, spec) } };
}

const hostPortContainer = container({ ports: [{ containerPort: 18080, hostPort: 18080 }] });

/** Each pathological spec, in the namespace of its name. */
const SPECS: Record<string, Record<string, unknown>[]> = {
  'deploy-missing-node': [deployment('pinned', 2, { nodeName: 'ghost' })],
  'rs-missing-node': [
    { apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: { name: 'pinned' }, spec: { replicas: 2, selector: { matchLabels: { app: 'pinned' } }, template: podTemplate('pinned', { nodeName: 'ghost' }) } },
  ],
  'deploy-notready-node': [deployment('pinned', 2, { nodeName: 'sleepy' })],
  'deploy-cordoned-node': [deployment('pinned', 2, { nodeName: 'corded' })],
  // Many replicas: every change of the fleet retries each waiting pod.
  'deploy-no-node-matches': [deployment('picky', 30, { nodeSelector: { nowhere: 'true' } })],
  'ds-pinned': [daemonSet('pinned', { nodeName: 'ghost' })],
  'ds-impossible': [
    daemonSet('impossible', {
      affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'nowhere', operator: 'In', values: ['true'] }] }] } } },
      tolerations: [{ key: 'never', operator: 'Equal', value: 'x', effect: 'NoSchedule' }],
    }),
  ],
  'ds-hostport-clash': [daemonSet('port-a', { containers: [hostPortContainer] }), daemonSet('port-b', { containers: [hostPortContainer] })],
  'job-fails-at-once': [
    { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'failing' }, spec: { backoffLimit: 100, parallelism: 2, completions: 2, template: { spec: { restartPolicy: 'Never', terminationGracePeriodSeconds: 1, containers: [{ name: 'main', image: BROKEN_IMAGE }] } } } },
  ],
  'job-notready-node': [
    { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'pinned' }, spec: { parallelism: 2, completions: 2, template: { spec: { restartPolicy: 'Never', nodeName: 'sleepy', terminationGracePeriodSeconds: 1, containers: [container()] } } } },
  ],
  'cron-pinned': [
    {
      apiVersion: 'batch/v1',
      kind: 'CronJob',
      metadata: { name: 'every-minute' },
      spec: { schedule: '* * * * *', concurrencyPolicy: 'Allow', jobTemplate: { spec: { template: { spec: { restartPolicy: 'Never', nodeName: 'ghost', terminationGracePeriodSeconds: 1, containers: [container()] } } } } },
    },
  ],
};

function yaml(docs: Record<string, unknown>[]): string {
  return docs.map((d) => JSON.stringify(d)).join('\n---\n');
}

function pods(namespace: string): PodJson[] {
  return getJson<{ items: PodJson[] }>(hub, ['pods', '-n', namespace]).items;
}

function events(namespace: string): EventJson[] {
  return getJson<{ items: EventJson[] }>(hub, ['events', '-n', namespace]).items;
}

function node(name: string): NodeJson {
  return getJson<NodeJson>(hub, ['node', name]);
}

function readyStatus(name: string): string | undefined {
  return node(name).status?.conditions?.find((c) => c.type === 'Ready')?.status;
}

/** The store's resourceVersion, as the API gives it with a list. */
async function resourceVersion(): Promise<number> {
  const res = await fetch(`${hub.apiUrl}/api/v1/namespaces`, { headers: { authorization: `Bearer ${hub.adminToken}` } });
  const body = (await res.json()) as { metadata: { resourceVersion: string } };
  return Number(body.metadata.resourceVersion);
}

/** The store's writes after `fromRv` up to `toRv`, per namespace ('' for nodes), from its change log. */
function writesByNamespace(fromRv: number, toRv: number): { byNamespace: Map<string, number>; detail: Map<string, string[]>; prunedThrough: number } {
  const db = new BetterSqlite3(join(hub.dataDir, 'flotilla.db'), { readonly: true, fileMustExist: true });
  try {
    const prunedThrough = (db.prepare("SELECT value FROM counters WHERE name = 'prunedThrough'").pluck().get() as number | undefined) ?? 0;
    const rows = db.prepare('SELECT namespace, kind, type, count(*) AS n FROM changes WHERE rv > ? AND rv <= ? GROUP BY namespace, kind, type').all(fromRv, toRv) as { namespace: string; kind: string; type: string; n: number }[];
    const byNamespace = new Map<string, number>();
    const detail = new Map<string, string[]>();
    for (const r of rows) {
      byNamespace.set(r.namespace, (byNamespace.get(r.namespace) ?? 0) + r.n);
      detail.set(r.namespace, [...(detail.get(r.namespace) ?? []), `${r.kind} ${r.type} ×${r.n}`]);
    }
    return { byNamespace, detail, prunedThrough };
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'loops' });
  await buildTestImages(dockerd.docker);
  hub = await startHub({ dataDir: join(dirs.path, 'hub'), extraArgs: ['--node-grace', `${GRACE_S}s`, '--eviction-timeout', `${EVICTION_S}s`] });
  for (const [name, role] of [['steady', 'steady'], ['corded', 'corded']]) {
    startAgent({ hub, name: name!, stateDir: join(dirs.path, `state-${name}`), dockerHost: dockerd.dockerHost, labels: { role: role! }, extraArgs: ['--heartbeat', String(HEARTBEAT_S)] });
  }
  // A node registered ahead of its device, which never comes: NotReady (Unknown) after the grace period.
  apply(hub, yaml([{ apiVersion: 'v1', kind: 'Node', metadata: { name: 'sleepy', labels: { role: 'sleepy' } } }]));
  await waitFor('steady and corded Ready', () => readyStatus('steady') === 'True' && readyStatus('corded') === 'True', 60_000);
  expect(cli(hub, ['cordon', 'corded']).code).toBe(0);
  await waitFor('sleepy NotReady and tainted', () => readyStatus('sleepy') === 'Unknown' && node('sleepy').spec?.taints?.some((t) => t.effect === 'NoExecute'), (GRACE_S + 20) * 1000);
}, 180_000);

afterAll(async () => {
  await stopAll();
  await dockerd?.stop();
  if (!process.env.FLOTILLA_TEST_KEEP) dirs.remove();
});

describe('controllers driven with pathological specs', () => {
  it(`write fewer than ${MAX_WRITES} times in ${WINDOW_MS / 1000} s for each spec, against a real hub`, async () => {
    const namespaces = Object.keys(SPECS).map((name) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } }));
    const objects = Object.entries(SPECS).flatMap(([namespace, docs]) => docs.map((d) => ({ ...d, metadata: { ...(d.metadata as object), namespace } })));
    apply(hub, yaml([...namespaces, ...objects]));
    // What applying makes (the first pods, their events, the first eviction timeouts) settles first.
    await new Promise((r) => setTimeout(r, 2 * EVICTION_S * 1000 + 2_000));
    const from = await resourceVersion();
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const to = await resourceVersion();
    const { byNamespace, detail, prunedThrough } = writesByNamespace(from, to);
    const report = [...byNamespace].map(([ns, n]) => `${ns || '(nodes)'}: ${n} (${detail.get(ns)!.join(', ')})`).join('\n');
    console.log(`store writes in ${WINDOW_MS / 1000} s: ${to - from} in all\n${report}`);
    expect(prunedThrough, `the change log was pruned inside the window: more than 10,000 writes\n${report}`).toBeLessThanOrEqual(from);
    for (const namespace of [...Object.keys(SPECS), '', 'default']) {
      expect(byNamespace.get(namespace) ?? 0, `${namespace || '(nodes)'}\n${report}`).toBeLessThan(MAX_WRITES);
    }
  });

  it('keeps the pods pinned to a missing node Pending, with a condition and an event that say why', () => {
    for (const namespace of ['deploy-missing-node', 'rs-missing-node']) {
      const pinned = pods(namespace);
      expect(pinned).toHaveLength(2);
      for (const p of pinned) {
        expect(p.spec.nodeName).toBe('ghost');
        expect(p.status?.phase).toBe('Pending');
        const scheduled = p.status?.conditions?.find((c) => c.type === 'PodScheduled');
        expect(scheduled).toMatchObject({ status: 'False', reason: 'NodeNotFound' });
        expect(scheduled?.message).toContain('node "ghost" not found');
      }
      const notFound = events(namespace).filter((e) => e.reason === 'NodeNotFound');
      expect(notFound.map((e) => e.involvedObject.name).sort()).toEqual(pinned.map((p) => p.metadata.name).sort());
      // Said once per pod, not once per pass.
      for (const e of notFound) expect(e.count ?? 1).toBe(1);
      const described = cli(hub, ['describe', 'pod', pinned[0]!.metadata.name, '-n', namespace]);
      expect(described.code, described.stderr).toBe(0);
      expect(described.stdout).toMatch(/PodScheduled\s+False\s+node "ghost" not found/);
      expect(described.stdout).toMatch(/Warning\s+NodeNotFound/);
    }
  });

  it('leaves pods pinned to a NotReady node where they are, not Ready, rather than evicting them into a loop', () => {
    for (const namespace of ['deploy-notready-node', 'job-notready-node']) {
      const pinned = pods(namespace);
      expect(pinned).toHaveLength(2);
      for (const p of pinned) {
        expect(p.spec.nodeName).toBe('sleepy');
        expect(p.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'NodeNotReady' });
      }
      expect(events(namespace).filter((e) => e.reason === 'TaintManagerEviction')).toEqual([]);
    }
  });
});
