import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { formatMap, goQuote, nodeDownward, podFieldValue, resourceFieldValue, type DownwardContext } from '../../agent/reconcile/downward.js';
import { creationEnv, expandCommand, expandVars, resolveEnv, serviceLinks, type CreationEnv } from '../../agent/reconcile/env.js';
import { podConfig } from '../../agent/reconcile/config.js';
import { containerSpecHash } from '../../agent/reconcile/hash.js';
import { planSteps } from '../../agent/reconcile/plan.js';
import { ServiceBook } from '../../agent/network/services.js';
import { VolumeManager } from '../../agent/volumes/manager.js';
import type { DesiredPod } from '../../shared/protocol/messages.js';
import type { ServiceAnnouncement } from '../../shared/protocol/services.js';
import { actualState, appHashOf, container, desiredPod, infraContainer, infraHashOf, onlyStep, planContext, runtimeContainer } from './builders.js';

// The environment a container is made with: the Service links the kubelet injects, the downward
// API's values, and what of it (nothing) restarts a running container when it changes.

const NO_SOURCES = { configs: [], secrets: [] };

function service(o: Partial<ServiceAnnouncement> & { name: string }): ServiceAnnouncement {
  return { v: 1, namespace: 'default', uid: `uid-${o.name}`, type: 'ClusterIP', clusterIP: '10.43.0.10', ports: [{ protocol: 'TCP', port: 80, targetPort: 8080 }], generation: 1, ...o };
}

const DOWNWARD: DownwardContext = { nodeName: 'edge-1', hostIP: '192.168.1.20', podIP: '10.42.1.7', allocatable: { cpu: '4', memory: '8Gi', 'ephemeral-storage': '32G' } };

function creation(pod: DesiredPod, links: [string, string][] = []): CreationEnv {
  return { pod, serviceLinks: links, downward: DOWNWARD };
}

describe('serviceLinks', () => {
  it('makes the kubelet\'s variables: host, first port, named ports and the Docker links', () => {
    const store = service({
      name: 'my-store',
      clusterIP: '10.43.0.20',
      ports: [
        { name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 },
        { name: 'dns-udp', protocol: 'UDP', port: 53, targetPort: 53 },
      ],
    });
    expect(Object.fromEntries(serviceLinks('default', [store]))).toEqual({
      MY_STORE_SERVICE_HOST: '10.43.0.20',
      MY_STORE_SERVICE_PORT: '80',
      MY_STORE_SERVICE_PORT_HTTP: '80',
      MY_STORE_SERVICE_PORT_DNS_UDP: '53',
      MY_STORE_PORT: 'tcp://10.43.0.20:80',
      MY_STORE_PORT_80_TCP: 'tcp://10.43.0.20:80',
      MY_STORE_PORT_80_TCP_PROTO: 'tcp',
      MY_STORE_PORT_80_TCP_PORT: '80',
      MY_STORE_PORT_80_TCP_ADDR: '10.43.0.20',
      MY_STORE_PORT_53_UDP: 'udp://10.43.0.20:53',
      MY_STORE_PORT_53_UDP_PROTO: 'udp',
      MY_STORE_PORT_53_UDP_PORT: '53',
      MY_STORE_PORT_53_UDP_ADDR: '10.43.0.20',
    });
  });

  it('takes only the pod\'s namespace, skips headless Services, and orders Services by name', () => {
    const links = serviceLinks('shop', [
      service({ name: 'web', namespace: 'shop', clusterIP: '10.43.0.2' }),
      service({ name: 'db', namespace: 'shop', clusterIP: 'None' }),
      service({ name: 'cache', namespace: 'shop', clusterIP: '10.43.0.3' }),
      service({ name: 'other', namespace: 'default', clusterIP: '10.43.0.4' }),
    ]);
    const hosts = links.filter(([k]) => k.endsWith('_SERVICE_HOST'));
    expect(hosts).toEqual([
      ['CACHE_SERVICE_HOST', '10.43.0.3'],
      ['WEB_SERVICE_HOST', '10.43.0.2'],
    ]);
  });

  it('reads a real service book, and none with enableServiceLinks false or without a book', () => {
    const dir = mkdtempSync(join(tmpdir(), 'svc-env-'));
    const book = new ServiceBook({ stateDir: dir, log: pino({ level: 'silent' }), onChange: () => {} });
    try {
      book.onServiceMessage('default', 'store', Buffer.from(JSON.stringify(service({ name: 'store', clusterIP: '10.43.7.7' }))));
      // A malformed message is ignored by the book: it gives no variables.
      book.onServiceMessage('default', 'broken', Buffer.from('{"v":1}'));
      const pod = desiredPod({ name: 'p', containers: [container({ name: 'app', image: 'busybox:1' })] });
      const node = { name: 'edge-1', stateDir: dir };
      const env = creationEnv(pod, pod.spec.containers[0]!, '10.42.1.9', node, book.services().values());
      expect(env.serviceLinks).toContainEqual(['STORE_SERVICE_HOST', '10.43.7.7']);
      expect(env.serviceLinks.some(([k]) => k.startsWith('BROKEN'))).toBe(false);
      expect(env.downward.podIP).toBe('10.42.1.9');
      const off = { ...pod, spec: { ...pod.spec, enableServiceLinks: false } };
      expect(creationEnv(off, off.spec.containers[0]!, undefined, node, book.services().values()).serviceLinks).toEqual([]);
      expect(creationEnv(pod, pod.spec.containers[0]!, undefined, node, undefined).serviceLinks).toEqual([]);
    } finally {
      book.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('resolveEnv at creation', () => {
  const pod: DesiredPod = {
    uid: 'u-123',
    name: 'web-1',
    namespace: 'shop',
    labels: { app: 'web', tier: 'front' },
    annotations: { 'example.com/owner': 'ops' },
    spec: { serviceAccountName: 'runner', containers: [{ name: 'app', image: 'busybox:1', resources: { limits: { cpu: '250m', memory: '64Mi' }, requests: { cpu: '100m' } } }, { name: 'side', image: 'busybox:1' }] },
  };

  it('puts the Service links first and lets the pod\'s own env override them', () => {
    const c = container({ name: 'app', image: 'busybox:1', env: [{ name: 'STORE_SERVICE_PORT', value: '9999' }, { name: 'MINE', value: '1' }] });
    const result = resolveEnv('shop', c, NO_SOURCES, creation(pod, [['STORE_SERVICE_HOST', '10.43.0.9'], ['STORE_SERVICE_PORT', '80']]));
    expect(result).toEqual({ ok: true, env: ['STORE_SERVICE_HOST=10.43.0.9', 'STORE_SERVICE_PORT=9999', 'MINE=1'] });
  });

  it('gives the downward API\'s fields', () => {
    const fields: Record<string, string> = {
      NAME: 'metadata.name',
      NS: 'metadata.namespace',
      UID: 'metadata.uid',
      APP: "metadata.labels['app']",
      NONE: "metadata.labels['absent']",
      OWNER: "metadata.annotations['example.com/owner']",
      NODE: 'spec.nodeName',
      SA: 'spec.serviceAccountName',
      POD_IP: 'status.podIP',
      POD_IPS: 'status.podIPs',
      HOST_IP: 'status.hostIP',
    };
    const c = container({ name: 'app', image: 'busybox:1', env: Object.entries(fields).map(([name, fieldPath]) => ({ name, valueFrom: { fieldRef: { fieldPath } } })) });
    const result = resolveEnv('shop', c, NO_SOURCES, creation(pod));
    expect(result).toEqual({
      ok: true,
      env: ['NAME=web-1', 'NS=shop', 'UID=u-123', 'APP=web', 'NONE=', 'OWNER=ops', 'NODE=edge-1', 'SA=runner', 'POD_IP=10.42.1.7', 'POD_IPS=10.42.1.7', 'HOST_IP=192.168.1.20'],
    });
  });

  it('leaves downward entries out when planning, so that the plan\'s env holds only what a ConfigMap or Secret gave', () => {
    const c = container({ name: 'app', image: 'busybox:1', env: [{ name: 'A', value: 'a' }, { name: 'N', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }] });
    expect(resolveEnv('shop', c, NO_SOURCES)).toEqual({ ok: true, env: ['A=a'] });
  });

  it('fails the container when a resourceFieldRef names a container the pod lacks', () => {
    const c = container({ name: 'app', image: 'busybox:1', env: [{ name: 'X', valueFrom: { resourceFieldRef: { containerName: 'ghost', resource: 'limits.cpu' } } }] });
    expect(resolveEnv('shop', c, NO_SOURCES, creation(pod))).toEqual({ ok: false, message: 'container "ghost" not found in pod shop/web-1' });
  });
});

describe('$(NAME) expansion at creation', () => {
  it('expands what is defined before, leaves the rest, and reads $$ as $', () => {
    const vars = new Map([['A', 'x'], ['B', 'y']]);
    expect(expandVars('$(A)-$(B)-$(C)-$$(A)-$$-$-a$', vars)).toBe('x-y-$(C)-$(A)-$-$-a$');
    expect(expandVars('$(A', vars)).toBe('$(A');
    expect(expandVars('cost $5 $(A)', vars)).toBe('cost $5 x');
  });

  it('expands env values from Service links, downward values and earlier entries, only when the container is made', () => {
    const pod = desiredPod({ name: 'p', containers: [container({ name: 'app', image: 'busybox:1' })] });
    const c = container({
      name: 'app',
      image: 'busybox:1',
      env: [
        { name: 'URL', value: 'http://$(STORE_SERVICE_HOST):$(PORT)/' },
        { name: 'PORT', value: '8080' },
        { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
        { name: 'SELF', value: '$(IP):$(PORT)' },
      ],
    });
    expect(resolveEnv('default', c, NO_SOURCES, creation(pod, [['STORE_SERVICE_HOST', '10.43.0.5']]))).toEqual({
      ok: true,
      env: ['STORE_SERVICE_HOST=10.43.0.5', 'URL=http://10.43.0.5:$(PORT)/', 'PORT=8080', 'IP=10.42.1.7', 'SELF=10.42.1.7:8080'],
    });
    // When planning, values are as written: the spec hash is what it was before expansion existed.
    expect(resolveEnv('default', c, NO_SOURCES)).toEqual({ ok: true, env: ['URL=http://$(STORE_SERVICE_HOST):$(PORT)/', 'PORT=8080', 'SELF=$(IP):$(PORT)'] });
    expect(expandCommand(['sh', '-c', 'echo $(SELF) $(NOPE)'], ['SELF=10.42.1.7:8080'])).toEqual(['sh', '-c', 'echo 10.42.1.7:8080 $(NOPE)']);
    expect(expandCommand(undefined, [])).toBeUndefined();
  });
});

describe('nodeDownward', () => {
  it('gives a hostNetwork pod the node\'s address as its own, and another pod its sandbox\'s', () => {
    const pod = desiredPod({ name: 'p', containers: [container({ name: 'app', image: 'busybox:1' })] });
    const host = desiredPod({ name: 'h', hostNetwork: true, containers: [container({ name: 'app', image: 'busybox:1' })] });
    const own = nodeDownward(pod, 'edge-1', tmpdir(), '10.42.1.4');
    expect(own.podIP).toBe('10.42.1.4');
    expect(Number(own.allocatable.cpu)).toBeGreaterThan(0);
    expect(Number(own.allocatable['ephemeral-storage'])).toBeGreaterThan(0);
    const shared = nodeDownward(host, 'edge-1', tmpdir(), undefined);
    expect(shared.podIP).toBe(shared.hostIP);
  });
});

describe('resourceFieldValue', () => {
  const pod: DesiredPod = {
    uid: 'u',
    name: 'p',
    namespace: 'default',
    spec: {
      containers: [
        { name: 'app', image: 'busybox:1', resources: { limits: { cpu: '250m', memory: '100M', 'ephemeral-storage': '1Gi' }, requests: { cpu: '100m', memory: '64Mi' } } },
        { name: 'bare', image: 'busybox:1' },
        { name: 'only-limits', image: 'busybox:1', resources: { limits: { cpu: '1500m', memory: '1Gi' } } },
      ],
    },
  };
  const value = (resource: string, containerName: string | undefined, divisor?: string) => resourceFieldValue(pod, { resource, ...(containerName ? { containerName } : {}), ...(divisor ? { divisor } : {}) }, 'app', DOWNWARD);

  it('rounds up as Kubernetes does: millicores for CPU, bytes for memory, over the divisor', () => {
    expect(value('limits.cpu', undefined)).toBe('1');
    expect(value('limits.cpu', 'app', '1m')).toBe('250');
    expect(value('requests.cpu', 'app', '1m')).toBe('100');
    expect(value('limits.memory', 'app')).toBe('100000000');
    expect(value('limits.memory', 'app', '1Mi')).toBe('96');
    expect(value('requests.memory', 'app', '1Mi')).toBe('64');
    expect(value('limits.ephemeral-storage', 'app', '1G')).toBe('2');
    expect(value('limits.cpu', 'only-limits')).toBe('2');
  });

  it('takes the node\'s allocatable for an unset limit, the limit for an unset request, else 0', () => {
    expect(value('limits.cpu', 'bare')).toBe('4');
    expect(value('limits.memory', 'bare', '1Gi')).toBe('8');
    expect(value('limits.ephemeral-storage', 'bare', '1G')).toBe('32');
    expect(value('requests.memory', 'only-limits', '1Mi')).toBe('1024');
    expect(value('requests.cpu', 'bare')).toBe('0');
  });
});

describe('downwardAPI files', () => {
  it('writes labels and annotations as the kubelet does: sorted key="value" lines, Go-quoted', () => {
    expect(formatMap({ tier: 'front', app: 'web', note: 'say "hi"\n\\o/' })).toBe('app="web"\nnote="say \\"hi\\"\\n\\\\o/"\ntier="front"\n');
    expect(formatMap({})).toBe('');
    expect(goQuote('a\u0001b\tc')).toBe('"a\\x01b\\tc"');
  });

  it('gives whole maps only for volume paths, and one key by subscript', () => {
    const pod: DesiredPod = { uid: 'u', name: 'p', namespace: 'n', labels: { b: '2', a: '1' }, spec: { containers: [{ name: 'c', image: 'x:1' }] } };
    expect(podFieldValue(pod, { fieldPath: 'metadata.labels' }, DOWNWARD)).toBe('a="1"\nb="2"\n');
    expect(podFieldValue(pod, { fieldPath: 'metadata.annotations' }, DOWNWARD)).toBe('');
    expect(podFieldValue(pod, { fieldPath: "metadata.labels['b']" }, DOWNWARD)).toBe('2');
    expect(podFieldValue(pod, { fieldPath: 'status.nothing' }, DOWNWARD)).toBeUndefined();
  });
});

describe('what restarts a running container', () => {
  it('neither a change of labels nor a new Service changes the spec hash of a container using them', () => {
    const app = container({ name: 'app', image: 'busybox:1', env: [{ name: 'APP', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } }, { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }] });
    const before: DesiredPod = { ...desiredPod({ name: 'p', containers: [app] }), labels: { app: 'v1' } };
    const infra = infraContainer({ pod: before });
    const running = runtimeContainer({ pod: before, container: 'app', state: 'running' });
    // The same pod, relabelled (a new desired set with new objects), and a Service now known:
    // nothing of either enters the plan, so nothing is replaced.
    const after: DesiredPod = { ...before, labels: { app: 'v2' }, spec: { ...before.spec, containers: [{ ...app }] } };
    const config = podConfig([after], NO_SOURCES, new Map());
    expect(config.resolvedEnv.size).toBe(0);
    expect(containerSpecHash(after, after.spec.containers[0]!, infraHashOf(after))).toBe(appHashOf(before, 'app'));
    expect(planSteps(actualState({ containers: [infra, running] }), [after], planContext({ resolvedEnv: config.resolvedEnv }))).toEqual([]);
  });

  it('carries the sandbox\'s address into the create step, for status.podIP', () => {
    const pod = desiredPod({ name: 'p', containers: [container({ name: 'app', image: 'busybox:1' })] });
    const infra = { ...infraContainer({ pod }), podIP: '10.42.1.33' };
    const step = onlyStep(planSteps(actualState({ containers: [infra], images: ['busybox:1'] }), [pod], planContext()), 'createContainer');
    expect(step.podIP).toBe('10.42.1.33');
  });
});

describe('downwardAPI volumes on disk', () => {
  it('writes the files with their modes, and rewrites them as a set when the labels change', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flt-dapi-'));
    try {
      const volumes = new VolumeManager(dir, () => {});
      const base: DesiredPod = {
        uid: 'u-dapi',
        name: 'p',
        namespace: 'ns',
        labels: { app: 'web' },
        annotations: { note: 'x' },
        spec: {
          containers: [{ name: 'app', image: 'busybox:1', resources: { limits: { memory: '64Mi' } } }],
          volumes: [
            {
              name: 'info',
              downwardAPI: {
                defaultMode: 0o640,
                items: [
                  { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
                  { path: 'annotations', fieldRef: { fieldPath: 'metadata.annotations' } },
                  { path: 'meta/name', fieldRef: { fieldPath: 'metadata.name' }, mode: 0o600 },
                  { path: 'mem', resourceFieldRef: { containerName: 'app', resource: 'limits.memory', divisor: '1Mi' } },
                ],
              },
            },
          ],
        },
      };
      const vol = join(dir, 'pods', 'u-dapi', 'volumes', 'info');
      expect(volumes.sync([base], NO_SOURCES)).toEqual(new Map());
      expect(readFileSync(join(vol, 'labels'), 'utf8')).toBe('app="web"\n');
      expect(readFileSync(join(vol, 'annotations'), 'utf8')).toBe('note="x"\n');
      expect(readFileSync(join(vol, 'meta', 'name'), 'utf8')).toBe('p');
      expect(readFileSync(join(vol, 'mem'), 'utf8')).toBe('64');
      expect(statSync(join(vol, 'labels')).mode & 0o777).toBe(0o640);
      expect(statSync(join(vol, 'meta', 'name')).mode & 0o777).toBe(0o600);
      const first = readlinkSync(join(vol, '..data'));
      volumes.sync([base], NO_SOURCES);
      expect(readlinkSync(join(vol, '..data'))).toBe(first);
      volumes.sync([{ ...base, labels: { app: 'web', tier: 'front' } }], NO_SOURCES);
      expect(readlinkSync(join(vol, '..data'))).not.toBe(first);
      expect(readFileSync(join(vol, 'labels'), 'utf8')).toBe('app="web"\ntier="front"\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
