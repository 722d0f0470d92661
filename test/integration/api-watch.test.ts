import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { BIN, REPO, cli, startHub, stopAll, tempDir, waitFor, type RunningHub } from '../harness/processes.js';

// Watch as a stream: the API's newline-delimited events, and `flotilla get -w` on top of them.

let hub: RunningHub;
const dirs = tempDir('watch');

const namespace = (name: string) => JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { team: 'edge' } } });

beforeAll(async () => {
  hub = await startHub({ dataDir: join(dirs.path, 'hub') });
});

afterAll(async () => {
  await stopAll();
  dirs.remove();
});

async function api(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${hub.apiUrl}${path}`, { ...init, headers: { authorization: `Bearer ${hub.adminToken}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });
}

describe('watch', () => {
  it('streams ADDED, MODIFIED and DELETED from a resourceVersion, filtered by label selector', async () => {
    const list = (await (await api('/api/v1/namespaces')).json()) as { metadata: { resourceVersion: string } };
    const controller = new AbortController();
    const res = await api(`/api/v1/namespaces?watch=true&labelSelector=team%3Dedge&resourceVersion=${list.metadata.resourceVersion}`, { signal: controller.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-ndjson');
    const events: { type: string; object: { metadata: { name: string; labels?: Record<string, string> } } }[] = [];
    const reading = (async () => {
      const decoder = new TextDecoder();
      let buffer = '';
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buffer += decoder.decode(chunk, { stream: true });
          for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
            events.push(JSON.parse(buffer.slice(0, nl)));
            buffer = buffer.slice(nl + 1);
          }
        }
      } catch {
        // aborted
      }
    })();
    expect((await api('/api/v1/namespaces', { method: 'POST', body: namespace('site-a') })).status).toBe(201);
    // Not selected: no event for it.
    expect((await api('/api/v1/namespaces', { method: 'POST', body: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } }) })).status).toBe(201);
    const patched = await api('/api/v1/namespaces/site-a', { method: 'PATCH', headers: { 'content-type': 'application/merge-patch+json' }, body: JSON.stringify({ metadata: { labels: { tier: 'gold' } } }) });
    expect(patched.status).toBe(200);
    expect((await api('/api/v1/namespaces/site-a', { method: 'DELETE' })).status).toBe(200);
    await waitFor('three events', () => events.length >= 3, 10_000);
    controller.abort();
    await reading;
    expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['ADDED site-a', 'MODIFIED site-a', 'DELETED site-a']);
    // The hub keeps Kubernetes' name label on every namespace (NetworkPolicy's namespaceSelector reads it).
    expect(events[1]!.object.metadata.labels).toEqual({ team: 'edge', tier: 'gold', 'kubernetes.io/metadata.name': 'site-a' });
  });

  it('answers 410 Gone for a resourceVersion from the future', async () => {
    const res = await api('/api/v1/pods?watch=true&resourceVersion=999999999');
    expect(res.status).toBe(410);
    expect(((await res.json()) as { code: string }).code).toBe('HUB_ERR_GONE');
  });

  it('`flotilla get -w` prints a line for each change', async () => {
    const child = spawn(process.execPath, [BIN, 'get', 'namespaces', '-w'], { cwd: REPO, env: { ...process.env, FLOTILLA_SERVER: hub.apiUrl, FLOTILLA_TOKEN: hub.adminToken } });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    try {
      await waitFor('the initial table', () => stdout.includes('default'), 10_000);
      expect(cli(hub, ['apply', '-f', '-'], { input: namespace('site-b') }).code).toBe(0);
      await waitFor('a line for site-b', () => /site-b\s+Active/.test(stdout), 10_000);
      expect(stdout.split('\n')[0]).toMatch(/^NAME\s+STATUS\s+AGE/);
    } finally {
      child.kill('SIGTERM');
    }
  });
});
