import { setTimeout as sleepFor } from 'node:timers/promises';
import { TokenBucket, Utf8Chunker } from './pacing.js';

export interface PumpOptions {
  /** The most UTF-8 bytes of one chunk. */
  chunkBytes: number;
  /** Sustained rate, and how much may go at once (a short `--tail` goes out without delay). */
  bytesPerSecond: number;
  burstBytes: number;
  /** How long a small piece of output waits for more, so that a chatty follow is a few messages a second, not one per line. */
  lingerMs: number;
  now?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

const LINGER = Symbol('linger');
const ignore = () => {};

/**
 * Reads `source` to its end and hands its bytes to `send` as text chunks of at most
 * `chunkBytes`, no faster than the token bucket allows. Reading waits while sending waits, so a
 * slow uplink slows the source down instead of filling memory. Rejects as soon as `signal`
 * aborts; a read still pending then is the caller's to end (by destroying the source).
 */
export async function pumpPaced(source: AsyncIterable<Buffer | string>, send: (chunk: string) => void, opts: PumpOptions, signal: AbortSignal): Promise<void> {
  const sleep = opts.sleep ?? ((ms: number, s: AbortSignal) => sleepFor(ms, undefined, { signal: s }));
  const chunker = new Utf8Chunker(opts.chunkBytes);
  const bucket = new TokenBucket(opts.bytesPerSecond, opts.burstBytes, opts.now);
  const sendPaced = async (text: string) => {
    if (text === '') return;
    const waitMs = bucket.take(Buffer.byteLength(text));
    if (waitMs > 0) await sleep(waitMs, signal);
    signal.throwIfAborted();
    send(text);
  };

  const reader = source[Symbol.asyncIterator]();
  let next: Promise<IteratorResult<Buffer | string>> | undefined;
  // One timer per lingering piece of output, however many reads happen meanwhile.
  let linger: Promise<typeof LINGER> | undefined;
  // Only part of a character is held: nothing to send until more bytes come.
  let partialOnly = false;
  let ended = false;
  // A read that waits on a quiet source (a follow) must not outlive the call.
  let onAbort = ignore;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(ignore);
  try {
    for (;;) {
      signal.throwIfAborted();
      if (!next) {
        next = reader.next();
        next.catch(ignore);
      }
      if (chunker.size > 0 && !partialOnly && !linger) {
        linger = sleep(opts.lingerMs, signal).then(() => LINGER);
        linger.catch(ignore);
      }
      const result = await Promise.race(linger ? [next, linger, aborted] : [next, aborted]);
      if (result === LINGER) {
        linger = undefined;
        await sendPaced(chunker.flush());
        partialOnly = chunker.size > 0;
        continue;
      }
      next = undefined;
      if (result.done) {
        ended = true;
        break;
      }
      partialOnly = false;
      const bytes = typeof result.value === 'string' ? Buffer.from(result.value) : result.value;
      for (const chunk of chunker.push(bytes)) await sendPaced(chunk);
    }
    await sendPaced(chunker.end());
  } finally {
    signal.removeEventListener('abort', onAbort);
    // Stopped early (aborted, or send failed): let the source let go of what it holds.
    if (!ended) void reader.return?.()?.catch(ignore);
  }
}
