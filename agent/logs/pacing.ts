/**
 * The two pure parts of sending a container's output over a thin uplink: cutting bytes into
 * UTF-8 text chunks of bounded size, and a token bucket that bounds bytes per second.
 */

/**
 * Where bytes [0, end) can be cut so that they do not end inside a multi-byte UTF-8 character:
 * `end` itself, or the start of the last, incomplete character. Bytes that are not valid UTF-8
 * are not held back (they decode to U+FFFD wherever they are cut).
 */
export function utf8Boundary(bytes: Uint8Array, end: number): number {
  let lead = end - 1;
  // A character is at most 4 bytes: at most 3 continuation bytes (10xxxxxx) after its lead byte.
  for (let k = 0; lead >= 0 && k < 3 && (bytes[lead]! & 0xc0) === 0x80; k++) lead--;
  if (lead < 0) return end;
  const byte = bytes[lead]!;
  const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
  return lead + length > end ? lead : end;
}

/**
 * Collects bytes and hands them back as text chunks of at most `maxBytes` UTF-8 bytes, never
 * splitting a character: a character cut by the end of the bytes so far waits for the rest.
 */
export class Utf8Chunker {
  private buffered: Buffer = Buffer.alloc(0);

  constructor(private readonly maxBytes: number) {
    if (maxBytes < 4) throw new Error('a chunk must have room for one character (4 bytes)');
  }

  /** Bytes held, not yet handed back. */
  get size(): number {
    return this.buffered.length;
  }

  /** Adds bytes; returns the full chunks they complete (each of about maxBytes). */
  push(bytes: Buffer): string[] {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, bytes]) : bytes;
    const out: string[] = [];
    while (this.buffered.length >= this.maxBytes) out.push(this.take(utf8Boundary(this.buffered, this.maxBytes)));
    return out;
  }

  /** Everything held that ends on a whole character, as one chunk ('' when there is none). */
  flush(): string {
    return this.take(utf8Boundary(this.buffered, this.buffered.length));
  }

  /** Everything held, the end of the output: an incomplete last character becomes U+FFFD. */
  end(): string {
    return this.take(this.buffered.length);
  }

  private take(cut: number): string {
    const text = this.buffered.subarray(0, cut).toString('utf8');
    this.buffered = this.buffered.subarray(cut);
    return text;
  }
}

/**
 * A token bucket of bytes: up to `burstBytes` at once, `bytesPerSecond` sustained. `take` always
 * takes (the bucket may go into debt) and says how long to wait before sending, so one chunk
 * larger than what is left is delayed rather than refused.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly bytesPerSecond: number,
    private readonly burstBytes: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burstBytes;
    this.last = now();
  }

  /** Takes `bytes` and returns the milliseconds to wait before they may be sent (0: at once). */
  take(bytes: number): number {
    const now = this.now();
    this.tokens = Math.min(this.burstBytes, this.tokens + ((now - this.last) * this.bytesPerSecond) / 1000);
    this.last = now;
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.bytesPerSecond);
  }
}
