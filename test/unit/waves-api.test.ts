import { afterEach, describe, expect, it } from 'vitest';
import { ResourceService } from '../../hub/api/resources.js';
import { RolloutRoutes } from '../../hub/api/rollout.js';
import { ApiServer } from '../../hub/api/server.js';
import { TokenRoutes } from '../../hub/api/tokens.js';
import { Credentials } from '../../hub/auth/credentials.js';
import { applyReader, close, fleet, GOOD, NEXT, step, type Fleet } from './waves-fixture.js';

let f: Fleet;
let api: ApiServer;
afterEach(async () => {
  await api.close();
  close(f);
});

async function serve(): Promise<{ base: string; headers: Record<string, string> }> {
  const credentials = new Credentials(f.hub.db);
  const { token } = credentials.createToken('admin', { description: 'test' });
  api = new ApiServer({ host: '127.0.0.1', port: 0, authorize: (t) => credentials.verifyToken('admin', t) !== undefined }, f.hub.store, new ResourceService(f.hub.store, f.hub.log), new TokenRoutes(credentials, () => {}), f.hub.log, undefined, undefined, undefined, new RolloutRoutes(f.hub.store, f.waves));
  const port = await api.listen();
  return { base: `http://127.0.0.1:${port}/apis/flotilla/v1/namespaces/default/daemonsets`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } };
}

describe('the rollout API', () => {
  it('pauses, resumes and aborts with 200, and answers 400, 404 and 409 as the contract says', async () => {
    f = fleet([{ name: 'canary-1', labels: { channel: 'canary' } }, { name: 'edge-a' }]);
    const strategy = { waves: [{ selector: 'channel=canary' }] };
    applyReader(f, GOOD, strategy);
    step(f);
    const { base, headers } = await serve();
    const post = (path: string, body?: unknown) => fetch(`${base}/${path}`, { method: 'POST', headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });

    expect((await post('reader/rollout', { action: 'pause' })).status).toBe(409);
    applyReader(f, NEXT, strategy);
    step(f);
    const paused = await post('reader/rollout', { action: 'pause' });
    expect(paused.status).toBe(200);
    expect(await paused.json()).toMatchObject({ kind: 'Rollout', metadata: { name: 'reader-2' }, status: { phase: 'Paused' } });
    expect((await post('reader/rollout', { action: 'resume' })).status).toBe(200);
    expect((await post('reader/rollout', { action: 'abort' })).status).toBe(200);
    const again = await post('reader/rollout', { action: 'abort' });
    expect(again.status).toBe(409);
    expect(((await again.json()) as { message: string }).message).toMatch(/Aborted/);
    expect((await post('reader/rollout', { action: 'dance' })).status).toBe(400);
    expect((await post('nope/rollout', { action: 'pause' })).status).toBe(404);
    expect((await fetch(`${base}/reader/rollout`, { method: 'POST', body: '{}' })).status).toBe(401);

    const preview = await post('reader/rollout/preview');
    expect(preview.status).toBe(200);
    expect(await preview.json()).toMatchObject({ revision: 2, waves: [{ name: 'wave-1', nodes: ['canary-1'] }, { name: 'rest', nodes: ['edge-a'] }] });
    const bad = await post('reader/rollout/preview', { apiVersion: 'flotilla/v1', kind: 'DaemonSet', metadata: { name: 'reader' }, spec: { selector: { matchLabels: { app: 'reader' } }, template: { metadata: { labels: { app: 'reader' } }, spec: { containers: [{ name: 'app', image: NEXT }] } }, updateStrategy: { type: 'Waves', waves: [{ percent: 101 }] } } });
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as { message: string }).message).toContain('spec.updateStrategy.waves[0].percent: must be at most 100');
  });
});
