import { describe, expect, it } from 'vitest';
import { UPDATE_ORDER_ANNOTATION, planSteps, updateOrder } from '../../agent/reconcile/plan.js';
import type { DesiredPod } from '../../shared/protocol/messages.js';
import { PAUSE_IMAGE, actualState, container, desiredPod, expectSteps, infraContainer, onlyStep, planContext, removedIds, runtimeContainer } from './builders.js';

const withOrder = (pod: DesiredPod, order?: string): DesiredPod => (order ? { ...pod, annotations: { [UPDATE_ORDER_ANNOTATION]: order } } : pod);
const v1 = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:1' })] });
const v2 = desiredPod({ name: 'web', containers: [container({ name: 'app', image: 'img:2' })] });

describe('updateOrder', () => {
  it('is download-then-kill by default and for unknown values', () => {
    expect(updateOrder(v2)).toBe('download-then-kill');
    expect(updateOrder(withOrder(v2, 'download-then-kill'))).toBe('download-then-kill');
    expect(updateOrder(withOrder(v2, 'bogus'))).toBe('download-then-kill');
    expect(updateOrder(withOrder(v2, 'kill-then-download'))).toBe('kill-then-download');
  });
});

describe('planSteps: update order when a container image changes', () => {
  it('download-then-kill (default): pulls first and leaves the old container running', () => {
    const pod = withOrder(v2, 'download-then-kill');
    const old = runtimeContainer({ pod: v1, container: 'app' });
    const steps = planSteps(actualState({ containers: [infraContainer({ pod: v2 }), old], images: [PAUSE_IMAGE, 'img:1'] }), [pod], planContext());
    expectSteps(steps, ['pull']);
    expect(onlyStep(steps, 'pull').image).toBe('img:2');
    expect(removedIds(steps)).toEqual([]);
  });

  it('kill-then-download: removes the old container first and pulls nothing yet', () => {
    const pod = withOrder(v2, 'kill-then-download');
    const old = runtimeContainer({ pod: v1, container: 'app' });
    const steps = planSteps(actualState({ containers: [infraContainer({ pod: v2 }), old], images: [PAUSE_IMAGE, 'img:1'] }), [pod], planContext());
    expectSteps(steps, ['remove']);
    expect(removedIds(steps)).toEqual([old.id]);
  });

  it('kill-then-download: once the old container is gone, pulls, then creates', () => {
    const pod = withOrder(v2, 'kill-then-download');
    const infra = infraContainer({ pod: v2 });
    const pulling = planSteps(actualState({ containers: [infra], images: [PAUSE_IMAGE, 'img:1'] }), [pod], planContext());
    expectSteps(pulling, ['pull']);
    expect(onlyStep(pulling, 'pull').image).toBe('img:2');
    const creating = planSteps(actualState({ containers: [infra], images: [PAUSE_IMAGE, 'img:1', 'img:2'] }), [pod], planContext());
    expectSteps(creating, ['createContainer']);
  });

  it('kill-then-download with the new image already present replaces as usual', () => {
    const pod = withOrder(v2, 'kill-then-download');
    const old = runtimeContainer({ pod: v1, container: 'app' });
    const steps = planSteps(actualState({ containers: [infraContainer({ pod: v2 }), old], images: [PAUSE_IMAGE, 'img:1', 'img:2'] }), [pod], planContext());
    expectSteps(steps, ['remove', 'createContainer']);
    expect(removedIds(steps)).toEqual([old.id]);
  });
});
