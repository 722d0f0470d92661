import { describe, expect, it } from 'vitest';
import { HEARTBEAT_WRITE_MS, onlyHeartbeatMoved } from '../../hub/dispatch/status.js';
import type { NodeStatus } from '../../shared/resources/node.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

function status(beatAt: number, memory = 'False'): NodeStatus {
  return {
    capacity: { cpu: '2', memory: '1Gi', pods: '110' },
    conditions: [
      { type: 'Ready', status: 'True', reason: 'AgentReady', lastTransitionTime: iso(T0) },
      { type: 'MemoryPressure', status: memory, reason: 'Test', lastHeartbeatTime: iso(beatAt), lastTransitionTime: iso(T0) },
    ],
    lastHeartbeatTime: iso(beatAt),
  } as NodeStatus;
}

describe('onlyHeartbeatMoved (a status report that changes nothing but heartbeats is not written)', () => {
  it('holds while the stored heartbeat is fresh and nothing else changed', () => {
    expect(onlyHeartbeatMoved(status(T0), status(T0 + 5_000), T0 + 5_000)).toBe(true);
  });

  it('does not hold once the stored heartbeat is old', () => {
    const now = T0 + HEARTBEAT_WRITE_MS;
    expect(onlyHeartbeatMoved(status(T0), status(now), now)).toBe(false);
  });

  it('does not hold when a condition, the capacity or the revision changed', () => {
    expect(onlyHeartbeatMoved(status(T0), status(T0 + 1_000, 'True'), T0 + 1_000)).toBe(false);
    expect(onlyHeartbeatMoved(status(T0), { ...status(T0 + 1_000), capacity: { cpu: '4', memory: '1Gi', pods: '110' } }, T0 + 1_000)).toBe(false);
    expect(onlyHeartbeatMoved(status(T0), { ...status(T0 + 1_000), observedRevision: 3 }, T0 + 1_000)).toBe(false);
  });

  it('does not hold for a node never heard from', () => {
    expect(onlyHeartbeatMoved({}, status(T0), T0)).toBe(false);
  });
});
