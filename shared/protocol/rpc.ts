import * as z from 'zod';
import { PROTOCOL_VERSION } from './messages.js';

/**
 * Requests the hub makes of one device over `…/nodes/{node}/rpc/req`, and the device's answers
 * over `…/rpc/res` (docs/PROTOCOL.md, 'Payloads'), correlated by `id`. An answer may come in many
 * messages, numbered by `seq` from 0; one with `eof` or `error` is the last.
 */

/** The most bytes of output in one response message (UTF-8, never a split character). */
export const RPC_MAX_CHUNK_BYTES = 16 * 1024;
/** How often the hub says it still wants an open stream; a device ends a stream that hears nothing for RPC_IDLE_TIMEOUT_MS. */
export const RPC_KEEPALIVE_INTERVAL_MS = 30_000;
export const RPC_IDLE_TIMEOUT_MS = 90_000;

const v = z.literal(PROTOCOL_VERSION, { error: `unsupported protocol version (this side speaks v${PROTOCOL_VERSION})` });
const id = z.string().min(1).max(64);

/** What `flotilla logs` asks for: one container of one pod, as kubectl's PodLogOptions. */
export const logsParamsSchema = z.object({
  podUid: z.string().min(1),
  container: z.string().min(1),
  /** The last N lines only (kubectl --tail); all when absent. */
  tail: z.number().int().min(0).optional(),
  follow: z.boolean(),
  /** Only output newer than this many seconds (kubectl --since). */
  sinceSeconds: z.number().int().min(1).optional(),
  /** The previous attempt of a restarted container (kubectl --previous). */
  previous: z.boolean().optional(),
});

export const rpcRequestSchema = z.discriminatedUnion('method', [
  z.object({ v, id, method: z.literal('logs'), params: logsParamsSchema }),
  /** Stop the stream `id`; the device sends nothing more for it. */
  z.object({ v, id, method: z.literal('cancel') }),
  /** The hub still reads the stream `id`. */
  z.object({ v, id, method: z.literal('keepalive') }),
]);

/** Why a device refused or ended a call, so that the hub can answer as an API would. */
export const rpcErrorCodeSchema = z.enum(['NotFound', 'Busy', 'BadRequest', 'Failed']);

export const rpcResponseSchema = z.object({
  v,
  id,
  seq: z.number().int().min(0),
  /** Output, UTF-8 text. RPC_MAX_CHUNK_BYTES bytes decode to at most as many UTF-16 units. */
  chunk: z.string().max(RPC_MAX_CHUNK_BYTES).optional(),
  eof: z.boolean().optional(),
  error: z.string().max(1024).optional(),
  code: rpcErrorCodeSchema.optional(),
});

export type LogsParams = z.infer<typeof logsParamsSchema>;
export type RpcRequest = z.infer<typeof rpcRequestSchema>;
export type RpcResponse = z.infer<typeof rpcResponseSchema>;
export type RpcErrorCode = z.infer<typeof rpcErrorCodeSchema>;
