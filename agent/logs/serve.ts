import type { LogsParams } from '../../shared/protocol/rpc.js';
import { RPC_MAX_CHUNK_BYTES } from '../../shared/protocol/rpc.js';
import { RpcError, type RpcCall } from '../link/rpc.js';
import { newestFirst } from '../reconcile/plan.js';
import { INFRA_CONTAINER, LABEL_CONTAINER, LABEL_NODE, LABEL_POD_UID, type ContainerRuntime } from '../runtime/runtime.js';
import { pumpPaced, type PumpOptions } from './pump.js';

/**
 * How fast a device sends logs: 32 KiB/s sustained per stream, after a first 128 KiB at once
 * (so a `--tail` of a few hundred lines shows without delay). With at most 4 streams (see
 * agent.ts) the worst case is 128 KiB/s, about 1 Mbit/s: a cellular uplink keeps room for status.
 */
export const LOG_PACING: PumpOptions = {
  chunkBytes: RPC_MAX_CHUNK_BYTES,
  bytesPerSecond: 32 * 1024,
  burstBytes: 128 * 1024,
  lingerMs: 100,
};

/**
 * `flotilla logs` on the device: finds the container of the pod by its labels (the newest
 * attempt, or the one before it for `previous`), and streams its output until it ends, the
 * container stops (when following), or the call is stopped.
 */
export async function serveLogs(runtime: ContainerRuntime, node: string, params: LogsParams, call: RpcCall, pacing: PumpOptions = LOG_PACING): Promise<void> {
  if (params.container === INFRA_CONTAINER) throw new RpcError('BadRequest', `container "${INFRA_CONTAINER}" is the pod's infra container; it has no logs to show`);
  // Only this node's own containers: several agents may share one engine.
  const attempts = newestFirst(await runtime.listContainers({ [LABEL_NODE]: node, [LABEL_POD_UID]: params.podUid, [LABEL_CONTAINER]: params.container }));
  const target = params.previous ? attempts[1] : attempts[0];
  if (!target) {
    throw new RpcError('NotFound', params.previous ? `previous terminated container "${params.container}" not found` : `container "${params.container}" has not been created yet`);
  }
  call.signal.throwIfAborted();
  const stream = await runtime.containerLogs(target.id, {
    follow: params.follow,
    ...(params.tail !== undefined ? { tail: params.tail } : {}),
    ...(params.sinceSeconds !== undefined ? { sinceSeconds: params.sinceSeconds } : {}),
  });
  // Destroying the stream is what stops the engine's follow.
  const stop = () => stream.destroy();
  call.signal.addEventListener('abort', stop, { once: true });
  try {
    await pumpPaced(stream, (chunk) => call.send(chunk), pacing, call.signal);
  } finally {
    call.signal.removeEventListener('abort', stop);
    stream.destroy();
  }
}
