import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SERVICES_FILE, ServiceBook, type ServiceKey } from '../../agent/network/services.js';
import type { EndpointAnnouncement, ServiceAnnouncement } from '../../shared/protocol/services.js';

function svc(name: string, fields: Partial<ServiceAnnouncement> = {}): ServiceAnnouncement {
  return { v: 1, namespace: 'default', name, uid: `uid-${name}`, type: 'ClusterIP', clusterIP: '10.43.0.10', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }], generation: 1, ...fields };
}

function ep(ip: string, fields: Partial<EndpointAnnouncement> = {}): EndpointAnnouncement {
  return { v: 1, ip, node: 'b', ready: true, ports: { http: 8080 }, generation: 1, ...fields };
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const EMPTY = Buffer.alloc(0);

describe('ServiceBook', () => {
  let dir: string;
  let warnings: string[];
  let changes: Set<ServiceKey>[];
  let book: ServiceBook;

  const open = () => {
    const log = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) });
    return new ServiceBook({ stateDir: dir, log, onChange: (keys) => changes.push(new Set(keys)), changeDelayMs: 1, changeMaxDelayMs: 5, writeDelayMs: 1, writeMaxDelayMs: 5, writeMinIntervalMs: 0 });
  };
  /** Waits for the debounced change callback; returns every key changed since the last call. */
  const changed = async (): Promise<string[]> => {
    await new Promise((r) => setTimeout(r, 20));
    const keys = changes.flatMap((c) => [...c]);
    changes = [];
    return [...new Set(keys)].sort();
  };
  const pods = (name: string) => [...book.endpoints('default', name).keys()].sort();

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'flotilla-book-'));
    warnings = [];
    changes = [];
    book = open();
  });
  afterEach(() => {
    book.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps Services and endpoints from their messages, and reports each burst of changes once', async () => {
    book.onConnected();
    book.onServiceMessage('default', 'store', json(svc('store')));
    book.onEndpointMessage('default', 'store', 'store-1', json(ep('10.42.1.5')));
    book.onEndpointMessage('default', 'store', 'store-2', json(ep('10.42.2.5', { node: 'c', site: 'north' })));
    expect(await changed()).toEqual(['default/store']);
    expect(book.service('default', 'store')?.clusterIP).toBe('10.43.0.10');
    expect(book.endpoints('default', 'store').get('store-2')).toMatchObject({ ip: '10.42.2.5', node: 'c', site: 'north' });
    // The same content again (a reconnect's retained copy): no change.
    book.onServiceMessage('default', 'store', json(svc('store')));
    book.onEndpointMessage('default', 'store', 'store-1', json(ep('10.42.1.5')));
    expect(await changed()).toEqual([]);
  });

  it('ignores a bad payload, logging the field, and keeps what it knows', async () => {
    book.onServiceMessage('default', 'store', json(svc('store')));
    book.onEndpointMessage('default', 'store', 'store-1', json(ep('10.42.1.5')));
    await changed();
    book.onServiceMessage('default', 'store', json({ ...svc('store', { generation: 9 }), type: 'LoadBalancer' }));
    book.onServiceMessage('default', 'store', json(svc('store', { generation: 9, clusterIP: '10.43.0.999' })));
    book.onServiceMessage('default', 'store', json(svc('other', { generation: 9 })));
    book.onServiceMessage('default', 'store', Buffer.from('{not json'));
    book.onEndpointMessage('default', 'store', 'store-1', json({ ...ep('10.42.1.9', { generation: 9 }), ready: 'yes' }));
    book.onEndpointMessage('default', 'store', 'store-1', json(ep('pi.local', { generation: 9 })));
    book.onCatalogMessage(json({ v: 1, services: -1, endpoints: 0 }));
    expect(await changed()).toEqual([]);
    expect(book.service('default', 'store')).toMatchObject({ clusterIP: '10.43.0.10', generation: 1 });
    expect(book.endpoints('default', 'store').get('store-1')).toMatchObject({ ip: '10.42.1.5', ready: true });
    const text = warnings.join('');
    expect(text).toMatch(/type/);
    expect(text).toContain('clusterIP: 10.43.0.999 is not an IPv4 address or None');
    expect(text).toContain("namespace/name: not the topic's");
    expect(text).toMatch(/ready/);
    expect(text).toContain('ip: pi.local is not an IPv4 address');
    expect(text).toMatch(/malformed catalog message ignored/);
    expect(warnings.length).toBe(7);
  });

  it('takes a message only when its generation is not older', async () => {
    book.onEndpointMessage('default', 'store', 'store-1', json(ep('10.42.1.5', { generation: 5, ready: false })));
    await changed();
    book.onEndpointMessage('default', 'store', 'store-1', json(ep('10.42.1.5', { generation: 4, ready: true })));
    expect(await changed()).toEqual([]);
    expect(book.endpoints('default', 'store').get('store-1')?.ready).toBe(false);
    book.onEndpointMessage('default', 'store', 'store-1', json(ep('10.42.1.5', { generation: 6, ready: true })));
    expect(await changed()).toEqual(['default/store']);
    expect(book.endpoints('default', 'store').get('store-1')).toMatchObject({ ready: true, generation: 6 });
    book.onServiceMessage('default', 'store', json(svc('store', { generation: 3 })));
    book.onServiceMessage('default', 'store', json(svc('store', { generation: 2, clusterIP: '10.43.0.99' })));
    expect(book.service('default', 'store')?.clusterIP).toBe('10.43.0.10');
  });

  it('removes a Service or an endpoint on an empty payload', async () => {
    book.onServiceMessage('default', 'store', json(svc('store')));
    book.onEndpointMessage('default', 'store', 'store-1', json(ep('10.42.1.5')));
    book.onEndpointMessage('default', 'store', 'store-2', json(ep('10.42.2.5')));
    await changed();
    book.onEndpointMessage('default', 'store', 'store-1', EMPTY);
    expect(await changed()).toEqual(['default/store']);
    expect(pods('store')).toEqual(['store-2']);
    book.onServiceMessage('default', 'store', EMPTY);
    book.onEndpointMessage('default', 'store', 'store-2', EMPTY);
    expect(await changed()).toEqual(['default/store']);
    expect(book.service('default', 'store')).toBeUndefined();
    expect(pods('store')).toEqual([]);
    // Clearing what is not known changes nothing.
    book.onServiceMessage('default', 'gone', EMPTY);
    expect(await changed()).toEqual([]);
  });

  it('after a reconnect, sweeps what was not seen again only once the catalog\'s counts are reached', async () => {
    book.onConnected();
    for (const name of ['a', 'b', 'c']) book.onServiceMessage('default', name, json(svc(name)));
    book.onEndpointMessage('default', 'a', 'a-1', json(ep('10.42.1.5')));
    book.onEndpointMessage('default', 'b', 'b-1', json(ep('10.42.1.6')));
    book.onCatalogMessage(json({ v: 1, services: 3, endpoints: 2 }));
    await changed();

    // Away: b and its endpoint were deleted, d was created. The broker sends what it retains again.
    book.onConnected();
    book.onCatalogMessage(json({ v: 1, services: 3, endpoints: 2 }));
    book.onServiceMessage('default', 'a', json(svc('a')));
    book.onServiceMessage('default', 'c', json(svc('c')));
    book.onEndpointMessage('default', 'a', 'a-1', json(ep('10.42.1.5')));
    // Two of three Services and one of two endpoints seen: nothing is swept yet.
    expect(book.service('default', 'b')).toBeDefined();
    expect(pods('b')).toEqual(['b-1']);
    book.onServiceMessage('default', 'd', json(svc('d')));
    // Services reached, endpoints not: still nothing swept.
    expect(book.service('default', 'b')).toBeDefined();
    book.onEndpointMessage('default', 'd', 'd-1', json(ep('10.42.1.7')));
    expect(book.service('default', 'b')).toBeUndefined();
    expect(pods('b')).toEqual([]);
    expect([...book.services().keys()].sort()).toEqual(['default/a', 'default/c', 'default/d']);
    expect(await changed()).toEqual(['default/b', 'default/d']);

    // Once swept, a later catalog sweeps nothing more until the next connect.
    book.onServiceMessage('default', 'e', json(svc('e')));
    book.onCatalogMessage(json({ v: 1, services: 1, endpoints: 0 }));
    expect(book.service('default', 'a')).toBeDefined();
  });

  it('sweeps nothing while the catalog has not come, and drops everything for a catalog of zero', async () => {
    book.onServiceMessage('default', 'a', json(svc('a')));
    book.onEndpointMessage('default', 'a', 'a-1', json(ep('10.42.1.5')));
    await changed();
    book.onConnected();
    expect(book.service('default', 'a')).toBeDefined();
    book.onCatalogMessage(json({ v: 1, services: 0, endpoints: 0 }));
    expect(book.service('default', 'a')).toBeUndefined();
    expect(pods('a')).toEqual([]);
    expect(await changed()).toEqual(['default/a']);
  });

  it('restores from its cache, leaving out damaged entries, and keeps the newer of cache and message', async () => {
    book.onServiceMessage('default', 'store', json(svc('store', { generation: 4 })));
    book.onEndpointMessage('default', 'store', 'store-1', json(ep('10.42.1.5', { generation: 4 })));
    book.onEndpointMessage('default', 'store', 'store-2', json(ep('10.42.2.5', { generation: 4 })));
    book.stop();
    const file = join(dir, SERVICES_FILE);
    const cache = JSON.parse(readFileSync(file, 'utf8')) as { v: 1; services: unknown[]; endpoints: unknown[] };
    expect(cache.services).toHaveLength(1);
    expect(cache.endpoints).toHaveLength(2);
    // Damage one endpoint's announcement, one entry's shape, and add a bad Service.
    (cache.endpoints[1] as unknown[])[3] = { ...ep('10.42.2.5'), ip: 'nowhere' };
    cache.endpoints.push(['default', 'store']);
    cache.services.push({ ...svc('bad'), clusterIP: 12 });
    writeFileSync(file, JSON.stringify(cache));

    book = open();
    // A newer message before the restore wins over the cache.
    book.onEndpointMessage('default', 'store', 'store-1', json(ep('10.42.1.5', { generation: 5, ready: false })));
    book.restore();
    expect(book.service('default', 'store')?.generation).toBe(4);
    expect(book.service('default', 'bad')).toBeUndefined();
    expect(pods('store')).toEqual(['store-1']);
    expect(book.endpoints('default', 'store').get('store-1')).toMatchObject({ generation: 5, ready: false });
    expect(await changed()).toEqual(['default/store']);
    expect(warnings.filter((w) => w.includes('service cache')).length).toBe(3);
  });

  it('starts empty from a cache that is not JSON, without throwing', () => {
    writeFileSync(join(dir, SERVICES_FILE), '{broken');
    book.restore();
    expect(book.services().size).toBe(0);
    expect(warnings.join('')).toMatch(/service cache/);
  });
});
