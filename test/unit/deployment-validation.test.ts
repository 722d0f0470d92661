import { describe, expect, it } from 'vitest';
import { fenceposts } from '../../hub/controllers/deployment-plan.js';
import type { DeploymentSpec } from '../../shared/resources/deployment.js';
import { validateManifest } from '../../shared/resources/validate.js';

function deploymentManifest(spec: Record<string, unknown>): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web' },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'flotilla-test/busybox:1' }] } },
      ...spec,
    },
  };
}

function errorsOf(spec: Record<string, unknown>): string[] {
  return validateManifest(deploymentManifest(spec)).errors.map((e) => `${e.path}: ${e.message}`);
}

describe('Deployment validation', () => {
  it("refuses a DaemonSet's updateStrategy on a Deployment, pointing to spec.strategy", () => {
    expect(errorsOf({ updateStrategy: { type: 'Waves', waves: [{ count: 1 }] } })).toEqual([
      "spec.updateStrategy: a Deployment's strategy is spec.strategy, as in Kubernetes (type Waves included); updateStrategy is a DaemonSet's",
    ]);
    expect(errorsOf({ strategy: { type: 'Waves', waves: [{ count: 1 }, { percent: 100 }] } })).toEqual([]);
  });

  it('refuses maxSurge and maxUnavailable both 0, naming the field', () => {
    const why = 'spec.strategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge is 0 (the rollout could never make progress)';
    expect(errorsOf({ strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 0 } } })).toEqual([why]);
    expect(errorsOf({ strategy: { rollingUpdate: { maxSurge: '0%', maxUnavailable: 0 } } })).toEqual([why]);
  });

  it('accepts one of them 0 (the other defaults to 25 %)', () => {
    expect(errorsOf({ strategy: { rollingUpdate: { maxSurge: 0 } } })).toEqual([]);
    expect(errorsOf({ strategy: { rollingUpdate: { maxUnavailable: 0 } } })).toEqual([]);
    expect(errorsOf({ strategy: { rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } } })).toEqual([]);
  });

  it('refuses maxUnavailable over 100 %, rollingUpdate with Recreate, and a progress deadline within minReadySeconds', () => {
    expect(errorsOf({ strategy: { rollingUpdate: { maxUnavailable: '150%' } } })).toEqual(['spec.strategy.rollingUpdate.maxUnavailable: must not be greater than 100%']);
    expect(errorsOf({ strategy: { type: 'Recreate', rollingUpdate: { maxSurge: 1 } } })).toEqual(["spec.strategy.rollingUpdate: may not be specified when strategy type is 'Recreate'"]);
    expect(errorsOf({ minReadySeconds: 30, progressDeadlineSeconds: 30 })).toEqual(['spec.progressDeadlineSeconds: must be greater than minReadySeconds']);
  });

  it('names the field of a bad value type', () => {
    expect(errorsOf({ strategy: { rollingUpdate: { maxSurge: 'lots' } } })).toEqual(["spec.strategy.rollingUpdate.maxSurge: must be an integer or a percentage such as '10%'"]);
  });
});

describe('fenceposts: maxSurge and maxUnavailable as pod counts', () => {
  const spec = (replicas: number, maxSurge?: number | string, maxUnavailable?: number | string, type?: 'Recreate'): DeploymentSpec => ({
    replicas,
    selector: { matchLabels: { app: 'web' } },
    template: { spec: { containers: [{ name: 'web', image: 'x' }] } },
    strategy: type ? { type } : { rollingUpdate: { ...(maxSurge !== undefined ? { maxSurge } : {}), ...(maxUnavailable !== undefined ? { maxUnavailable } : {}) } },
  });

  it('defaults to 25 % each, surge rounded up and unavailable down', () => {
    expect(fenceposts(spec(10))).toEqual({ maxSurge: 3, maxUnavailable: 2 });
    expect(fenceposts(spec(4))).toEqual({ maxSurge: 1, maxUnavailable: 1 });
    expect(fenceposts(spec(1))).toEqual({ maxSurge: 1, maxUnavailable: 0 });
  });

  it('lets one pod be unavailable when both round to 0, and never more than replicas', () => {
    expect(fenceposts(spec(3, '10%', '0%'))).toEqual({ maxSurge: 1, maxUnavailable: 0 });
    expect(fenceposts(spec(3, '0%', '10%'))).toEqual({ maxSurge: 0, maxUnavailable: 1 });
    expect(fenceposts(spec(2, 0, 5))).toEqual({ maxSurge: 0, maxUnavailable: 2 });
  });

  it('has neither with Recreate', () => {
    expect(fenceposts(spec(5, undefined, undefined, 'Recreate'))).toEqual({ maxSurge: 0, maxUnavailable: 0 });
  });
});
