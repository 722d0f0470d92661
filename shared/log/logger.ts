import { pino, type Logger, type LevelWithSilent } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * Structured logs: JSON lines when the output is not a terminal (journald, files, tests),
 * readable lines on a terminal. pino-pretty runs in-process as a stream, not as a worker
 * transport, so that the agent still works when bundled into one file.
 */
export function createLogger(opts: { name: string; level?: LevelWithSilent; pretty?: boolean; destination?: NodeJS.WritableStream }): Logger {
  const level = opts.level ?? (process.env.FLOTILLA_LOG_LEVEL as LevelWithSilent | undefined) ?? 'info';
  const destination = opts.destination ?? process.stderr;
  const usePretty = opts.pretty ?? (process.env.FLOTILLA_LOG_FORMAT ? process.env.FLOTILLA_LOG_FORMAT === 'pretty' : Boolean((destination as { isTTY?: boolean }).isTTY));
  if (usePretty) {
    return pino({ name: opts.name, level }, pretty({ destination: destination as never, colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname', sync: true }));
  }
  return pino({ name: opts.name, level, base: { name: opts.name } }, pino.destination({ dest: (destination as { fd?: number }).fd ?? 2, sync: true }));
}
