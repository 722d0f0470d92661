import type { FieldError } from '../../shared/resources/fields.js';
import { isDiskFull } from '../store/errors.js';

/**
 * Every error the hub's API can answer with, by code, and the one place that maps a code to an
 * HTTP status (as fastify's FST_ERR_* codes). The CLI maps these to its exit status in one place too.
 */
export const HUB_ERRORS = {
  HUB_ERR_BAD_REQUEST: 400,
  HUB_ERR_UNAUTHORIZED: 401,
  HUB_ERR_FORBIDDEN: 403,
  HUB_ERR_NOT_FOUND: 404,
  HUB_ERR_METHOD_NOT_ALLOWED: 405,
  HUB_ERR_ALREADY_EXISTS: 409,
  HUB_ERR_CONFLICT: 409,
  HUB_ERR_GONE: 410,
  HUB_ERR_BODY_TOO_LARGE: 413,
  HUB_ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  HUB_ERR_INVALID: 422,
  HUB_ERR_TOO_MANY_REQUESTS: 429,
  HUB_ERR_INTERNAL: 500,
  /** A device answered a request with a failure of its own (its engine could not read the logs). */
  HUB_ERR_BAD_GATEWAY: 502,
  HUB_ERR_UNAVAILABLE: 503,
  /** A device did not answer in time. */
  HUB_ERR_GATEWAY_TIMEOUT: 504,
} as const;

export type HubErrorCode = keyof typeof HUB_ERRORS;

export class HubError extends Error {
  constructor(
    readonly code: HubErrorCode,
    message: string,
    readonly fields: FieldError[] = [],
  ) {
    super(message);
    this.name = 'HubError';
  }

  get httpStatus(): number {
    return HUB_ERRORS[this.code];
  }

  /** The body of an error answer, in the spirit of Kubernetes' Status object. */
  toBody(): Record<string, unknown> {
    return {
      kind: 'Status',
      status: 'Failure',
      code: this.code,
      httpStatus: this.httpStatus,
      message: this.message,
      ...(this.fields.length ? { details: { fields: this.fields } } : {}),
    };
  }
}

const STORE_CODES: Record<string, HubErrorCode> = {
  NotFound: 'HUB_ERR_NOT_FOUND',
  AlreadyExists: 'HUB_ERR_ALREADY_EXISTS',
  Conflict: 'HUB_ERR_CONFLICT',
  Gone: 'HUB_ERR_GONE',
  Invalid: 'HUB_ERR_INVALID',
};

/**
 * Failures of a request to a device (hub/dispatch/rpc.ts). A container not there yet is the
 * caller's problem (400), as in Kubernetes; a device that failed on its own is a bad gateway.
 */
const RPC_CODES: Record<string, HubErrorCode> = {
  RpcNodeUnavailable: 'HUB_ERR_UNAVAILABLE',
  RpcTimeout: 'HUB_ERR_GATEWAY_TIMEOUT',
  RpcNotFound: 'HUB_ERR_BAD_REQUEST',
  RpcBadRequest: 'HUB_ERR_BAD_REQUEST',
  RpcBusy: 'HUB_ERR_TOO_MANY_REQUESTS',
  RpcFailed: 'HUB_ERR_BAD_GATEWAY',
};

/** Turns anything thrown while serving a request into a HubError. */
export function toHubError(err: unknown): HubError {
  if (err instanceof HubError) return err;
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string' && STORE_CODES[code]) return new HubError(STORE_CODES[code], (err as Error).message);
  if (typeof code === 'string' && RPC_CODES[code]) return new HubError(RPC_CODES[code], (err as Error).message);
  if (isDiskFull(err)) return new HubError('HUB_ERR_UNAVAILABLE', 'the hub\'s disk is full; nothing was written (deleting objects still works; free disk space in the hub\'s data directory)');
  return new HubError('HUB_ERR_INTERNAL', 'internal error');
}
