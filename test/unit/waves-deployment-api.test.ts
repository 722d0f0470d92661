import { afterEach, describe, expect, it } from 'vitest';
import { ResourceService } from '../../hub/api/resources.js';
import { RolloutRoutes } from '../../hub/api/rollout.js';
import { ApiServer } from '../../hub/api/server.js';
import { TokenRoutes } from '../../hub/api/tokens.js';
import { Credentials } from '../../hub/auth/credentials.js';
import { WavesController } from '../../hub/controllers/waves/controller.js';
import { applyWeb, close, rig, step, V1, V2, type Rig } from './waves-deployment-fixture.js';

const STRATEGY = { waves: [{ count: 1 }, { percent: 50 }], healthGate: { minReadySeconds: 10 } };

let r: Rig;
let api: ApiServer;
afterEach(async () => {
  await api.close();
  close(r);
});

async function serve(): Promise<{ base: string; headers: Record<string, string> }> {
  const credentials = new Credentials(r.hub.db);
  const { token } = credentials.createToken('admin', { description: 'test' });
  const ctx = { store: r.hub.store, events: r.hub.events, log: r.hub.log };
  const routes = new RolloutRoutes(r.hub.store, new WavesController(ctx), r.waves);
  api = new ApiServer({ host: '127.0.0.1', port: 0, authorize: (t) => credentials.verifyToken('admin', t) !== undefined }, r.hub.store, new ResourceService(r.hub.store, r.hub.log), new TokenRoutes(credentials, () => {}), r.hub.log, undefined, undefined, undefined, routes);
  const port = await api.listen();
  return { base: `http://127.0.0.1:${port}/apis/flotilla/v1/namespaces/default/deployments`, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } };
}

describe('the rollout API of a Waves Deployment', () => {
  it('pauses, resumes and aborts; answers 404 and 409; previews the pods of each wave', async () => {
    r = rig();
    applyWeb(r, V1, STRATEGY, 6);
    step(r);
    const { base, headers } = await serve();
    const post = (path: string, body?: unknown) => fetch(`${base}/${path}`, { method: 'POST', headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });

    expect((await post('web/rollout', { action: 'pause' })).status).toBe(409);
    expect((await post('nope/rollout', { action: 'pause' })).status).toBe(404);
    const first = await post('web/rollout/preview');
    expect(await first.json()).toMatchObject({ revision: 1, reason: expect.stringMatching(/no change/) });

    const manifest = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' }, spec: { ...(r.hub.store.get('Deployment', 'default', 'web')!.spec as object), template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: V2 }] } } } };
    const preview = await post('web/rollout/preview', manifest);
    expect(preview.status).toBe(200);
    expect(await preview.json()).toMatchObject({ revision: 2, waves: [{ name: 'wave-1', replicas: 1 }, { name: 'wave-2', replicas: 3 }, { name: 'rest', replicas: 2 }] });
    const refused = await post('web/rollout/preview', { ...manifest, spec: { ...manifest.spec, strategy: { type: 'Waves', waves: [{ selector: 'channel=canary' }] } } });
    expect(refused.status).toBe(422);
    expect(JSON.stringify(await refused.json())).toContain('spec.strategy.waves[0].selector');

    applyWeb(r, V2, STRATEGY, 6);
    step(r);
    const paused = await post('web/rollout', { action: 'pause' });
    expect(paused.status).toBe(200);
    expect(await paused.json()).toMatchObject({ kind: 'Rollout', metadata: { name: 'deployment.web.2' }, spec: { target: { kind: 'Deployment', name: 'web' } }, status: { phase: 'Paused' } });
    expect((await post('web/rollout', { action: 'resume' })).status).toBe(200);
    expect((await post('web/rollout', { action: 'abort' })).status).toBe(200);
    expect((await post('web/rollout', { action: 'abort' })).status).toBe(409);
    expect((await post('web/rollout', { action: 'dance' })).status).toBe(400);
  });
});
