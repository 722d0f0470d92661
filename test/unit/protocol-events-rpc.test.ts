import { describe, expect, it } from 'vitest';
import {
  MAX_EVENTS_PER_BATCH,
  MAX_EVENT_MESSAGE_LENGTH,
  PROTOCOL_VERSION,
  decodePayload,
  eventBatchSchema,
  type DecodeResult,
} from '../../shared/protocol/messages.js';
import { RPC_MAX_CHUNK_BYTES, rpcRequestSchema, rpcResponseSchema } from '../../shared/protocol/rpc.js';

// The events channel and the rpc topics: what a valid payload is, and that a bad one is refused
// with the path of the bad field (the hub drops it and logs that path).

type Fields = Record<string, unknown>;
const bytes = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

function podEvent(fields: Fields = {}): Fields {
  return { podUid: 'uid-1', podName: 'web', namespace: 'default', container: 'app', type: 'Normal', reason: 'Started', message: 'Started container app', ts: '2025-01-01T12:00:00.000Z', ...fields };
}

function eventBatch(fields: Fields = {}): Fields {
  return { v: PROTOCOL_VERSION, events: [podEvent()], ...fields };
}

function logsRequest(params: Fields = {}, fields: Fields = {}): Fields {
  return { v: PROTOCOL_VERSION, id: 'r-1', method: 'logs', params: { podUid: 'uid-1', container: 'app', follow: false, ...params }, ...fields };
}

function paths<T>(result: DecodeResult<T>): string[] {
  expect(result.ok).toBe(false);
  return result.ok ? [] : result.errors.map((e) => e.path);
}

function value<T>(result: DecodeResult<T>): T {
  if (!result.ok) expect.fail(`expected a valid payload, got ${JSON.stringify(result.errors)}`);
  return result.value;
}

describe('the events channel', () => {
  it('decodes a batch of pod events, container and dropped count optional', () => {
    const decoded = value(decodePayload(eventBatchSchema, bytes(eventBatch({ events: [podEvent(), podEvent({ container: undefined, reason: 'Pulling', message: 'Pulling image "x"' })], dropped: 3 }))));
    expect(decoded.events).toHaveLength(2);
    expect(decoded.events[1]).not.toHaveProperty('container');
    expect(decoded.dropped).toBe(3);
  });

  it('names the field of a bad event in the batch', () => {
    expect(paths(decodePayload(eventBatchSchema, bytes(eventBatch({ events: [podEvent(), podEvent({ type: 'Error' })] }))))).toEqual(['events[1].type']);
    expect(paths(decodePayload(eventBatchSchema, bytes(eventBatch({ events: [podEvent({ podUid: '' })] }))))).toEqual(['events[0].podUid']);
    expect(paths(decodePayload(eventBatchSchema, bytes(eventBatch({ events: [podEvent({ reason: undefined })] }))))).toEqual(['events[0].reason']);
    expect(paths(decodePayload(eventBatchSchema, bytes(eventBatch({ events: [podEvent({ ts: 17 })] }))))).toEqual(['events[0].ts']);
  });

  it('refuses an empty batch, an oversized batch and an overlong message', () => {
    expect(paths(decodePayload(eventBatchSchema, bytes(eventBatch({ events: [] }))))).toEqual(['events']);
    const many = Array.from({ length: MAX_EVENTS_PER_BATCH + 1 }, () => podEvent());
    expect(paths(decodePayload(eventBatchSchema, bytes(eventBatch({ events: many }))))).toEqual(['events']);
    expect(value(decodePayload(eventBatchSchema, bytes(eventBatch({ events: many.slice(1) })))).events).toHaveLength(MAX_EVENTS_PER_BATCH);
    expect(paths(decodePayload(eventBatchSchema, bytes(eventBatch({ events: [podEvent({ message: 'x'.repeat(MAX_EVENT_MESSAGE_LENGTH + 1) })] }))))).toEqual(['events[0].message']);
  });

  it('decodes node events beside pod events, and names the field of a bad one', () => {
    const nodeEvent = { kind: 'Node', node: 'edge-1', type: 'Warning', reason: 'ImageGCFailed', message: 'Failed to garbage collect images: engine unavailable', ts: '2025-01-01T12:00:00.000Z' };
    const decoded = value(decodePayload(eventBatchSchema, bytes(eventBatch({ events: [podEvent({ kind: 'Pod' }), nodeEvent, podEvent()] }))));
    expect(decoded.events.map((e) => e.kind)).toEqual(['Pod', 'Node', undefined]);
    expect(paths(decodePayload(eventBatchSchema, bytes(eventBatch({ events: [{ ...nodeEvent, node: '' }] }))))).toEqual(['events[0].node']);
    expect(paths(decodePayload(eventBatchSchema, bytes(eventBatch({ events: [{ ...nodeEvent, kind: 'Cluster' }] }))))).toEqual(['events[0].kind']);
    // A node event is not a pod event without its pod fields, nor the other way round.
    expect(paths(decodePayload(eventBatchSchema, bytes(eventBatch({ events: [podEvent({ kind: 'Node' })] }))))).toEqual(['events[0].node']);
  });

  it('refuses another protocol version and a negative dropped count', () => {
    expect(paths(decodePayload(eventBatchSchema, bytes(eventBatch({ v: 2 }))))).toEqual(['v']);
    expect(paths(decodePayload(eventBatchSchema, bytes(eventBatch({ dropped: -1 }))))).toEqual(['dropped']);
  });
});

describe('rpc requests', () => {
  it('decodes a logs request with its options', () => {
    const req = value(decodePayload(rpcRequestSchema, bytes(logsRequest({ tail: 2, follow: true, sinceSeconds: 300, previous: true }))));
    expect(req).toEqual({ v: PROTOCOL_VERSION, id: 'r-1', method: 'logs', params: { podUid: 'uid-1', container: 'app', tail: 2, follow: true, sinceSeconds: 300, previous: true } });
  });

  it('decodes cancel and keepalive, which carry only an id', () => {
    expect(value(decodePayload(rpcRequestSchema, bytes({ v: PROTOCOL_VERSION, id: 'r-1', method: 'cancel' }))).method).toBe('cancel');
    expect(value(decodePayload(rpcRequestSchema, bytes({ v: PROTOCOL_VERSION, id: 'r-1', method: 'keepalive' }))).method).toBe('keepalive');
  });

  it('names the bad field of a logs request', () => {
    expect(paths(decodePayload(rpcRequestSchema, bytes(logsRequest({ tail: -1 }))))).toEqual(['params.tail']);
    expect(paths(decodePayload(rpcRequestSchema, bytes(logsRequest({ tail: 1.5 }))))).toEqual(['params.tail']);
    expect(paths(decodePayload(rpcRequestSchema, bytes(logsRequest({ container: '' }))))).toEqual(['params.container']);
    expect(paths(decodePayload(rpcRequestSchema, bytes(logsRequest({ follow: 'yes' }))))).toEqual(['params.follow']);
    expect(paths(decodePayload(rpcRequestSchema, bytes(logsRequest({}, { id: '' }))))).toEqual(['id']);
    expect(paths(decodePayload(rpcRequestSchema, bytes(logsRequest({}, { id: 'x'.repeat(65) }))))).toEqual(['id']);
  });

  it('refuses a method it does not know', () => {
    expect(decodePayload(rpcRequestSchema, bytes({ v: PROTOCOL_VERSION, id: 'r-1', method: 'exec', params: {} })).ok).toBe(false);
  });
});

describe('rpc responses', () => {
  it('decodes chunks, the end, and a refusal with its code', () => {
    expect(value(decodePayload(rpcResponseSchema, bytes({ v: PROTOCOL_VERSION, id: 'r-1', seq: 0, chunk: 'line-1\n' }))).chunk).toBe('line-1\n');
    expect(value(decodePayload(rpcResponseSchema, bytes({ v: PROTOCOL_VERSION, id: 'r-1', seq: 4, eof: true }))).eof).toBe(true);
    const refusal = value(decodePayload(rpcResponseSchema, bytes({ v: PROTOCOL_VERSION, id: 'r-1', seq: 0, error: 'too many streams', code: 'Busy' })));
    expect(refusal).toMatchObject({ error: 'too many streams', code: 'Busy' });
  });

  it('takes a chunk of RPC_MAX_CHUNK_BYTES characters and no more', () => {
    expect(decodePayload(rpcResponseSchema, bytes({ v: PROTOCOL_VERSION, id: 'r-1', seq: 0, chunk: 'x'.repeat(RPC_MAX_CHUNK_BYTES) })).ok).toBe(true);
    expect(paths(decodePayload(rpcResponseSchema, bytes({ v: PROTOCOL_VERSION, id: 'r-1', seq: 0, chunk: 'x'.repeat(RPC_MAX_CHUNK_BYTES + 1) })))).toEqual(['chunk']);
  });

  it('names a bad sequence number or error code', () => {
    expect(paths(decodePayload(rpcResponseSchema, bytes({ v: PROTOCOL_VERSION, id: 'r-1', seq: -1 })))).toEqual(['seq']);
    expect(paths(decodePayload(rpcResponseSchema, bytes({ v: PROTOCOL_VERSION, id: 'r-1', seq: 0, error: 'x', code: 'Teapot' })))).toEqual(['code']);
  });
});
