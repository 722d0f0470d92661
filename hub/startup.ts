import type { Logger } from 'pino';
import type { HubConfig } from './config.js';

// Start-up's bookkeeping: what it opened (closed again when it fails), and its errors, each
// naming the flag to look at.

/**
 * Why the hub could not start, naming the flag to look at (`--api-port`, `--data-dir`, …). Start-up
 * closed everything it had opened before this is thrown.
 */
export class HubStartError extends Error {
  override readonly name = 'HubStartError';

  constructor(
    readonly flag: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What start-up has opened so far; closed in reverse order when start-up fails or the hub stops. */
export class OpenedParts {
  private readonly parts: { name: string; close: () => void | Promise<void> }[] = [];

  add(name: string, close: () => void | Promise<void>): void {
    this.parts.push({ name, close });
  }

  /** Closes every part, the last opened first; one that fails to close does not keep the others open. */
  async closeAll(log: Logger): Promise<void> {
    for (let part = this.parts.pop(); part; part = this.parts.pop()) {
      try {
        await part.close();
      } catch (err) {
        log.error({ err, part: part.name }, 'could not close a part of the hub');
      }
    }
  }
}

/** Runs a step of start-up that reads or writes the data directory; its failure names --data-dir. */
export function inDataDir<T>(dataDir: string, step: () => T): T {
  try {
    return step();
  } catch (err) {
    throw new HubStartError('--data-dir', `cannot use the data directory ${dataDir} (--data-dir): ${errorMessage(err)}`, { cause: err });
  }
}

export function brokerStartError(config: HubConfig, err: unknown): HubStartError {
  if (config.brokerUrl) return new HubStartError('--broker', `cannot join the MQTT broker ${config.brokerUrl} (--broker): ${errorMessage(err)}`, { cause: err });
  return listenError('--mqtt-port', 'the MQTT broker', config.listen, config.mqttPort, err);
}

export function listenError(flag: string, what: string, host: string, port: number, err: unknown): HubStartError {
  const code = (err as { code?: unknown })?.code;
  if (code === 'EADDRINUSE') return new HubStartError(flag, `${what} cannot listen on ${host}:${port}: the port is in use by another program (${flag})`, { cause: err });
  if (code === 'EACCES') return new HubStartError(flag, `${what} cannot listen on ${host}:${port}: permission denied (${flag}; ports below 1024 need privileges)`, { cause: err });
  if (code === 'EADDRNOTAVAIL') return new HubStartError('--listen', `${what} cannot listen on ${host}:${port}: no such address on this machine (--listen)`, { cause: err });
  return new HubStartError(flag, `${what} cannot listen on ${host}:${port} (${flag}): ${errorMessage(err)}`, { cause: err });
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Waits for a step of start-up unless the hub is asked to stop first; then throws at once, and
 * whatever the step still makes is closed when it comes (a broker that answers late).
 */
export async function untilStopping<T>(step: Promise<T>, stopping: AbortSignal | undefined, closeLate: (late: T) => unknown): Promise<T> {
  if (!stopping) return step;
  stopping.throwIfAborted();
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(stopping.reason);
    stopping.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([step, aborted]);
  } catch (err) {
    if (stopping.aborted) step.then(closeLate, () => undefined);
    throw err;
  } finally {
    stopping.removeEventListener('abort', onAbort!);
  }
}
