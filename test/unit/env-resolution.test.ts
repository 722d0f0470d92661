import { describe, expect, it } from 'vitest';
import { podConfig } from '../../agent/reconcile/config.js';
import { resolveEnv, type ConfigSources } from '../../agent/reconcile/env.js';
import { containerSpecHash } from '../../agent/reconcile/hash.js';
import { planSteps } from '../../agent/reconcile/plan.js';
import { containerBinds } from '../../agent/volumes/layout.js';
import type { DesiredConfig } from '../../shared/protocol/messages.js';
import { actualState, appHashOf, container, desiredPod, expectSteps, infraContainer, infraHashOf, onlyStep, PAUSE_IMAGE, planContext, runtimeContainer } from './builders.js';

function config(name: string, data: Record<string, string>, binaryData?: Record<string, string>): DesiredConfig {
  return { namespace: 'default', name, data, ...(binaryData ? { binaryData } : {}), resourceVersion: '1' };
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

const sources: ConfigSources = {
  configs: [config('app-env', { greeting: 'hello', 'not valid!': 'x', LEVEL: 'info' }, { blob: b64('bin') })],
  secrets: [config('creds', { password: b64('s3cret'), LEVEL: b64('secret-level') })],
};

describe('resolveEnv', () => {
  it('takes envFrom first, in order, then env, later ones overriding, as the kubelet does', () => {
    const c = container({
      name: 'app',
      image: 'busybox:1',
      envFrom: [{ configMapRef: { name: 'app-env' } }, { secretRef: { name: 'creds' }, prefix: 'S_' }],
      env: [
        { name: 'LEVEL', value: 'debug' },
        { name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'creds', key: 'password' } } },
        { name: 'BLOB', valueFrom: { configMapKeyRef: { name: 'app-env', key: 'blob' } } },
      ],
    });
    const result = resolveEnv('default', c, sources);
    expect(result).toEqual({ ok: true, env: ['greeting=hello', 'LEVEL=debug', 'blob=bin', 'S_password=s3cret', 'S_LEVEL=secret-level', 'PASSWORD=s3cret', 'BLOB=bin'] });
  });

  it('names the missing object or key, as the kubelet does', () => {
    const missingMap = container({ name: 'a', image: 'x:1', env: [{ name: 'A', valueFrom: { configMapKeyRef: { name: 'nope', key: 'k' } } }] });
    expect(resolveEnv('default', missingMap, sources)).toEqual({ ok: false, message: 'configmap "nope" not found' });
    const missingKey = container({ name: 'a', image: 'x:1', env: [{ name: 'A', valueFrom: { secretKeyRef: { name: 'creds', key: 'token' } } }] });
    expect(resolveEnv('default', missingKey, sources)).toEqual({ ok: false, message: "couldn't find key token in Secret default/creds" });
    const missingSecret = container({ name: 'a', image: 'x:1', envFrom: [{ secretRef: { name: 'gone' } }] });
    expect(resolveEnv('default', missingSecret, sources)).toEqual({ ok: false, message: 'secret "gone" not found' });
    // Another namespace's object of the same name is not this pod's.
    const ok = container({ name: 'a', image: 'x:1', envFrom: [{ configMapRef: { name: 'app-env' } }] });
    expect(resolveEnv('other', ok, sources)).toEqual({ ok: false, message: 'configmap "app-env" not found' });
  });

  it('skips what is optional and missing', () => {
    const c = container({
      name: 'a',
      image: 'x:1',
      envFrom: [{ configMapRef: { name: 'nope', optional: true } }],
      env: [{ name: 'A', valueFrom: { configMapKeyRef: { name: 'app-env', key: 'none', optional: true } } }, { name: 'B', value: 'b' }],
    });
    expect(resolveEnv('default', c, sources)).toEqual({ ok: true, env: ['B=b'] });
  });
});

describe('podConfig and the planner', () => {
  const envPod = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'busybox:1', env: [{ name: 'G', valueFrom: { configMapKeyRef: { name: 'app-env', key: 'greeting' } } }] })] });

  it('holds a container whose env cannot be resolved in CreateContainerConfigError, and plans no create for it', () => {
    const config = podConfig([envPod], { configs: [], secrets: [] }, new Map());
    expect(config.waiting.get(`${envPod.uid}/app`)).toEqual({ reason: 'CreateContainerConfigError', message: 'configmap "app-env" not found' });
    const steps = planSteps(actualState({ containers: [infraContainer({ pod: envPod })], images: [PAUSE_IMAGE, 'busybox:1'] }), [envPod], planContext({ blocked: new Set(config.waiting.keys()) }));
    expect(steps).toEqual([]);
  });

  it('creates the container with the resolved env, and replaces it when a value changes', () => {
    const first = podConfig([envPod], sources, new Map());
    const ctx = planContext({ resolvedEnv: first.resolvedEnv, blocked: new Set() });
    const create = onlyStep(planSteps(actualState({ containers: [infraContainer({ pod: envPod })], images: [PAUSE_IMAGE, 'busybox:1'] }), [envPod], ctx), 'createContainer');
    expect(create.env).toEqual(['G=hello']);
    const running = runtimeContainer({ pod: envPod, container: 'app', hash: create.hash });
    const actual = actualState({ containers: [infraContainer({ pod: envPod }), running], images: [PAUSE_IMAGE, 'busybox:1'] });
    expect(planSteps(actual, [envPod], ctx)).toEqual([]);

    const changed = podConfig([envPod], { ...sources, configs: [config('app-env', { greeting: 'bonjour' })] }, new Map());
    const steps = planSteps(actual, [envPod], planContext({ resolvedEnv: changed.resolvedEnv }));
    expectSteps(steps, ['remove', 'createContainer']);
    expect(onlyStep(steps, 'createContainer').env).toEqual(['G=bonjour']);
  });

  it('leaves a running container alone when its ConfigMap goes missing', () => {
    const first = podConfig([envPod], sources, new Map());
    const hash = containerSpecHash(envPod, envPod.spec.containers[0]!, infraHashOf(envPod), first.resolvedEnv.get(`${envPod.uid}/app`));
    const actual = actualState({ containers: [infraContainer({ pod: envPod }), runtimeContainer({ pod: envPod, container: 'app', hash })], images: [PAUSE_IMAGE, 'busybox:1'] });
    const gone = podConfig([envPod], { configs: [], secrets: [] }, new Map());
    expect(planSteps(actual, [envPod], planContext({ blocked: new Set(gone.waiting.keys()) }))).toEqual([]);
  });

  it('holds every container of a pod whose volume cannot be set up', () => {
    const pod = desiredPod({ name: 'p', containers: [container({ name: 'a', image: 'x:1' }), container({ name: 'b', image: 'x:1' })] });
    const block = { reason: 'ContainerCreating', message: 'MountVolume.SetUp failed for volume "cfg": configmap "x" not found' };
    const config = podConfig([pod], sources, new Map([[pod.uid, block]]));
    expect([...config.waiting.keys()].sort()).toEqual([`${pod.uid}/a`, `${pod.uid}/b`]);
  });
});

describe('the container spec hash', () => {
  const volumes = [{ name: 'cfg', configMap: { name: 'app-files' } }];
  const mounting = container({ name: 'app', image: 'busybox:1', volumeMounts: [{ name: 'cfg', mountPath: '/etc/app' }] });

  it('is unchanged for a container that uses neither env references nor volumes', () => {
    const pod = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'busybox:1' })] });
    const withUnusedVolume = { ...pod, spec: { ...pod.spec, volumes } };
    expect(appHashOf(withUnusedVolume, 'app')).toBe(appHashOf(pod, 'app'));
  });

  it('follows the resolved env and the mounted volumes\' definitions, never their content', () => {
    const base = desiredPod({ name: 'web', containers: [mounting] });
    const pod = { ...base, spec: { ...base.spec, volumes } };
    const infra = infraHashOf(pod);
    expect(containerSpecHash(pod, mounting, infra, ['A=1'])).not.toBe(containerSpecHash(pod, mounting, infra, ['A=2']));
    const moved = { ...pod, spec: { ...pod.spec, volumes: [{ name: 'cfg', configMap: { name: 'other' } }] } };
    expect(containerSpecHash(moved, mounting, infra)).not.toBe(containerSpecHash(pod, mounting, infra));
  });
});

describe('containerBinds', () => {
  it('binds whole volume folders, read-only for ConfigMaps and Secrets, and host paths as they are', () => {
    const c = container({
      name: 'app',
      image: 'busybox:1',
      volumeMounts: [
        { name: 'cfg', mountPath: '/etc/app' },
        { name: 'creds', mountPath: '/etc/creds' },
        { name: 'scratch', mountPath: '/scratch', subPath: 'logs' },
        { name: 'dev', mountPath: '/dev/ttyUSB0', readOnly: true },
        { name: 'data', mountPath: '/data' },
      ],
    });
    const base = desiredPod({ name: 'web', uid: 'u1', containers: [c] });
    const pod = {
      ...base,
      spec: {
        ...base.spec,
        volumes: [
          { name: 'cfg', configMap: { name: 'app-files' } },
          { name: 'creds', secret: { secretName: 'creds' } },
          { name: 'scratch', emptyDir: {} },
          { name: 'dev', hostPath: { path: '/dev/ttyUSB0' } },
          { name: 'data', hostPath: { path: '/srv/data', type: 'DirectoryOrCreate' as const } },
        ],
      },
    };
    expect(containerBinds('/var/lib/flotilla', pod, c)).toEqual([
      '/var/lib/flotilla/pods/u1/volumes/cfg:/etc/app:ro',
      '/var/lib/flotilla/pods/u1/volumes/creds:/etc/creds:ro',
      '/var/lib/flotilla/pods/u1/volumes/scratch/logs:/scratch',
      '/dev/ttyUSB0:/dev/ttyUSB0:ro',
      '/srv/data:/data',
    ]);
  });
});
