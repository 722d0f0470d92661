import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { StepExecutor, type ExecutorOptions } from '../../agent/reconcile/execute.js';
import type { ContainerCreateSpec, ContainerRuntime } from '../../agent/runtime/runtime.js';
import { validateManifest } from '../../shared/resources/validate.js';
import type { Container } from '../../shared/resources/pod.js';
import { PAUSE_IMAGE, POD_NETWORK, container, desiredPod } from './builders.js';

// A container's resource limits in the engine's terms: memory → Memory, cpu → NanoCpus, and
// Flotilla's own `pids` → PidsLimit (or the node's --pod-pids-limit when the spec sets none).
// Requests are for the scheduler and never cap a container.

const log = pino({ level: 'silent' });

/** The create spec the executor hands the engine for one app container. */
async function created(c: Container, opts: Partial<ExecutorOptions> = {}): Promise<ContainerCreateSpec> {
  const specs: ContainerCreateSpec[] = [];
  const runtime = { createContainer: async (spec: ContainerCreateSpec) => (specs.push(spec), 'id-1'), startContainer: async () => {} } as Partial<ContainerRuntime> as ContainerRuntime;
  const executor = new StepExecutor(runtime, { node: 'edge', stateDir: '/var/lib/flotilla-agent', pauseImage: PAUSE_IMAGE, podNetwork: POD_NETWORK, ...opts }, log, () => {});
  const pod = desiredPod({ name: 'web', containers: [c] });
  await executor.run({ action: 'createContainer', pod, container: c, infraId: 'infra-1', hash: 'h', restartCount: 0 });
  return specs[0]!;
}

function podWithResources(resources: unknown): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web' }, spec: { containers: [{ name: 'app', image: 'img:1', resources }] } };
}

describe('container limits on the engine', () => {
  it('maps limits.memory to Memory, limits.cpu to NanoCpus and limits.pids to PidsLimit', async () => {
    const spec = await created(container({ name: 'app', image: 'img:1', resources: { limits: { memory: '64Mi', cpu: '250m', pids: '50' } } }));
    expect(spec).toMatchObject({ memoryBytes: 64 * 1024 * 1024, nanoCpus: 250_000_000, pidsLimit: 50 });
  });

  it('takes requests for no limit', async () => {
    const spec = await created(container({ name: 'app', image: 'img:1', resources: { requests: { memory: '64Mi', cpu: 1, pids: 10 } } }));
    expect(spec.memoryBytes).toBeUndefined();
    expect(spec.nanoCpus).toBeUndefined();
    expect(spec.pidsLimit).toBeUndefined();
  });

  it('applies the node\'s pids limit to a container that sets none, and the container\'s own over it', async () => {
    expect((await created(container({ name: 'app', image: 'img:1' }), { podPidsLimit: 200 })).pidsLimit).toBe(200);
    expect((await created(container({ name: 'app', image: 'img:1', resources: { limits: { pids: 20 } } }), { podPidsLimit: 200 })).pidsLimit).toBe(20);
    expect((await created(container({ name: 'app', image: 'img:1' }))).pidsLimit).toBeUndefined();
  });
});

describe('validation of limits.pids', () => {
  it('accepts a positive integer, as a number or a quantity', () => {
    for (const pids of [1, '100', '2k']) expect(validateManifest(podWithResources({ limits: { pids } })).errors).toEqual([]);
  });

  it.each([
    [0, "must be a positive integer, not '0'"],
    ['1.5', "must be a positive integer, not '1.5'"],
    ['500m', "must be a positive integer, not '500m'"],
    ['-3', 'must be greater than or equal to 0'],
    ['many', "'many' is not a valid quantity"],
  ])('refuses %j, naming the field', (pids, message) => {
    const result = validateManifest(podWithResources({ limits: { pids } }));
    expect(result.object).toBeUndefined();
    const errors = result.errors.filter((e) => e.path === 'spec.containers[0].resources.limits.pids');
    expect(errors.map((e) => e.message).join('\n'), JSON.stringify(result.errors)).toContain(message);
  });
});
