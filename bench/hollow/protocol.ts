import type { MemoryLatency } from './memory-runtime.js';

/** What a fleet worker runs: its share of the devices and how they behave. */
export interface WorkerSetup {
  type: 'setup';
  hub: string;
  token: string;
  /** Each device's state directory is `<stateRoot>/<name>`. */
  stateRoot: string;
  devices: { name: string; labels: Record<string, string>; peerTable?: boolean }[];
  /** The overlay on, over an in-memory network (memory-network.ts); only devices with `peerTable` read the peer table. */
  overlay?: boolean;
  /** Images every device holds from the start (the pause image always). */
  images: string[];
  latency?: MemoryLatency;
  /** A start of a container of these images fails. */
  failingImages?: string[];
  metricsIntervalSeconds?: number;
  /** The devices' MQTT keepalive (default: the agent's). */
  heartbeatSeconds?: number;
  /**
   * At most this many devices of the worker joining or connecting at a time (0: all at once, a
   * connect storm). A device waits for its session before the next one starts.
   */
  startConcurrency: number;
}

/** Arms a timer on every device: the first status report the condition holds for. */
export interface WorkerExpect {
  type: 'expect';
  id: number;
  /** A pod counts when all its containers run one of these images. */
  images: string[];
  pods: number;
  timeoutMs: number;
}

export type ToWorker = WorkerSetup | WorkerExpect | { type: 'usage' } | { type: 'received' } | { type: 'stop' };

/** What a device that reads the peer table has received since it connected: MQTT PUBLISH packets, bytes on the wire. */
export interface ReceivedCount {
  name: string;
  peerMessages: number;
  peerBytes: number;
  otherMessages: number;
  otherBytes: number;
  /** The node names of the peer messages, in order of arrival (the last 16). */
  lastPeers: string[];
}

export interface DeviceTiming {
  name: string;
  startedAt: number;
  joinedAt: number | null;
  connectedAt: number | null;
  error?: string;
}

export type FromWorker =
  | { type: 'progress'; connected: number; joined: number; failed: number }
  | { type: 'ready'; timings: DeviceTiming[] }
  | { type: 'armed'; id: number }
  /** Epoch milliseconds per device, in the order of setup; null where the timeout came first. */
  | { type: 'reported'; id: number; times: (number | null)[] }
  | { type: 'received'; counts: ReceivedCount[] }
  | { type: 'usage'; rssBytes: number; heapUsedBytes: number; cpuUserUs: number; cpuSystemUs: number }
  | { type: 'stopped' };
