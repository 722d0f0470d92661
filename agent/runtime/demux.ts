import { Transform, type TransformCallback } from 'node:stream';

const HEADER_BYTES = 8;

/**
 * Undoes the Docker engine's multiplexing of a non-TTY container's output: every frame is an
 * 8-byte header (stream type 0|1|2, three zero bytes, payload length as uint32 big-endian)
 * followed by the payload. The output is the payloads in order, stdout and stderr interleaved
 * as `docker logs` shows them. Unlike dockerode's demuxStream, this is a Transform, so reading
 * slowly slows down the engine's stream instead of buffering it.
 *
 * A header that cannot be one (a TTY container's raw output, or a stream out of step) switches
 * to passing everything through unchanged from there on.
 */
export class DockerLogDemuxer extends Transform {
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private headerFill = 0;
  private payloadLeft = 0;
  private raw = false;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.raw) {
      this.push(chunk);
      return done();
    }
    let offset = 0;
    while (offset < chunk.length) {
      if (this.payloadLeft > 0) {
        const n = Math.min(this.payloadLeft, chunk.length - offset);
        this.push(chunk.subarray(offset, offset + n));
        offset += n;
        this.payloadLeft -= n;
        continue;
      }
      const n = Math.min(HEADER_BYTES - this.headerFill, chunk.length - offset);
      chunk.copy(this.header, this.headerFill, offset, offset + n);
      this.headerFill += n;
      offset += n;
      if (this.headerFill < HEADER_BYTES) break;
      this.headerFill = 0;
      const type = this.header[0]!;
      if (type > 2 || this.header[1] !== 0 || this.header[2] !== 0 || this.header[3] !== 0) {
        this.raw = true;
        this.push(Buffer.from(this.header));
        if (offset < chunk.length) this.push(chunk.subarray(offset));
        break;
      }
      this.payloadLeft = this.header.readUInt32BE(4);
    }
    done();
  }
}
