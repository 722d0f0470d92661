import { describe, expect, it } from 'vitest';
import {
  MAX_NODE_MESSAGE_LENGTH,
  MAX_PODS_PER_REPORT,
  MAX_STATUS_MESSAGE_LENGTH,
  MAX_STATUS_REPORT_BYTES,
  fitStatusReport,
  truncate,
} from '../../shared/protocol/bounds.js';
import { PROTOCOL_VERSION, decodePayload, eventBatchSchema, joinRequestSchema, statusReportSchema, type PodStatusReport, type StatusReport } from '../../shared/protocol/messages.js';
import { formatFieldErrors } from '../../shared/resources/fields.js';

function container(name: string, message?: string): PodStatusReport['containerStatuses'][number] {
  return { name, image: 'busybox:1', ready: false, restartCount: 0, state: { waiting: { reason: 'ImagePullBackOff', ...(message !== undefined ? { message } : {}) } } };
}

function pod(i: number, containers: PodStatusReport['containerStatuses'] = [container('app')], message?: string): PodStatusReport {
  return { uid: `uid-${i}`, name: `pod-${i}`, namespace: 'default', phase: 'Pending', containerStatuses: containers, ...(message !== undefined ? { message } : {}) };
}

function report(o: { engineMessage?: string; pods?: PodStatusReport[]; capacity?: Record<string, string> } = {}): StatusReport {
  return {
    v: PROTOCOL_VERSION,
    ts: '2026-01-01T00:00:00.000Z',
    observedRev: 3,
    node: {
      info: { hostname: 'pi-1', operatingSystem: 'linux', architecture: 'arm64', agentVersion: '1.0.0' },
      capacity: o.capacity ?? { cpu: '4', memory: '4Gi', pods: '110' },
      engineReady: o.engineMessage === undefined,
      ...(o.engineMessage !== undefined ? { engineMessage: o.engineMessage } : {}),
    },
    pods: o.pods ?? [pod(1)],
  };
}

function refusal(schema: Parameters<typeof decodePayload>[0], value: unknown): string {
  const decoded = decodePayload(schema, JSON.stringify(value));
  if (decoded.ok) return expect.fail('the message was accepted');
  return formatFieldErrors(decoded.errors);
}

describe('bounds of device messages', () => {
  it('refuses a status report with a field over its bound, naming the field', () => {
    expect(refusal(statusReportSchema, report({ engineMessage: 'x'.repeat(MAX_NODE_MESSAGE_LENGTH + 1) }))).toMatch(/^node\.engineMessage: /);
    expect(refusal(statusReportSchema, report({ pods: [pod(1, [container('app', 'm'.repeat(MAX_STATUS_MESSAGE_LENGTH + 1))])] }))).toMatch(/^pods\[0\]\.containerStatuses\[0\]\.state\.waiting\.message: /);
    expect(refusal(statusReportSchema, report({ pods: Array.from({ length: MAX_PODS_PER_REPORT + 1 }, (_, i) => pod(i)) }))).toMatch(/^pods: /);
    const capacity = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`example.com/device-${i}`, '1']));
    expect(refusal(statusReportSchema, report({ capacity }))).toMatch(/^node\.capacity: must have at most 64 entries/);
    expect(refusal(statusReportSchema, { ...report(), ts: 't'.repeat(65) })).toMatch(/^ts: /);
  });

  it('reports at most a few errors of a payload that breaks its bounds many times', () => {
    const pods = Array.from({ length: 500 }, (_, i) => pod(i, [container('app', 'm'.repeat(MAX_STATUS_MESSAGE_LENGTH + 1))]));
    const decoded = decodePayload(statusReportSchema, JSON.stringify(report({ pods })));
    expect(decoded.ok).toBe(false);
    if (!decoded.ok) expect(decoded.errors.length).toBeLessThanOrEqual(5);
  });

  it('accepts a status report within its bounds', () => {
    expect(decodePayload(statusReportSchema, JSON.stringify(report({ engineMessage: 'e'.repeat(MAX_NODE_MESSAGE_LENGTH) }))).ok).toBe(true);
  });

  it('refuses a join request with too many labels or a label too long, naming the field', () => {
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`l${i}`, 'v']));
    expect(refusal(joinRequestSchema, { v: PROTOCOL_VERSION, name: 'pi-1', labels: many })).toBe('labels: must have at most 64 entries');
    // The error names the key, but cut: a key may be as long as the packet.
    const longKey = refusal(joinRequestSchema, { v: PROTOCOL_VERSION, name: 'pi-1', labels: { [`k${'x'.repeat(100_000)}`]: 'v' } });
    expect(longKey).toMatch(/^labels\.kxxx/);
    expect(longKey.length).toBeLessThan(700);
    expect(refusal(joinRequestSchema, { v: PROTOCOL_VERSION, name: 'n'.repeat(254) })).toMatch(/^name: /);
  });

  it('refuses a device event whose names are over their bounds', () => {
    const event = { podUid: 'u', podName: 'p'.repeat(254), namespace: 'default', type: 'Normal', reason: 'Started', message: 'ok', ts: '2026-01-01T00:00:00Z' };
    expect(refusal(eventBatchSchema, { v: PROTOCOL_VERSION, events: [event] })).toMatch(/^events\[0\]\.podName: /);
  });
});

describe('fitStatusReport (the agent sends nothing the hub refuses)', () => {
  it('cuts long free text to its bound and marks the cut', () => {
    const fitted = fitStatusReport(report({ engineMessage: 'docker: '.repeat(10_000), pods: [pod(1, [container('app', 'pull failed '.repeat(2_000))], 'x'.repeat(10_000))] }));
    expect(fitted.node.engineMessage).toHaveLength(MAX_NODE_MESSAGE_LENGTH);
    expect(fitted.node.engineMessage!.endsWith('…')).toBe(true);
    expect(fitted.pods[0]!.message).toHaveLength(MAX_STATUS_MESSAGE_LENGTH);
    expect(fitted.pods[0]!.containerStatuses[0]!.state.waiting!.message).toHaveLength(MAX_STATUS_MESSAGE_LENGTH);
    expect(decodePayload(statusReportSchema, JSON.stringify(fitted)).ok).toBe(true);
  });

  it('leaves a report within its bounds as it is', () => {
    const small = report({ engineMessage: 'engine down' });
    expect(fitStatusReport(small)).toEqual(small);
  });

  it('keeps a report of 110 failing pods with long messages under the size budget, every pod kept', () => {
    const pods = Array.from({ length: 110 }, (_, i) => pod(i, [1, 2, 3, 4].map((c) => container(`c${c}`, 'e'.repeat(MAX_STATUS_MESSAGE_LENGTH))), 'p'.repeat(MAX_STATUS_MESSAGE_LENGTH)));
    const whole = report({ pods });
    expect(Buffer.byteLength(JSON.stringify(whole))).toBeGreaterThan(MAX_STATUS_REPORT_BYTES);
    const fitted = fitStatusReport(whole);
    expect(Buffer.byteLength(JSON.stringify(fitted))).toBeLessThanOrEqual(MAX_STATUS_REPORT_BYTES);
    expect(fitted.pods).toHaveLength(110);
    expect(decodePayload(statusReportSchema, JSON.stringify(fitted)).ok).toBe(true);
  });

  it('leaves pods out only when even the shortest messages do not fit', () => {
    const pods = Array.from({ length: 200 }, (_, i) => pod(i, [container('app', 'e')]));
    const fitted = fitStatusReport(report({ pods }), 10_000);
    expect(Buffer.byteLength(JSON.stringify(fitted))).toBeLessThanOrEqual(10_000);
    expect(fitted.pods.length).toBeGreaterThan(0);
    expect(fitted.pods.length).toBeLessThan(200);
  });

  it('never splits a character made of two UTF-16 units', () => {
    const cut = truncate(`${'a'.repeat(8)}😀😀`, 10);
    expect(cut).toBe(`${'a'.repeat(8)}…`);
  });
});
