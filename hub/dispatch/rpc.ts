import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { PROTOCOL_VERSION, decodePayload, encodePayload } from '../../shared/protocol/messages.js';
import { RPC_KEEPALIVE_INTERVAL_MS, rpcResponseSchema, type LogsParams, type RpcErrorCode, type RpcRequest, type RpcResponse } from '../../shared/protocol/rpc.js';
import type { Topics } from '../../shared/protocol/topics.js';
import type { NodeStatus } from '../../shared/resources/node.js';
import { formatFieldErrors } from '../../shared/resources/validate.js';
import type { MessageBus } from '../broker/bus.js';
import type { ObjectStore } from '../store/objects.js';

export interface RpcTiming {
  /** How long a device has to answer a request at all. */
  firstAnswerMs: number;
  /** How long a stream that does not follow may go quiet before the hub gives up on it. */
  idleMs: number;
  keepaliveMs: number;
}

export const RPC_TIMING: RpcTiming = { firstAnswerMs: 15_000, idleMs: 60_000, keepaliveMs: RPC_KEEPALIVE_INTERVAL_MS };

/** Why a call failed: the node is away, it did not answer, or it refused (its own code, prefixed). hub/api/errors.ts maps these to API answers. */
export type RpcFailureCode = 'RpcNodeUnavailable' | 'RpcTimeout' | `Rpc${RpcErrorCode}`;

export class RpcCallError extends Error {
  constructor(
    readonly code: RpcFailureCode,
    message: string,
  ) {
    super(message);
    this.name = 'RpcCallError';
  }
}

/** Ids answered for by no one (a stream the hub gave up on): cancelled once each, and remembered this many. */
const MAX_FORGOTTEN_IDS = 1_000;

/** A stream of output from a device. `started` settles on its first answer; `finished` at its end. */
export interface RpcStream {
  readonly id: string;
  readonly started: Promise<void>;
  readonly finished: Promise<void>;
  /** Asks the device to stop; `finished` resolves. */
  cancel(): void;
}

interface Call {
  id: string;
  node: string;
  follow: boolean;
  nextSeq: number;
  started: boolean;
  onChunk: (text: string) => void;
  settleStarted: (err?: RpcCallError) => void;
  settleFinished: (err?: RpcCallError) => void;
  timer: NodeJS.Timeout;
  keepalive: NodeJS.Timeout;
}

/**
 * The hub's side of the rpc topics: sends a request to one node's `rpc/req`, and routes what
 * comes back on `rpc/res` to the call of that id. A node that is not connected is refused at
 * once; one that stops answering, or goes offline mid-stream, ends the call with an error.
 */
export class RpcClient {
  /** Answers refused by their schema (malformed, or a field over its bound). */
  invalid = 0;
  private readonly calls = new Map<string, Call>();
  private readonly forgotten = new Set<string>();
  private unwatch?: () => void;

  constructor(
    private readonly store: ObjectStore,
    private readonly bus: MessageBus,
    private readonly topics: Topics,
    private readonly log: Logger,
    private readonly timing: RpcTiming = RPC_TIMING,
  ) {}

  async start(): Promise<void> {
    await this.bus.subscribe(this.topics.allNodes('rpc/res'), (topic, payload) => this.onResponse(topic, payload));
    this.unwatch = this.store.watch({ kind: 'Node' }, (e) => {
      const node = e.object.metadata.name;
      if (![...this.calls.values()].some((c) => c.node === node)) return;
      const problem = e.type === 'DELETED' ? `node "${node}" was deleted` : this.notConnected(node);
      if (problem) for (const call of [...this.calls.values()]) if (call.node === node) this.end(call, new RpcCallError('RpcNodeUnavailable', `${problem}; the stream ended`), false);
    });
  }

  stop(): void {
    this.unwatch?.();
    for (const call of [...this.calls.values()]) this.end(call, new RpcCallError('RpcNodeUnavailable', 'the hub is stopping'), true);
  }

  get active(): number {
    return this.calls.size;
  }

  /**
   * Why requests to a node cannot be made now, or undefined when it can take them: its Ready
   * condition is True only while its agent is connected (presence) and its engine answers.
   */
  notConnected(node: string): string | undefined {
    const obj = this.store.get('Node', '', node);
    if (!obj) return `node "${node}" not found`;
    const ready = (obj.status as NodeStatus | undefined)?.conditions?.find((c) => c.type === 'Ready');
    if (ready?.status === 'True') return undefined;
    if (ready?.reason === 'ContainerRuntimeUnavailable') return `the container engine of node "${node}" is unavailable (${ready.message ?? 'no answer'})`;
    return `node "${node}" is not connected`;
  }

  /** Streams a container's logs from a node; throws an RpcCallError at once when the node is not connected. */
  logs(node: string, params: LogsParams, onChunk: (text: string) => void): RpcStream {
    const problem = this.notConnected(node);
    if (problem) throw new RpcCallError('RpcNodeUnavailable', `${problem}; logs are unavailable`);
    return this.open(node, { v: PROTOCOL_VERSION, id: randomBytes(9).toString('base64url'), method: 'logs', params }, params.follow, onChunk);
  }

  private open(node: string, req: RpcRequest, follow: boolean, onChunk: (text: string) => void): RpcStream {
    let settleStarted!: (err?: RpcCallError) => void;
    let settleFinished!: (err?: RpcCallError) => void;
    const started = new Promise<void>((resolve, reject) => (settleStarted = (err) => (err ? reject(err) : resolve())));
    const finished = new Promise<void>((resolve, reject) => (settleFinished = (err) => (err ? reject(err) : resolve())));
    // Whoever holds the stream may await only one of them; neither may go unhandled.
    started.catch(() => {});
    finished.catch(() => {});
    const call: Call = {
      id: req.id,
      node,
      follow,
      nextSeq: 0,
      started: false,
      onChunk,
      settleStarted,
      settleFinished,
      timer: setTimeout(() => this.end(call, new RpcCallError('RpcTimeout', `node "${node}" did not answer within ${this.timing.firstAnswerMs / 1000}s`), true), this.timing.firstAnswerMs),
      keepalive: setInterval(() => this.send(node, { v: PROTOCOL_VERSION, id: req.id, method: 'keepalive' }, 0), this.timing.keepaliveMs),
    };
    this.calls.set(req.id, call);
    this.log.debug({ node, id: req.id, method: req.method }, 'rpc request sent');
    this.bus.publish(this.topics.node(node, 'rpc/req'), encodePayload(req), { qos: 1, retain: false }).catch((err: Error) => this.end(call, new RpcCallError('RpcNodeUnavailable', `could not send the request to node "${node}": ${err.message}`), false));
    return {
      id: req.id,
      started,
      finished,
      cancel: () => this.end(call, undefined, true),
    };
  }

  onResponse(topic: string, payload: Buffer): void {
    const parsed = this.topics.parseNodeTopic(topic);
    if (!parsed || parsed.channel !== 'rpc/res') return;
    const decoded = decodePayload(rpcResponseSchema, payload);
    if (!decoded.ok) {
      this.invalid++;
      this.log.warn({ node: parsed.node, channel: 'rpc/res', reason: formatFieldErrors(decoded.errors) }, 'malformed payload dropped');
      return;
    }
    const res: RpcResponse = decoded.value;
    const call = this.calls.get(res.id);
    // Only the node asked may answer (the broker lets a device publish only on its own topics).
    if (!call || call.node !== parsed.node) return this.forget(parsed.node, res);
    if (res.seq < call.nextSeq) return; // a QoS 1 duplicate
    if (res.seq > call.nextSeq) this.log.warn({ node: call.node, id: call.id, expected: call.nextSeq, got: res.seq }, 'rpc answers missing; the output has a gap');
    call.nextSeq = res.seq + 1;
    if (res.error !== undefined) {
      return this.end(call, new RpcCallError(`Rpc${res.code ?? 'Failed'}`, res.error), false);
    }
    if (!call.started) {
      call.started = true;
      clearTimeout(call.timer);
      // A follow may be as quiet as its container: only the node going offline ends it.
      if (!call.follow) call.timer = setTimeout(() => this.end(call, new RpcCallError('RpcTimeout', `node "${call.node}" stopped sending for ${this.timing.idleMs / 1000}s`), true), this.timing.idleMs);
      call.settleStarted();
    } else if (!call.follow) call.timer.refresh();
    if (res.chunk) call.onChunk(res.chunk);
    if (res.eof) this.end(call, undefined, false);
  }

  /** An answer to a call the hub no longer has: tell the device once to stop, in case it still streams. */
  private forget(node: string, res: RpcResponse): void {
    if (res.eof || res.error !== undefined || this.forgotten.has(res.id)) return;
    this.remember(res.id);
    this.send(node, { v: PROTOCOL_VERSION, id: res.id, method: 'cancel' }, 1);
  }

  private remember(id: string): void {
    if (this.forgotten.size >= MAX_FORGOTTEN_IDS) this.forgotten.clear();
    this.forgotten.add(id);
  }

  /** Ends a call; `cancelDevice` when the device may still be sending (the hub gave up, or the caller went away). */
  private end(call: Call, err: RpcCallError | undefined, cancelDevice: boolean): void {
    if (this.calls.get(call.id) !== call) return;
    this.calls.delete(call.id);
    if (cancelDevice) {
      this.send(call.node, { v: PROTOCOL_VERSION, id: call.id, method: 'cancel' }, 1);
      this.remember(call.id);
    }
    clearTimeout(call.timer);
    clearInterval(call.keepalive);
    if (err) this.log.debug({ node: call.node, id: call.id, err: err.message }, 'rpc call failed');
    // Before the first answer an error is the request's answer; after it, the stream's end.
    if (!call.started) call.settleStarted(err);
    call.settleFinished(err);
  }

  private send(node: string, req: RpcRequest, qos: 0 | 1): void {
    this.bus.publish(this.topics.node(node, 'rpc/req'), encodePayload(req), { qos, retain: false }).catch((err: Error) => this.log.warn({ node, err: err.message }, 'could not send an rpc message'));
  }
}
