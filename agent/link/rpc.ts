import type { Logger } from 'pino';
import { PROTOCOL_VERSION } from '../../shared/protocol/messages.js';
import { RPC_IDLE_TIMEOUT_MS, type LogsParams, type RpcErrorCode, type RpcRequest, type RpcResponse } from '../../shared/protocol/rpc.js';

/** A refusal with a code the hub turns into an API answer (a missing container, too many streams). */
export class RpcError extends Error {
  constructor(
    readonly code: RpcErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

/** One call being served: where its output goes, and the signal that says stop. */
export interface RpcCall {
  readonly id: string;
  readonly signal: AbortSignal;
  send(chunk: string): void;
}

export interface RpcHandlers {
  logs(params: LogsParams, call: RpcCall): Promise<void>;
}

export interface RpcServerOptions {
  /** Streams served at once; more are refused as Busy, so a device's uplink stays bounded. */
  maxStreams: number;
  /** A stream the hub has not kept alive for this long is ended: the hub is gone or forgot it. */
  idleTimeoutMs: number;
  /** Even a kept-alive stream ends, cleanly, after this long (Kubernetes' kubelet closes streams after 4 h). */
  maxDurationMs: number;
}

/** Four streams at once (see LOG_PACING for what that costs the uplink); four hours at most, as the kubelet. */
export const RPC_LIMITS: RpcServerOptions = { maxStreams: 4, idleTimeoutMs: RPC_IDLE_TIMEOUT_MS, maxDurationMs: 4 * 3_600_000 };

interface Active {
  controller: AbortController;
  seq: number;
  idle: NodeJS.Timeout;
  limit: NodeJS.Timeout;
  /** Why it was stopped, and whether the hub still listens (then it gets an eof). */
  stopped?: { reason: string; tellHub: boolean };
}

/**
 * The device's side of the rpc topics: starts a handler per request, numbers its answers,
 * and ends it when it is done, when the hub cancels it, when the hub stops keeping it alive,
 * after the maximum duration, or when the link drops. Requests are idempotent by id, because
 * QoS 1 may deliver one twice.
 */
export class RpcServer {
  private readonly calls = new Map<string, Active>();

  constructor(
    private readonly publish: (res: RpcResponse) => boolean,
    private readonly handlers: RpcHandlers,
    private readonly opts: RpcServerOptions,
    private readonly log: Logger,
  ) {}

  get active(): number {
    return this.calls.size;
  }

  handle(req: RpcRequest): void {
    switch (req.method) {
      case 'cancel':
        return this.stop(req.id, 'cancelled by the hub', false);
      case 'keepalive':
        this.calls.get(req.id)?.idle.refresh();
        return;
      case 'logs':
        return this.start(req.id, 'logs', (call) => this.handlers.logs(req.params, call));
    }
  }

  /** Ends every call, saying nothing to the hub (the link is down, or the agent is stopping). */
  stopAll(reason: string): void {
    for (const id of [...this.calls.keys()]) this.stop(id, reason, false);
  }

  private start(id: string, method: string, run: (call: RpcCall) => Promise<void>): void {
    if (this.calls.has(id)) return;
    if (this.calls.size >= this.opts.maxStreams) {
      this.log.warn({ id, method, active: this.calls.size }, 'rpc call refused: too many streams');
      this.respond(id, 0, { error: `too many streams on this device (at most ${this.opts.maxStreams}); try again later`, code: 'Busy' });
      return;
    }
    const active: Active = {
      controller: new AbortController(),
      seq: 0,
      idle: setTimeout(() => this.stop(id, 'no keepalive from the hub', false), this.opts.idleTimeoutMs),
      limit: setTimeout(() => this.stop(id, 'maximum duration reached', true), this.opts.maxDurationMs),
    };
    active.idle.unref();
    active.limit.unref();
    this.calls.set(id, active);
    this.log.debug({ id, method }, 'rpc call started');
    const call: RpcCall = {
      id,
      signal: active.controller.signal,
      send: (chunk) => {
        if (!active.stopped) this.respond(id, active.seq++, { chunk });
      },
    };
    let outcome: Partial<RpcResponse> | undefined;
    run(call)
      .then(() => {
        outcome = { eof: true };
      })
      .catch((err: unknown) => {
        if (active.stopped) return;
        const code = err instanceof RpcError ? err.code : 'Failed';
        if (code === 'Failed') this.log.warn({ id, method, err: (err as Error).message }, 'rpc call failed');
        outcome = { error: (err as Error).message, code };
      })
      .finally(() => {
        clearTimeout(active.idle);
        clearTimeout(active.limit);
        this.calls.delete(id);
        if (active.stopped?.tellHub) outcome = { eof: true };
        else if (active.stopped) outcome = undefined;
        if (outcome) this.respond(id, active.seq++, outcome);
        this.log.debug({ id, method, reason: active.stopped?.reason ?? (outcome?.error ? 'failed' : 'done') }, 'rpc call ended');
      });
  }

  private stop(id: string, reason: string, tellHub: boolean): void {
    const active = this.calls.get(id);
    if (!active || active.stopped) return;
    active.stopped = { reason, tellHub };
    active.controller.abort(new Error(reason));
  }

  private respond(id: string, seq: number, fields: Partial<RpcResponse>): void {
    this.publish({ v: PROTOCOL_VERSION, id, seq, ...fields });
  }
}
