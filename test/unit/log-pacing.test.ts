import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { TokenBucket, Utf8Chunker, utf8Boundary } from '../../agent/logs/pacing.js';
import { pumpPaced, type PumpOptions } from '../../agent/logs/pump.js';
import { DockerLogDemuxer } from '../../agent/runtime/demux.js';

// How a device turns a container's output into rpc chunks: cut at UTF-8 boundaries, bounded
// in size, and paced by a token bucket, with the engine's stdout/stderr framing undone first.

const utf8 = (s: string) => Buffer.from(s, 'utf8');
const byteLength = (s: string) => Buffer.byteLength(s, 'utf8');

/** A virtual clock: sleeping moves it on at once, and the pacing waits are recorded. */
function virtualTime(lingerMs: number) {
  const clock = { now: 0, paced: 0 };
  const sleep = async (ms: number, signal: AbortSignal) => {
    signal.throwIfAborted();
    // The linger timer only gathers output; it must not count as time that refills the bucket.
    if (ms === lingerMs) return;
    clock.now += ms;
    clock.paced += ms;
  };
  return { clock, sleep, now: () => clock.now };
}

function frame(stream: 1 | 2, payload: string): Buffer {
  const body = utf8(payload);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

async function demux(input: Buffer[]): Promise<string> {
  const out: Buffer[] = [];
  const demuxer = new DockerLogDemuxer();
  demuxer.on('data', (b: Buffer) => out.push(b));
  const done = new Promise((resolve) => demuxer.on('end', resolve));
  for (const piece of input) demuxer.write(piece);
  demuxer.end();
  await done;
  return Buffer.concat(out).toString('utf8');
}

describe('utf8Boundary', () => {
  it('cuts anywhere in ASCII', () => {
    expect(utf8Boundary(utf8('abcdef'), 3)).toBe(3);
  });

  it('moves a cut inside a character back to the character\'s start', () => {
    const text = utf8('aé€😀'); // 1 + 2 + 3 + 4 bytes
    expect(utf8Boundary(text, 2)).toBe(1); // inside é
    expect(utf8Boundary(text, 3)).toBe(3);
    expect(utf8Boundary(text, 4)).toBe(3); // after the first byte of €
    expect(utf8Boundary(text, 5)).toBe(3);
    expect(utf8Boundary(text, 6)).toBe(6);
    expect(utf8Boundary(text, 8)).toBe(6); // inside 😀
    expect(utf8Boundary(text, 10)).toBe(10);
  });

  it('does not hold back bytes that are not valid UTF-8', () => {
    expect(utf8Boundary(Buffer.from([0x61, 0x80, 0x80, 0x80, 0x80]), 5)).toBe(5);
    expect(utf8Boundary(Buffer.from([0x80, 0x80]), 2)).toBe(2);
  });
});

describe('Utf8Chunker', () => {
  it('hands back chunks of at most maxBytes that join up to the input, no character split', () => {
    const chunker = new Utf8Chunker(16);
    const text = 'zähler=1 ✓ 😀 '.repeat(20);
    const chunks = [...chunker.push(utf8(text.slice(0, 50))), ...chunker.push(utf8(text.slice(50))), chunker.end()];
    expect(chunks.join('')).toBe(text);
    for (const c of chunks) {
      expect(byteLength(c)).toBeLessThanOrEqual(16);
      expect(c).not.toContain('\uFFFD');
    }
  });

  it('keeps a character cut by the end of the bytes so far until the rest arrives', () => {
    const chunker = new Utf8Chunker(16);
    const euro = utf8('€');
    expect(chunker.push(Buffer.concat([utf8('ab'), euro.subarray(0, 1)]))).toEqual([]);
    expect(chunker.flush()).toBe('ab');
    expect(chunker.size).toBe(1);
    expect(chunker.flush()).toBe('');
    chunker.push(euro.subarray(1));
    expect(chunker.flush()).toBe('€');
  });

  it('ends with what it holds, an incomplete character as U+FFFD', () => {
    const chunker = new Utf8Chunker(16);
    chunker.push(Buffer.concat([utf8('x'), utf8('€').subarray(0, 2)]));
    expect(chunker.end()).toBe('x\uFFFD');
    expect(chunker.size).toBe(0);
  });

  it('refuses a size that cannot hold one character', () => {
    expect(() => new Utf8Chunker(3)).toThrow('4 bytes');
  });
});

describe('TokenBucket', () => {
  it('lets a burst through at once, then paces to the rate', () => {
    let now = 0;
    const bucket = new TokenBucket(1_000, 2_000, () => now);
    expect(bucket.take(2_000)).toBe(0);
    expect(bucket.take(500)).toBe(500);
    now += 500;
    expect(bucket.take(1_000)).toBe(1_000);
    now += 1_000;
    expect(bucket.take(0)).toBe(0);
  });

  it('refills up to the burst and no further', () => {
    let now = 0;
    const bucket = new TokenBucket(1_000, 2_000, () => now);
    bucket.take(2_000);
    now += 60_000;
    expect(bucket.take(2_000)).toBe(0);
    expect(bucket.take(1)).toBe(1);
  });
});

describe('pumpPaced', () => {
  const base = { chunkBytes: 64, bytesPerSecond: 1_000, burstBytes: 2_000, lingerMs: 7 } satisfies PumpOptions;

  it('sends everything, in chunks of at most chunkBytes, no faster than the rate after the burst', async () => {
    const time = virtualTime(base.lingerMs);
    const text = Array.from({ length: 200 }, (_, i) => `line-${i} ✓\n`).join('');
    const chunks: string[] = [];
    await pumpPaced(Readable.from([utf8(text.slice(0, 1000)), utf8(text.slice(1000))]), (c) => chunks.push(c), { ...base, now: time.now, sleep: time.sleep }, new AbortController().signal);
    expect(chunks.join('')).toBe(text);
    expect(Math.max(...chunks.map(byteLength))).toBeLessThanOrEqual(64);
    // Bytes past the burst go at 1,000 B/s: the waits add up to that, give or take the last chunk.
    const expectedMs = ((byteLength(text) - base.burstBytes) * 1000) / base.bytesPerSecond;
    expect(time.clock.paced).toBeGreaterThanOrEqual(expectedMs - 64);
    expect(time.clock.paced).toBeLessThanOrEqual(expectedMs + 64);
  });

  it('does not wait at all for output within the burst', async () => {
    const time = virtualTime(base.lingerMs);
    const chunks: string[] = [];
    await pumpPaced(Readable.from([utf8('line-1\nline-2\n')]), (c) => chunks.push(c), { ...base, now: time.now, sleep: time.sleep }, new AbortController().signal);
    expect(chunks.join('')).toBe('line-1\nline-2\n');
    expect(time.clock.paced).toBe(0);
  });

  it('gathers output that trickles in within the linger time into one chunk', async () => {
    const source = new PassThrough();
    const chunks: string[] = [];
    const pumping = pumpPaced(source, (c) => chunks.push(c), { ...base, lingerMs: 200 }, new AbortController().signal);
    source.write('tick\n');
    await new Promise((r) => setTimeout(r, 20));
    source.write('tick\n');
    source.write('tick\n');
    await new Promise((r) => setTimeout(r, 400));
    expect(chunks).toEqual(['tick\ntick\ntick\n']);
    source.write('tock\n');
    source.end();
    await pumping;
    expect(chunks).toEqual(['tick\ntick\ntick\n', 'tock\n']);
  });

  it('stops at once when aborted, even while the source is quiet', async () => {
    const source = new PassThrough();
    const controller = new AbortController();
    const chunks: string[] = [];
    const pumping = pumpPaced(source, (c) => chunks.push(c), { ...base, lingerMs: 10 }, controller.signal);
    source.write('one\n');
    await new Promise((r) => setTimeout(r, 50));
    controller.abort(new Error('cancelled by the hub'));
    await expect(pumping).rejects.toThrow('cancelled by the hub');
    source.write('two\n');
    await new Promise((r) => setTimeout(r, 50));
    expect(chunks).toEqual(['one\n']);
  });
});

describe('DockerLogDemuxer', () => {
  it('joins the payloads of stdout and stderr frames in order', async () => {
    expect(await demux([frame(1, 'out-1\n'), frame(2, 'err-1\n'), frame(1, 'out-2\n')])).toBe('out-1\nerr-1\nout-2\n');
  });

  it('copes with frames cut anywhere, down to single bytes', async () => {
    const all = Buffer.concat([frame(1, 'line-1\n'), frame(2, 'zähler\n'), frame(1, ''), frame(1, 'line-3\n')]);
    const singleBytes = [...all].map((b) => Buffer.from([b]));
    expect(await demux(singleBytes)).toBe('line-1\nzähler\nline-3\n');
    expect(await demux([all.subarray(0, 5), all.subarray(5, 17), all.subarray(17)])).toBe('line-1\nzähler\nline-3\n');
  });

  it('passes output through unchanged when it is not framed (a TTY container)', async () => {
    expect(await demux([utf8('plain output\n'), utf8('more\n')])).toBe('plain output\nmore\n');
  });
});
