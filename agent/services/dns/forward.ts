import dgram from 'node:dgram';
import net from 'node:net';

/**
 * Queries the device's own resolver for names outside the cluster: the query's bytes as the
 * pod sent them, over the transport the pod used (a truncated UDP answer goes back as it is, and
 * the pod asks again over TCP, as RFC 7766 has it). Each query has a socket of its own, so its
 * source port is random and only that upstream's answer to that id is taken (RFC 5452).
 */

export interface Upstream {
  address: string;
  port: number;
}

/** The upstream's answer, or an Error (timeout, refusal, a malformed or foreign answer). */
export async function forwardQuery(query: Buffer, upstream: Upstream, transport: 'udp' | 'tcp', timeoutMs: number): Promise<Buffer> {
  return transport === 'udp' ? forwardUdp(query, upstream, timeoutMs) : forwardTcp(query, upstream, timeoutMs);
}

function sameId(query: Buffer, answer: Buffer): boolean {
  return answer.length >= 12 && answer.readUInt16BE(0) === query.readUInt16BE(0) && (answer[2]! & 0x80) !== 0;
}

function forwardUdp(query: Buffer, upstream: Upstream, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket(net.isIPv6(upstream.address) ? 'udp6' : 'udp4');
    let done = false;
    const finish = (err: Error | undefined, answer?: Buffer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      if (err) reject(err);
      else resolve(answer!);
    };
    const timer = setTimeout(() => finish(new Error(`no answer from ${upstream.address} within ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (err) => finish(err));
    socket.on('message', (msg) => {
      // Anything else that reaches this port (a late answer, a spoof) is ignored.
      if (sameId(query, msg)) finish(undefined, msg);
    });
    socket.connect(upstream.port, upstream.address, () => socket.send(query, (err) => err && finish(err)));
  });
}

function forwardTcp(query: Buffer, upstream: Upstream, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: upstream.address, port: upstream.port });
    let buffered: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (err: Error | undefined, answer?: Buffer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(answer!);
    };
    const timer = setTimeout(() => finish(new Error(`no answer from ${upstream.address} (tcp) within ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish(new Error(`${upstream.address} closed the connection without an answer`)));
    socket.on('connect', () => {
      const framed = Buffer.alloc(2 + query.length);
      framed.writeUInt16BE(query.length, 0);
      query.copy(framed, 2);
      socket.write(framed);
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 2) return;
      const length = buffered.readUInt16BE(0);
      if (buffered.length < 2 + length) return;
      const answer = buffered.subarray(2, 2 + length);
      if (sameId(query, answer)) finish(undefined, answer);
      else finish(new Error(`${upstream.address} answered another query`));
    });
  });
}
