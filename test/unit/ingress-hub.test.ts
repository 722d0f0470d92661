import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describe as describeObject } from '../../hub/cli/describe.js';
import { formatObjects } from '../../hub/cli/print.js';
import { Dispatcher } from '../../hub/dispatch/desired.js';
import { IngressDispatch, IngressStatusWriter } from '../../hub/services/ingress.js';
import { decodePayload, desiredStateSchema, type DesiredState } from '../../shared/protocol/messages.js';
import { Topics } from '../../shared/protocol/topics.js';
import { validateManifest } from '../../shared/resources/validate.js';
import { createNode, setNodeLabels, testHub, type TestHub } from './builders.js';
import { RetainingBus } from '../harness/memory-bus.js';

const CERT = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n').toString('base64');
const KEY = Buffer.from('-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n').toString('base64');

function ingress(spec: unknown, name = 'web') {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name, namespace: 'default' }, spec };
}

function errorsOf(doc: unknown): string[] {
  return validateManifest(doc).errors.map((e) => `${e.path}: ${e.message}`);
}

const route = { host: 'shop.example.com', http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80 } } } }] } };

describe('Ingress manifests', () => {
  it('accepts networking.k8s.io/v1 with hosts, wildcards, path types, ports by number or name, and TLS', () => {
    const r = validateManifest(
      ingress({
        ingressClassName: 'flotilla',
        defaultBackend: { service: { name: 'fallback', port: { name: 'http' } } },
        rules: [route, { host: '*.example.com', http: { paths: [{ path: '/api', pathType: 'Exact', backend: { service: { name: 'api', port: { number: 8080 } } } }, { pathType: 'ImplementationSpecific', backend: { service: { name: 'x', port: { number: 1 } } } }] } }],
        tls: [{ hosts: ['shop.example.com', '*.example.com'], secretName: 'shop-tls' }],
      }),
    );
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.object?.kind).toBe('Ingress');
  });

  it('refuses bad fields with Kubernetes-like messages naming each', () => {
    expect(errorsOf(ingress({}))).toEqual(['spec: Invalid value: either `defaultBackend` or `rules` must be specified']);
    const errors = errorsOf(
      ingress({
        rules: [
          { host: '10.0.0.1', http: { paths: [{ path: 'api', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80 } } } }] } },
          { host: 'a.*.example.com', http: { paths: [{ path: '/', pathType: 'Regex', backend: { service: { name: 'web', port: {} } } }] } },
          { host: 'ok.test', http: { paths: [{ path: '/', backend: { service: { name: 'Web_1', port: { number: 80, name: 'http' } } } }, { path: '/x', pathType: 'Exact', backend: {} }] } },
          { host: 'empty.test', http: { paths: [] } },
        ],
        tls: [{ hosts: ['*'], secretName: 'Bad Name' }],
      }),
    );
    expect(errors).toEqual(
      expect.arrayContaining([
        "spec.rules[0].host: Invalid value: '10.0.0.1': must be a DNS name, not an IP address",
        "spec.rules[0].http.paths[0].path: Invalid value: 'api': must be an absolute path",
        expect.stringMatching(/^spec\.rules\[1\]\.host: Invalid value: 'a\.\*\.example\.com': a wildcard DNS-1123 subdomain must start with '\*\.'/),
        "spec.rules[1].http.paths[0].pathType: Unsupported value: 'Regex': supported values: 'Exact', 'ImplementationSpecific', 'Prefix'",
        'spec.rules[1].http.paths[0].backend.service.port: Required value: port name or number is required',
        'spec.rules[2].http.paths[0].pathType: Required value: pathType must be specified',
        expect.stringMatching(/^spec\.rules\[2\]\.http\.paths\[0\]\.backend\.service\.name: Invalid value: 'Web_1'/),
        'spec.rules[2].http.paths[0].backend.service.port: Invalid value: cannot set both port name & port number',
        'spec.rules[2].http.paths[1].backend.service: Required value: a backend names a service (resource backends are not supported)',
        'spec.rules[3].http.paths: Required value: at least one path',
        expect.stringMatching(/^spec\.tls\[0\]\.hosts\[0\]: Invalid value: '\*'/),
        expect.stringMatching(/^spec\.tls\[0\]\.secretName: Invalid value: 'Bad Name'/),
      ]),
    );
  });

  it('a kubernetes.io/tls Secret must carry tls.crt and tls.key', () => {
    const secret = (data: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' }, type: 'kubernetes.io/tls', data });
    expect(errorsOf(secret({ 'tls.crt': CERT, 'tls.key': KEY }))).toEqual([]);
    expect(errorsOf(secret({ 'tls.crt': CERT }))).toEqual(["data[tls.key]: Required value: a Secret of type kubernetes.io/tls must have the key 'tls.key'"]);
  });

  it('shows kubectl\'s columns', () => {
    const obj = { ...validateManifest(ingress({ ingressClassName: 'flotilla', rules: [route, { ...route, host: 'b.test' }], tls: [{ hosts: ['shop.example.com'], secretName: 's' }] })).object!, status: { loadBalancer: { ingress: [{ ip: '192.0.2.1' }, { ip: '192.0.2.2' }] } } };
    const [header, row] = formatObjects('Ingress', [obj as never], 'table').split('\n');
    expect(header!.split(/\s{2,}/)).toEqual(['NAME', 'CLASS', 'HOSTS', 'ADDRESS', 'PORTS', 'AGE']);
    expect(row!.split(/\s{2,}/).slice(0, 5)).toEqual(['web', 'flotilla', 'shop.example.com,b.test', '192.0.2.1,192.0.2.2', '80, 443']);
  });

  it('describes an Ingress as kubectl does', () => {
    const obj = { ...validateManifest(ingress({ defaultBackend: { service: { name: 'fallback', port: { name: 'http' } } }, rules: [route], tls: [{ hosts: ['shop.example.com'], secretName: 'shop-tls' }] })).object!, metadata: { name: 'web', namespace: 'default', uid: 'u', resourceVersion: '1' }, status: { loadBalancer: { ingress: [{ ip: '192.0.2.1' }] } } };
    const text = describeObject(obj as never, []);
    expect(text).toContain('Address:          192.0.2.1');
    expect(text).toContain('Default backend:  fallback:http');
    expect(text).toContain('shop-tls terminates shop.example.com');
    expect(text).toMatch(/shop\.example\.com\n\s+\/ \(Prefix\) {2}web:80/);
  });
});

/** Keeps the retained desired set of each node, and counts publishes, as the broker would. */

describe('Ingress delivery to ingress devices only', () => {
  const topics = new Topics();
  let hub: TestHub;
  let bus: RetainingBus;
  let dispatcher: Dispatcher;
  const desiredOf = (node: string): DesiredState => {
    const result = decodePayload(desiredStateSchema, bus.retained.get(topics.desired(node))!);
    if (!result.ok) throw new Error(JSON.stringify(result.errors));
    return result.value;
  };
  const tlsSecret = (name: string, data: Record<string, string>, type = 'kubernetes.io/tls') => ({ apiVersion: 'flotilla/v1', kind: 'Secret', metadata: { name, namespace: 'default' }, type, data });

  beforeEach(() => {
    hub = testHub();
    bus = new RetainingBus();
    dispatcher = new Dispatcher(hub.db, hub.store, bus, topics, hub.log, undefined, new IngressDispatch(hub.store, hub.log));
    createNode(hub.store, { name: 'edge', labels: { 'flotilla.io/ingress': 'true' } });
    createNode(hub.store, { name: 'plain' });
    createNode(hub.store, { name: 'almost', labels: { 'flotilla.io/ingress': 'yes' } });
    hub.store.create(tlsSecret('shop-tls', { 'tls.crt': CERT, 'tls.key': KEY }));
    hub.store.create(tlsSecret('unnamed-tls', { 'tls.crt': CERT, 'tls.key': KEY }));
    hub.store.create(tlsSecret('opaque', { 'tls.crt': CERT, 'tls.key': KEY }, 'Opaque'));
    hub.store.create({ ...validateManifest(ingress({ rules: [route], tls: [{ hosts: ['shop.example.com'], secretName: 'shop-tls' }, { secretName: 'opaque' }, { secretName: 'missing' }] })).object! });
    dispatcher.start();
  });
  afterEach(() => {
    dispatcher.stop();
    hub.db.close();
  });

  it('sends the Ingresses and the TLS Secrets they name to labelled nodes, and nothing of them to the others', async () => {
    await dispatcher.queue.idle();
    const edge = desiredOf('edge');
    expect(edge.ingress?.ingresses).toEqual([{ namespace: 'default', name: 'web', spec: expect.objectContaining({ rules: [route] }) }]);
    // Only the kubernetes.io/tls Secret it names; not the Opaque one, not the one missing, not the one no Ingress names.
    expect(edge.ingress?.certificates).toEqual([expect.objectContaining({ namespace: 'default', name: 'shop-tls', cert: CERT, key: KEY })]);
    expect(edge.secrets).toEqual([]);
    for (const node of ['plain', 'almost']) {
      const text = bus.retained.get(topics.desired(node))!.toString();
      expect(desiredOf(node).ingress).toBeUndefined();
      expect(text).not.toContain(KEY);
    }
  });

  it('re-sends only the ingress devices\' sets when an Ingress or a named Secret changes', async () => {
    await dispatcher.queue.idle();
    const before = bus.published.length;
    const revs = { edge: dispatcher.revision('edge'), plain: dispatcher.revision('plain') };
    hub.store.create(validateManifest(ingress({ defaultBackend: { service: { name: 'x', port: { number: 80 } } } }, 'second')).object!);
    await dispatcher.queue.idle();
    expect(bus.published.slice(before)).toEqual([topics.desired('edge')]);
    expect(desiredOf('edge').ingress?.ingresses).toHaveLength(2);
    hub.store.mutate('Secret', 'default', 'shop-tls', (cur) => ({ ...cur, data: { 'tls.crt': CERT, 'tls.key': Buffer.from('new key').toString('base64') } }));
    await dispatcher.queue.idle();
    expect(bus.published.slice(before)).toEqual([topics.desired('edge'), topics.desired('edge')]);
    expect(dispatcher.revision('plain')).toBe(revs.plain);
    expect(dispatcher.revision('edge')).toBe(revs.edge! + 2);
    // A Secret no Ingress names changes nothing.
    hub.store.mutate('Secret', 'default', 'unnamed-tls', (cur) => ({ ...cur, data: { 'tls.crt': CERT, 'tls.key': CERT } }));
    await dispatcher.queue.idle();
    expect(bus.published.slice(before)).toHaveLength(2);
  });

  it('follows the label: a node labelled later gets the section, one unlabelled loses it', async () => {
    await dispatcher.queue.idle();
    setNodeLabels(hub.store, 'plain', { 'flotilla.io/ingress': 'true' });
    setNodeLabels(hub.store, 'edge', {});
    await dispatcher.queue.idle();
    expect(desiredOf('plain').ingress?.certificates).toHaveLength(1);
    expect(desiredOf('edge').ingress).toBeUndefined();
  });

  it('writes the ingress devices\' addresses into status.loadBalancer.ingress', async () => {
    const writer = new IngressStatusWriter(hub.store, hub.log);
    hub.store.updateStatus('Node', '', 'edge', { conditions: [], addresses: [{ type: 'Hostname', address: 'edge' }, { type: 'InternalIP', address: '192.0.2.7' }] });
    hub.store.updateStatus('Node', '', 'plain', { conditions: [], addresses: [{ type: 'InternalIP', address: '192.0.2.8' }] });
    writer.sync();
    expect(hub.store.get('Ingress', 'default', 'web')?.status).toEqual({ loadBalancer: { ingress: [{ ip: '192.0.2.7' }] } });
    setNodeLabels(hub.store, 'edge', {});
    writer.sync();
    expect(hub.store.get('Ingress', 'default', 'web')?.status).toEqual({ loadBalancer: {} });
    writer.stop();
  });

  it('tells of a TLS Secret that cannot serve in a Warning event on the Ingress, once', () => {
    const writer = new IngressStatusWriter(hub.store, hub.log, hub.events);
    writer.sync();
    writer.sync();
    const events = hub.store.list('Event').items.filter((e) => e.reason === 'TLSSecretUnusable');
    expect(events.map((e) => [e.type, e.message, e.count])).toEqual(
      expect.arrayContaining([
        ['Warning', 'Secret default/opaque is of type Opaque, not kubernetes.io/tls: its hosts get the default certificate', 1],
        ['Warning', 'Secret default/missing does not exist: its hosts get the default certificate', 1],
      ]),
    );
    expect(events).toHaveLength(2);
    writer.stop();
  });
});
