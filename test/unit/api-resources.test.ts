import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HubError, toHubError, type HubErrorCode } from '../../hub/api/errors.js';
import { ResourceService, mergePatch } from '../../hub/api/resources.js';
import type { Database } from '../../hub/store/db.js';
import { ObjectStore } from '../../hub/store/objects.js';
import { openHubDatabase } from '../../hub/store/schema.js';
import type { ManifestDocument } from '../../shared/resources/manifest.js';

// ---------------------------------------------------------------------------------------------
// Builders

type Fields = Record<string, unknown>;

function podManifest(opts: { name?: string; namespace?: string; labels?: Record<string, string>; image?: string; metadata?: Fields } = {}): Fields {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: opts.name ?? 'web', ...(opts.namespace ? { namespace: opts.namespace } : {}), ...(opts.labels ? { labels: opts.labels } : {}), ...opts.metadata },
    spec: { containers: [{ name: 'app', image: opts.image ?? 'nginx:1.27' }] },
  };
}

function namespaceManifest(name: string): Fields {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name } };
}

function daemonSetManifest(name: string, namespace: string): Fields {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name, namespace },
    spec: { selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'app', image: 'busybox' }] } } },
  };
}

/** Documents as parseManifests names them: one alone is `input`, several are `input (document N)`. */
function docs(...values: Fields[]): ManifestDocument[] {
  return values.map((value, i) => ({ source: values.length > 1 ? `input (document ${i + 1})` : 'input', value }));
}

function caught(fn: () => unknown): HubError {
  try {
    fn();
  } catch (err) {
    return toHubError(err);
  }
  return expect.fail('expected an error');
}

function expectHubError(fn: () => unknown, code: HubErrorCode, message?: string | RegExp): HubError {
  const err = caught(fn);
  expect(err.code, err.message).toBe(code);
  if (message !== undefined) expect(err.message).toMatch(message);
  return err;
}

// ---------------------------------------------------------------------------------------------

describe('ResourceService', () => {
  let db: Database;
  let store: ObjectStore;
  let service: ResourceService;

  beforeEach(() => {
    db = openHubDatabase(':memory:');
    store = new ObjectStore(db);
    store.create({ apiVersion: 'flotilla/v1', kind: 'Namespace', metadata: { name: 'default' }, spec: {} });
    service = new ResourceService(store, pino({ level: 'silent' }));
  });
  afterEach(() => db.close());

  const podNames = (namespace?: string) => service.list('pods', namespace).items.map((p) => `${p.metadata.namespace}/${p.metadata.name}`);

  describe('apply', () => {
    it('creates an object in the default namespace and reports it as created', () => {
      const [outcome, ...rest] = service.apply(docs(podManifest({ labels: { app: 'web' } })));
      expect(rest).toEqual([]);
      expect(outcome).toMatchObject({ kind: 'Pod', name: 'web', namespace: 'default', action: 'created', warnings: [] });
      const stored = service.get('pods', 'default', 'web');
      expect(outcome!.object).toEqual(stored);
      expect(stored).toMatchObject({ apiVersion: 'flotilla/v1', kind: 'Pod', metadata: { name: 'web', namespace: 'default', generation: 1, labels: { app: 'web' } } });
    });

    it('applies into the namespace given by the request when the manifest has none', () => {
      service.apply(docs(namespaceManifest('team-a')));
      const [outcome] = service.apply(docs(podManifest()), { namespace: 'team-a' });
      expect(outcome).toMatchObject({ namespace: 'team-a', action: 'created' });
      expect(podNames()).toEqual(['team-a/web']);
    });

    it('reports a re-apply of the same manifest as unchanged and writes nothing', () => {
      service.apply(docs(podManifest({ labels: { app: 'web' } })));
      const rv = store.currentResourceVersion();
      const [outcome] = service.apply(docs(podManifest({ labels: { app: 'web' } })));
      expect(outcome!.action).toBe('unchanged');
      expect(outcome!.object).toEqual(service.get('pods', 'default', 'web'));
      expect(store.currentResourceVersion()).toBe(rv);
    });

    it('reports a re-apply with the labels written in another order as unchanged', () => {
      service.apply(docs(podManifest({ labels: { app: 'web', tier: 'edge' } })));
      const rv = store.currentResourceVersion();
      const [outcome] = service.apply(docs(podManifest({ labels: { tier: 'edge', app: 'web' } })));
      expect(outcome!.action).toBe('unchanged');
      expect(store.currentResourceVersion()).toBe(rv);
    });

    it('configures an object whose spec changed: generation bumped, status and identity kept', () => {
      const [created] = service.apply(docs(podManifest()));
      store.updateStatus('Pod', 'default', 'web', { phase: 'Running' });
      const [outcome] = service.apply(docs(podManifest({ image: 'nginx:1.28' })));
      expect(outcome!.action).toBe('configured');
      const stored = service.get('pods', 'default', 'web');
      expect(outcome!.object).toEqual(stored);
      expect(stored.metadata.generation).toBe(2);
      expect(stored.metadata.uid).toBe(created!.object!.metadata.uid);
      expect(stored.status).toEqual({ phase: 'Running' });
      expect(stored.spec).toEqual({ containers: [{ name: 'app', image: 'nginx:1.28' }] });
    });

    it('configures an object whose labels changed without bumping its generation', () => {
      service.apply(docs(podManifest({ labels: { app: 'web' } })));
      const [outcome] = service.apply(docs(podManifest({ labels: { app: 'web', tier: 'edge' } })));
      expect(outcome!.action).toBe('configured');
      expect(outcome!.object!.metadata).toMatchObject({ generation: 1, labels: { app: 'web', tier: 'edge' } });
    });

    it('passes warnings about unsupported fields through with the outcome', () => {
      const pod = podManifest();
      (pod.spec as { containers: Fields[] }).containers[0]!.lifecycle = { preStop: { exec: { command: ['true'] } } };
      const [outcome] = service.apply(docs(pod));
      expect(outcome!.warnings).toEqual(['spec.containers[0].lifecycle: unsupported field, ignored']);
      expect(service.get('pods', 'default', 'web').spec).toEqual({ containers: [{ name: 'app', image: 'nginx:1.27' }] });
    });

    it('writes nothing from a batch with one invalid document, and names that document and field', () => {
      const rv = store.currentResourceVersion();
      const err = expectHubError(() => service.apply(docs(podManifest({ name: 'good' }), podManifest({ name: 'bad', image: '' }))), 'HUB_ERR_INVALID');
      expect(err.fields).toEqual([{ path: 'input (document 2): spec.containers[0].image', message: 'is required' }]);
      expect(err.message).toBe('invalid manifest: input (document 2): spec.containers[0].image: is required');
      expect(err.httpStatus).toBe(422);
      expect(store.currentResourceVersion()).toBe(rv);
      expect(podNames()).toEqual([]);
    });

    it('reports the errors of every invalid document of a batch', () => {
      const err = expectHubError(
        () => service.apply(docs(podManifest({ name: 'Bad' }), podManifest(), { apiVersion: 'v1', kind: 'Gizmo', metadata: { name: 'x' } })),
        'HUB_ERR_INVALID',
        /\(and 1 more\)$/,
      );
      expect(err.fields.map((f) => f.path)).toEqual(['input (document 1): metadata.name', 'input (document 3): kind']);
      expect(podNames()).toEqual([]);
    });

    it('refuses an empty batch', () => {
      expectHubError(() => service.apply([]), 'HUB_ERR_BAD_REQUEST', 'no objects in the request');
    });

    it('refuses an object in a namespace that does not exist and writes nothing, even earlier documents', () => {
      const rv = store.currentResourceVersion();
      expectHubError(() => service.apply(docs(podManifest({ name: 'first' }), podManifest({ name: 'second', namespace: 'missing' }))), 'HUB_ERR_NOT_FOUND', 'namespaces "missing" not found');
      expect(store.currentResourceVersion()).toBe(rv);
      expect(podNames()).toEqual([]);
    });

    it('creates a namespace and the objects in it from one batch, the namespace first whatever the order', () => {
      const outcomes = service.apply(docs(podManifest({ namespace: 'team-a' }), daemonSetManifest('agent', 'team-a'), namespaceManifest('team-a')));
      expect(outcomes.map((o) => [o.kind, o.name, o.action])).toEqual([
        ['Namespace', 'team-a', 'created'],
        ['Pod', 'web', 'created'],
        ['DaemonSet', 'agent', 'created'],
      ]);
      expect(outcomes[0]).not.toHaveProperty('namespace');
      expect(service.get('namespaces', undefined, 'team-a').metadata.name).toBe('team-a');
      expect(podNames('team-a')).toEqual(['team-a/web']);
    });

    it('writes nothing in a dry run, yet reports what would happen', () => {
      service.apply(docs(podManifest({ name: 'existing' })));
      const rv = store.currentResourceVersion();
      const outcomes = service.apply(docs(namespaceManifest('team-b'), podManifest({ namespace: 'team-b' }), podManifest({ name: 'existing', image: 'nginx:2' })), { dryRun: true });
      expect(outcomes.map((o) => [o.kind, o.name, o.action])).toEqual([
        ['Namespace', 'team-b', 'created'],
        ['Pod', 'web', 'created'],
        ['Pod', 'existing', 'configured'],
      ]);
      // The answer is the object as it would be stored, with no resourceVersion of its own.
      expect(outcomes[1]!.object?.metadata).toMatchObject({ name: 'web', namespace: 'team-b' });
      expect(outcomes[1]!.object?.metadata.resourceVersion).toBeUndefined();
      expect(outcomes[2]!.object?.spec).toEqual({ containers: [{ name: 'app', image: 'nginx:2' }] });
      expect(outcomes[2]!.object?.metadata.resourceVersion).toBe(service.get('pods', 'default', 'existing').metadata.resourceVersion);
      expect(store.currentResourceVersion()).toBe(rv);
      expect(service.list('namespaces', undefined).items.map((n) => n.metadata.name)).toEqual(['default']);
      expect(service.get('pods', 'default', 'existing').spec).toEqual({ containers: [{ name: 'app', image: 'nginx:1.27' }] });
    });

    it('still refuses a missing namespace in a dry run', () => {
      expectHubError(() => service.apply(docs(podManifest({ namespace: 'nowhere' })), { dryRun: true }), 'HUB_ERR_NOT_FOUND');
    });
  });

  describe('patch', () => {
    it('merges labels, removes one with null, and keeps spec and generation', () => {
      service.apply(docs(podManifest({ labels: { app: 'web', tier: 'edge', old: 'yes' } })));
      const before = service.get('pods', 'default', 'web');
      const { object } = service.patch('pods', 'default', 'web', { metadata: { labels: { tier: 'core', old: null, added: 'x' } } });
      expect(object.metadata.labels).toEqual({ app: 'web', tier: 'core', added: 'x' });
      expect(object.spec).toEqual(before.spec);
      expect(object.metadata.generation).toBe(1);
      expect(object.metadata.uid).toBe(before.metadata.uid);
      expect(Number(object.metadata.resourceVersion)).toBeGreaterThan(Number(before.metadata.resourceVersion));
      expect(service.get('pods', 'default', 'web')).toEqual(object);
    });

    it('patches the labels of a cluster-scoped Node', () => {
      service.apply(docs({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'pi-01', labels: { fleet: 'sensors' } } }));
      const { object } = service.patch('nodes', undefined, 'pi-01', { metadata: { labels: { channel: 'canary' } } });
      expect(object.metadata.labels).toEqual({ fleet: 'sensors', channel: 'canary' });
      expect(object.metadata.namespace).toBeUndefined();
    });

    it('accepts a patch carrying the current resourceVersion', () => {
      service.apply(docs(podManifest()));
      const rv = service.get('pods', 'default', 'web').metadata.resourceVersion;
      const { object } = service.patch('pods', 'default', 'web', { metadata: { resourceVersion: rv, labels: { a: 'b' } } });
      expect(object.metadata.labels).toEqual({ a: 'b' });
    });

    it('refuses a patch carrying a stale resourceVersion with HUB_ERR_CONFLICT and writes nothing', () => {
      service.apply(docs(podManifest()));
      const stale = service.get('pods', 'default', 'web').metadata.resourceVersion;
      service.patch('pods', 'default', 'web', { metadata: { labels: { step: '1' } } });
      const rv = store.currentResourceVersion();
      const err = expectHubError(() => service.patch('pods', 'default', 'web', { metadata: { resourceVersion: stale, labels: { step: '2' } } }), 'HUB_ERR_CONFLICT', /has been modified/);
      expect(err.httpStatus).toBe(409);
      expect(store.currentResourceVersion()).toBe(rv);
      expect(service.get('pods', 'default', 'web').metadata.labels).toEqual({ step: '1' });
    });

    it('validates the patched object as a whole', () => {
      service.apply(docs(podManifest()));
      const err = expectHubError(() => service.patch('pods', 'default', 'web', { metadata: { labels: { app: 'not valid!' } } }), 'HUB_ERR_INVALID');
      expect(err.fields.map((f) => f.path)).toEqual(['metadata.labels.app']);
      expect(service.get('pods', 'default', 'web').metadata.labels).toBeUndefined();
    });

    it('refuses a patch that is not an object, and a patch of a missing object', () => {
      service.apply(docs(podManifest()));
      expectHubError(() => service.patch('pods', 'default', 'web', ['labels']), 'HUB_ERR_BAD_REQUEST', 'a merge patch must be a JSON object');
      expectHubError(() => service.patch('pods', 'default', 'nope', { metadata: { labels: { a: 'b' } } }), 'HUB_ERR_NOT_FOUND', 'pods "nope" not found');
    });
  });

  describe('delete', () => {
    it('deletes one object', () => {
      service.apply(docs(podManifest({ name: 'a' }), podManifest({ name: 'b' })));
      const deleted = service.delete('pods', 'default', 'a');
      expect(deleted.metadata.name).toBe('a');
      expect(podNames()).toEqual(['default/b']);
      expectHubError(() => service.delete('pods', 'default', 'a'), 'HUB_ERR_NOT_FOUND');
    });

    it('deletes the objects of a namespace with it, and nothing in other namespaces', () => {
      service.apply(docs(namespaceManifest('team-a'), podManifest({ namespace: 'team-a' }), daemonSetManifest('agent', 'team-a'), podManifest()));
      service.delete('namespaces', undefined, 'team-a');
      expectHubError(() => service.get('namespaces', undefined, 'team-a'), 'HUB_ERR_NOT_FOUND');
      expect(service.list('pods', 'team-a').items).toEqual([]);
      expect(service.list('daemonsets', 'team-a').items).toEqual([]);
      expect(podNames()).toEqual(['default/web']);
    });

    it('refuses to delete the default namespace and keeps what is in it', () => {
      service.apply(docs(podManifest()));
      expectHubError(() => service.delete('namespaces', undefined, 'default'), 'HUB_ERR_FORBIDDEN', 'the default namespace cannot be deleted');
      expect(service.get('namespaces', undefined, 'default').metadata.name).toBe('default');
      expect(podNames()).toEqual(['default/web']);
    });

    it('refuses an unknown resource type', () => {
      expectHubError(() => service.delete('gizmos', 'default', 'x'), 'HUB_ERR_NOT_FOUND', 'the server doesn\'t have a resource type "gizmos"');
    });
  });
});

describe('ResourceService under dryRun', () => {
  let db: Database;
  let store: ObjectStore;
  let service: ResourceService;
  const events: string[] = [];

  beforeEach(() => {
    db = openHubDatabase(':memory:');
    store = new ObjectStore(db);
    store.create({ apiVersion: 'flotilla/v1', kind: 'Namespace', metadata: { name: 'default' }, spec: {} });
    service = new ResourceService(store, pino({ level: 'silent' }));
    service.apply(docs(namespaceManifest('team-a'), podManifest({ namespace: 'team-a' }), podManifest({ name: 'existing' })));
    events.length = 0;
    store.watch({}, (e) => events.push(`${e.type} ${e.object.kind}/${e.object.metadata.name}`));
  });
  afterEach(() => db.close());

  /** Everything stored, to compare before and after. */
  const everything = () => ['namespaces', 'pods'].map((plural) => service.list(plural, undefined).items);

  it('create answers the object as it would be stored, without a resourceVersion, and stores nothing', () => {
    const before = everything();
    const rv = store.currentResourceVersion();
    const { object } = service.create('pods', 'default', { source: 'body', value: podManifest({ name: 'new' }) }, { dryRun: true });
    expect(object.metadata).toMatchObject({ name: 'new', namespace: 'default', generation: 1 });
    expect(object.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(object.metadata.resourceVersion).toBeUndefined();
    expect(everything()).toEqual(before);
    expect(store.currentResourceVersion()).toBe(rv);
    expect(events).toEqual([]);
  });

  it('create still refuses what a real create refuses: a name taken, a missing namespace', () => {
    expectHubError(() => service.create('pods', 'default', { source: 'body', value: podManifest({ name: 'existing' }) }, { dryRun: true }), 'HUB_ERR_ALREADY_EXISTS');
    expectHubError(() => service.create('pods', 'nowhere', { source: 'body', value: podManifest({ name: 'x' }) }, { dryRun: true }), 'HUB_ERR_NOT_FOUND', /namespaces "nowhere" not found/);
  });

  it('replace and patch answer the object as it would be, with its current resourceVersion, and change nothing', () => {
    const before = everything();
    const current = service.get('pods', 'default', 'existing');
    const replaced = service.replace('pods', 'default', 'existing', { source: 'body', value: podManifest({ name: 'existing', image: 'nginx:2' }) }, { dryRun: true }).object;
    expect(replaced.spec).toEqual({ containers: [{ name: 'app', image: 'nginx:2' }] });
    expect(replaced.metadata.generation).toBe(current.metadata.generation + 1);
    expect(replaced.metadata.resourceVersion).toBe(current.metadata.resourceVersion);
    const patched = service.patch('pods', 'default', 'existing', { metadata: { labels: { tier: 'web' } } }, { dryRun: true }).object;
    expect(patched.metadata.labels).toEqual({ tier: 'web' });
    expect(everything()).toEqual(before);
    expect(events).toEqual([]);
  });

  it('patch still refuses a stale resourceVersion', () => {
    expectHubError(() => service.patch('pods', 'default', 'existing', { metadata: { resourceVersion: '1', labels: { a: 'b' } } }, { dryRun: true }), 'HUB_ERR_CONFLICT');
  });

  it('delete answers the object, and deletes nothing, a namespace and its contents neither', () => {
    const before = everything();
    expect(service.delete('namespaces', undefined, 'team-a', { dryRun: true }).metadata.name).toBe('team-a');
    expect(service.delete('pods', 'default', 'existing', { dryRun: true }).metadata.name).toBe('existing');
    expect(everything()).toEqual(before);
    expect(events).toEqual([]);
    expectHubError(() => service.delete('pods', 'default', 'missing', { dryRun: true }), 'HUB_ERR_NOT_FOUND');
  });
});

describe('manifests with the server\'s fields', () => {
  let db: Database;
  let service: ResourceService;
  beforeEach(() => {
    db = openHubDatabase(':memory:');
    const store = new ObjectStore(db);
    store.create({ apiVersion: 'flotilla/v1', kind: 'Namespace', metadata: { name: 'default' }, spec: {} });
    service = new ResourceService(store, pino({ level: 'silent' }));
  });
  afterEach(() => db.close());

  it('takes what `kubectl create deployment --dry-run=client -o yaml` prints, without warnings about null timestamps', () => {
    const deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { creationTimestamp: null, labels: { app: 'x' }, name: 'x' },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'x' } },
        strategy: {},
        template: { metadata: { creationTimestamp: null, labels: { app: 'x' } }, spec: { containers: [{ image: 'busybox', name: 'busybox', resources: {} }] } },
      },
      status: {},
    };
    const [outcome] = service.apply(docs(deployment));
    expect(outcome).toMatchObject({ kind: 'Deployment', name: 'x', action: 'created' });
    expect(outcome!.warnings.filter((w) => w.includes('creationTimestamp'))).toEqual([]);
  });

  it('applies a PodList item by item, ignoring the items\' resourceVersion, uid and status', () => {
    service.apply(docs(podManifest({ name: 'a' })));
    const listed = service.list('pods', undefined);
    const listing = { kind: 'PodList', apiVersion: 'flotilla/v1', metadata: { resourceVersion: listed.resourceVersion }, items: [...listed.items.map((p) => ({ ...p, metadata: { ...p.metadata, resourceVersion: '1', labels: { relabeled: 'yes' } }, status: { phase: 'Running' } })), podManifest({ name: 'b' })] };
    const outcomes = service.apply(docs(listing));
    expect(outcomes.map((o) => [o.name, o.action])).toEqual([['a', 'configured'], ['b', 'created']]);
    expect(service.get('pods', 'default', 'a').metadata.labels).toEqual({ relabeled: 'yes' });
  });
});

describe('toHubError', () => {
  it('keeps a HubError and hides the details of anything unknown', () => {
    const hub = new HubError('HUB_ERR_FORBIDDEN', 'no');
    expect(toHubError(hub)).toBe(hub);
    const internal = toHubError(new Error('secret detail'));
    expect(internal.code).toBe('HUB_ERR_INTERNAL');
    expect(internal.message).toBe('internal error');
  });
});

describe('mergePatch (RFC 7386, appendix A)', () => {
  it.each([
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [['a', 'b'], ['c', 'd'], ['c', 'd']],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ])('%j patched with %j is %j', (target, patch, result) => {
    expect(mergePatch(target, patch)).toEqual(result);
  });

  it('keeps nulls inside an array of the patch', () => {
    expect(mergePatch({ a: 1 }, { list: [{ x: null }] })).toEqual({ a: 1, list: [{ x: null }] });
  });

  it('does not modify the target', () => {
    const target = { a: { b: 'c', d: 'e' }, f: 'g' };
    const copy = structuredClone(target);
    mergePatch(target, { a: { b: null }, f: null });
    expect(target).toEqual(copy);
  });
});
