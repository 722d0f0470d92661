import type { Logger } from 'pino';
import type { HubConfig } from './config.js';
import { Hub } from './hub.js';

/**
 * How long an orderly stop may take after SIGTERM or SIGINT before the hub exits as it is.
 * Nothing is lost by that: every acknowledged write is already committed.
 */
export const STOP_DEADLINE_MS = 10_000;

/** Why the hub stops: the signal it was sent. */
export class HubStopRequested extends Error {
  override readonly name = 'HubStopRequested';

  constructor(readonly signal: NodeJS.Signals) {
    super(`stopped by ${signal}`);
  }
}

/**
 * Runs the hub until SIGTERM or SIGINT, then stops it in order. The signals are taken before
 * start-up begins, so a signal during start-up ends it too (closing what it had opened). A
 * second signal, or a stop that takes longer than STOP_DEADLINE_MS, exits at once with status 1.
 * Resolves when the hub has stopped; rejects (after closing everything) when it cannot start.
 */
export async function runHub(config: HubConfig, log: Logger): Promise<void> {
  const stopping = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping.signal.aborted) {
      log.warn({ signal }, 'second signal: exiting without finishing the stop');
      process.exit(1);
    }
    log.info({ signal }, 'stopping the hub');
    stopping.abort(new HubStopRequested(signal));
    setTimeout(() => {
      log.error({ deadlineMs: STOP_DEADLINE_MS }, 'the hub did not stop in time: exiting as it is');
      process.exit(1);
    }, STOP_DEADLINE_MS).unref();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  let hub: Hub;
  try {
    hub = await Hub.start(config, log, stopping.signal);
  } catch (err) {
    if (err instanceof HubStopRequested) {
      log.info({ signal: err.signal }, 'hub stopped during start-up');
      return;
    }
    log.error({ err }, 'hub failed to start');
    throw err;
  }
  if (!stopping.signal.aborted) await new Promise((resolve) => stopping.signal.addEventListener('abort', resolve, { once: true }));
  await hub.stop();
}
