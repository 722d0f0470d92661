import { describe, expect, it } from 'vitest';
import {
  DOCKER_HUB_AUTH_KEY,
  PullProgress,
  imageRegistry,
  imagesToCollect,
  progressDue,
  pullAuthFor,
  type PullProgressEvent,
  type RuntimeImage,
} from '../../agent/runtime/images.js';
import { engineMessage } from '../../agent/runtime/docker.js';
import type { DesiredConfig, DesiredPod } from '../../shared/protocol/messages.js';
import { referencedConfig } from '../../shared/resources/volumes.js';
import { container, desiredPod } from './builders.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const dockerConfig = (auths: Record<string, object>, name = 'regcred', namespace = 'default'): DesiredConfig => ({
  namespace,
  name,
  data: { '.dockerconfigjson': b64(JSON.stringify({ auths })) },
  resourceVersion: '1',
});
const withPullSecrets = (pod: DesiredPod, ...names: string[]): DesiredPod => ({ ...pod, spec: { ...pod.spec, imagePullSecrets: names.map((name) => ({ name })) } });

describe('imageRegistry', () => {
  it.each([
    ['registry.example:5000/app:1', 'registry.example:5000'],
    ['registry.example/team/app', 'registry.example'],
    ['localhost/app:1', 'localhost'],
    ['localhost:5000/app', 'localhost:5000'],
    ['nginx:1.25', DOCKER_HUB_AUTH_KEY],
    ['library/nginx', DOCKER_HUB_AUTH_KEY],
    ['team/app:2', DOCKER_HUB_AUTH_KEY],
    ['docker.io/team/app:2', DOCKER_HUB_AUTH_KEY],
    ['index.docker.io/team/app', DOCKER_HUB_AUTH_KEY],
  ])('%s → %s', (image, registry) => {
    expect(imageRegistry(image)).toBe(registry);
  });
});

describe('pullAuthFor', () => {
  const pod = withPullSecrets(desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'registry.example:5000/app:1' })] }), 'regcred');

  it('takes the credentials of the image registry from the auths key', () => {
    const secret = dockerConfig({ 'registry.example:5000': { username: 'u', password: 'p' }, 'other.example': { username: 'x', password: 'y' } });
    expect(pullAuthFor('registry.example:5000/app:1', pod, [secret])).toEqual({ serveraddress: 'registry.example:5000', username: 'u', password: 'p' });
  });

  it('reads the `auth` field and keys written as URLs', () => {
    const secret = dockerConfig({ 'https://registry.example:5000/v1/': { auth: b64('robot:s3:cret') } });
    expect(pullAuthFor('registry.example:5000/app:1', pod, [secret])).toEqual({ serveraddress: 'registry.example:5000', username: 'robot', password: 's3:cret' });
  });

  it('uses https://index.docker.io/v1/ for Docker Hub images', () => {
    const hubPod = withPullSecrets(desiredPod({ name: 'hub', containers: [container({ name: 'app', image: 'team/app:1' })] }), 'regcred');
    const secret = dockerConfig({ [DOCKER_HUB_AUTH_KEY]: { username: 'h', password: 'q' } });
    expect(pullAuthFor('team/app:1', hubPod, [secret])).toEqual({ serveraddress: DOCKER_HUB_AUTH_KEY, username: 'h', password: 'q' });
    expect(pullAuthFor('registry.example:5000/app:1', hubPod, [secret])).toBeUndefined();
  });

  it('ignores secrets the pod does not list, of other namespaces, or malformed', () => {
    const good = { 'registry.example:5000': { username: 'u', password: 'p' } };
    expect(pullAuthFor('registry.example:5000/app:1', pod, [dockerConfig(good, 'other')])).toBeUndefined();
    expect(pullAuthFor('registry.example:5000/app:1', pod, [dockerConfig(good, 'regcred', 'kube-system')])).toBeUndefined();
    expect(pullAuthFor('registry.example:5000/app:1', pod, [{ namespace: 'default', name: 'regcred', data: { '.dockerconfigjson': b64('{not json') }, resourceVersion: '1' }])).toBeUndefined();
    expect(pullAuthFor('registry.example:5000/app:1', withPullSecrets(pod), [dockerConfig(good)])).toBeUndefined();
  });

  it('makes the hub send the referenced pull secrets to the node', () => {
    expect([...referencedConfig(pod.spec).secrets]).toEqual(['regcred']);
  });
});

describe('engineMessage', () => {
  it('keeps the engine\'s words of a failed pull, without the HTTP wrapping', () => {
    const refused = new Error('(HTTP code 500) server error - Head "http://127.0.0.1:5001/v2/team/app/manifests/1": no basic auth credentials ');
    expect(engineMessage(refused)).toBe('Head "http://127.0.0.1:5001/v2/team/app/manifests/1": no basic auth credentials');
    expect(engineMessage(Object.assign(new Error('(HTTP code 404) no such image - x '), { json: { message: 'manifest for team/app:9 not found: manifest unknown' } }))).toBe('manifest for team/app:9 not found: manifest unknown');
    expect(engineMessage(new Error('connect ENOENT /run/docker.sock'))).toBe('connect ENOENT /run/docker.sock');
  });
});

describe('PullProgress', () => {
  // As the engine reports a pull of a two-layer image, one of which is already present.
  const recorded: PullProgressEvent[] = [
    { status: 'Pulling from team/app', id: '1' },
    { status: 'Already exists', id: 'aaa' },
    { status: 'Pulling fs layer', id: 'bbb' },
    { status: 'Waiting', id: 'bbb' },
    { status: 'Downloading', id: 'bbb', progressDetail: { current: 1_000_000, total: 4_000_000 } },
    { status: 'Downloading', id: 'bbb', progressDetail: { current: 2_500_000, total: 4_000_000 } },
  ];

  it('summarises the layers and bytes done', () => {
    const p = new PullProgress();
    for (const e of recorded) p.add(e);
    expect(p.summary()).toBe('1/2 layers, 2.5 of 4.0 MB downloaded');
    p.add({ status: 'Download complete', id: 'bbb' });
    p.add({ status: 'Extracting', id: 'bbb', progressDetail: { current: 100, total: 4_000_000 } });
    p.add({ status: 'Pull complete', id: 'bbb' });
    p.add({ status: 'Digest: sha256:abc' });
    p.add({ status: 'Status: Downloaded newer image for team/app:1' });
    expect(p.summary()).toBe('2/2 layers, 4.0 of 4.0 MB downloaded');
  });

  it('says nothing of bytes before any download started', () => {
    const p = new PullProgress();
    p.add({ status: 'Pulling fs layer', id: 'x' });
    expect(p.summary()).toBe('0/1 layers');
  });

  it('counts a resumed download from where it stopped, as the engine reads the rest of the layer', () => {
    // Recorded from a real pull whose connection broke twice: each retry counts the bytes left.
    const p = new PullProgress();
    p.add({ status: 'Pulling fs layer', id: 'c83' });
    p.add({ status: 'Downloading', id: 'c83', progressDetail: { current: 49_581, total: 3_001_127 } });
    p.add({ status: 'Downloading', id: 'c83', progressDetail: { current: 2_971_048, total: 3_001_127 } });
    p.add({ status: 'Retrying in 5 seconds', id: 'c83', progressDetail: {} });
    p.add({ status: 'Downloading', id: 'c83', progressDetail: { current: 3_620, total: 30_079 } });
    expect(p.summary()).toBe('0/1 layers, 3.0 of 3.0 MB downloaded');
    p.add({ status: 'Downloading', id: 'c83', progressDetail: { current: 1_935, total: 1_935 } });
    p.add({ status: 'Verifying Checksum', id: 'c83', progressDetail: {} });
    p.add({ status: 'Download complete', id: 'c83', progressDetail: {} });
    p.add({ status: 'Extracting', id: 'c83', progressDetail: { current: 32_768, total: 3_001_127 } });
    expect(p.summary()).toBe('0/1 layers, 3.0 of 3.0 MB downloaded');
    p.add({ status: 'Pull complete', id: 'c83', progressDetail: {} });
    expect(p.summary()).toBe('1/1 layers, 3.0 of 3.0 MB downloaded');
  });

  it('adds a resumed count to what was left, and never counts a layer past its size', () => {
    const p = new PullProgress();
    p.add({ status: 'Downloading', id: 'l', progressDetail: { current: 1_500_000, total: 2_000_000 } });
    p.add({ status: 'Downloading', id: 'l', progressDetail: { current: 100_000, total: 500_000 } });
    expect(p.summary()).toBe('0/1 layers, 1.6 of 2.0 MB downloaded');
    p.add({ status: 'Downloading', id: 'l', progressDetail: { current: 9_000_000, total: 500_000 } });
    expect(p.summary()).toBe('0/1 layers, 2.0 of 2.0 MB downloaded');
  });

  it('is due after 2 s, then at most once per 5 s', () => {
    expect(progressDue(0, undefined, 1_999)).toBe(false);
    expect(progressDue(0, undefined, 2_000)).toBe(true);
    expect(progressDue(0, 2_000, 6_999)).toBe(false);
    expect(progressDue(0, 2_000, 7_000)).toBe(true);
  });
});

describe('imagesToCollect', () => {
  const img = (id: string, tags: string[], created: number): RuntimeImage => ({ id, tags, created, sizeBytes: 1000 });
  const images = [
    img('sha256:new', ['unused:new'], 300),
    img('sha256:old', ['unused:old'], 100),
    img('sha256:pause', ['flotilla/pause:3'], 50),
    img('sha256:desired', ['app:1'], 10),
    img('sha256:foreign', ['theirs:1'], 20),
    img('sha256:byid', [], 30),
    img('sha256:latest', ['plain:latest'], 40),
    img('sha256:dangling', [], 200),
  ];
  const containers = [
    { image: 'theirs:1' },
    { image: 'sha256:byid' },
    { image: 'plain', imageId: 'sha256:other' },
  ];

  it('picks unused, undesired images, oldest first, never the pause image', () => {
    const chosen = imagesToCollect(images, containers, new Set(['flotilla/pause:3', 'app:1']));
    expect(chosen.map((i) => i.id)).toEqual(['sha256:old', 'sha256:dangling', 'sha256:new']);
  });

  it('keeps an image a container uses by id, even under another tag', () => {
    const chosen = imagesToCollect([img('sha256:x', ['retagged:2'], 1)], [{ image: 'gone:1', imageId: 'sha256:x' }], new Set());
    expect(chosen).toEqual([]);
  });

  it('keeps an untagged desired reference as :latest', () => {
    expect(imagesToCollect([img('sha256:y', ['busybox:latest'], 1)], [], new Set(['busybox']))).toEqual([]);
  });
});
