import { connect, createServer, type Server, type Socket } from 'node:net';
import * as mqttPacket from 'mqtt-packet';

/** Bytes and packets that went one way, by kind of MQTT packet (and by channel for PUBLISH: status, metrics…). */
export interface WireCount {
  bytes: number;
  packets: number;
  byKind: Record<string, { bytes: number; packets: number }>;
}

function emptyCount(): WireCount {
  return { bytes: 0, packets: 0, byKind: {} };
}

/** What a PUBLISH is about: the last level of a node topic (status, metrics, events…), or the packet type. */
function kindOf(packet: mqttPacket.Packet): string {
  if (packet.cmd !== 'publish') return packet.cmd;
  const topic = packet.topic;
  const node = topic.indexOf('/nodes/');
  if (node < 0) return `publish ${topic.split('/').slice(0, 3).join('/')}`;
  return `publish ${topic.slice(node + '/nodes/'.length).split('/').slice(1).join('/')}`;
}

/**
 * A TCP proxy on loopback in front of an MQTT broker that counts what goes through it: the
 * bytes every client sends (uplink) and receives (downlink), attributed to MQTT packets as the
 * broker would parse them. It changes nothing on the wire and works in front of any broker.
 */
export class ByteCountingProxy {
  uplink: WireCount = emptyCount();
  downlink: WireCount = emptyCount();
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(target: { host: string; port: number }): Promise<ByteCountingProxy> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    const proxy = new ByteCountingProxy(server, typeof address === 'object' && address ? address.port : 0);
    server.on('connection', (client) => proxy.relay(client, target));
    return proxy;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Starts counting afresh (the start of a measuring window). */
  reset(): void {
    this.uplink = emptyCount();
    this.downlink = emptyCount();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private relay(client: Socket, target: { host: string; port: number }): void {
    const upstream = connect(target.port, target.host);
    this.sockets.add(client);
    this.sockets.add(upstream);
    this.count(client, upstream, () => this.uplink);
    this.count(upstream, client, () => this.downlink);
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  }

  /** Forwards `from` to `to`, counting each chunk's bytes and each packet parsed from them. */
  private count(from: Socket, to: Socket, tally: () => WireCount): void {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (packet: mqttPacket.Packet) => {
      const t = tally();
      // A packet's size on the wire is that of its encoding; the chunks' bytes are what was sent.
      const size = mqttPacket.generate(packet).length;
      const kind = kindOf(packet);
      const k = (t.byKind[kind] ??= { bytes: 0, packets: 0 });
      k.bytes += size;
      k.packets++;
      t.packets++;
    });
    from.on('data', (chunk: Buffer) => {
      tally().bytes += chunk.length;
      parser.parse(chunk);
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
    from.on('end', () => to.end());
  }
}
