import type { Logger } from 'pino';
import { LABEL_NODE, type ContainerRuntime, type EngineInfo } from '../runtime/runtime.js';

export interface EngineMonitorOptions {
  /** The node's name, read at each watch: it is only settled once the agent has its credentials. */
  readonly name: string;
  podNetwork: string;
  podSubnet?: string;
  /** With the overlay on, the pod network is the overlay's to make (agent/network/), not this bridge. */
  overlay?: 'wireguard' | 'none';
}

export interface EngineMonitorHandlers {
  /** A container of this node changed, the event stream was lost, or the engine came back: reconcile. */
  onChange: () => void;
  /** The engine stopped answering: tell the hub now, not at the next reconcile. */
  onUnavailable: () => void;
}

/**
 * The agent's line to its container engine: whether it answers, and the stream of its container
 * events. The engine may restart under the agent (an upgrade, a crash, a power cut of its disk);
 * the stream dies with it and the containers the engine stopped are only seen again by a fresh
 * watch and a reconcile, so a lost stream or an engine that answers again always leads to both.
 */
export class EngineMonitor {
  info: EngineInfo | undefined;
  error: string | undefined = 'not checked yet';
  private stopWatch: (() => void) | undefined;
  private checking: Promise<boolean> | undefined;
  private stopped = false;

  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly opts: EngineMonitorOptions,
    private readonly log: Logger,
    private readonly handlers: EngineMonitorHandlers,
  ) {}

  /** Pings the engine and, when needed, sets up the pod network and the event stream again. One check at a time. */
  check(): Promise<boolean> {
    this.checking ??= this.runCheck().finally(() => (this.checking = undefined));
    return this.checking;
  }

  /** Ends the event stream for good: a check still under way makes no new one. */
  stop(): void {
    this.stopped = true;
    this.dropWatch();
  }

  private dropWatch(): void {
    this.stopWatch?.();
    this.stopWatch = undefined;
  }

  private async runCheck(): Promise<boolean> {
    const wasDown = this.error !== undefined;
    try {
      this.info = await this.runtime.ping();
    } catch (err) {
      return this.unavailable(`container engine unavailable: ${(err as Error).message}`);
    }
    if (!this.stopWatch && !this.stopped) {
      try {
        if (this.opts.overlay !== 'wireguard' && this.opts.podNetwork !== 'none' && this.opts.podNetwork !== 'host') await this.runtime.ensureNetwork(this.opts.podNetwork, this.opts.podSubnet);
        this.stopWatch = await this.watch();
        if (this.stopped) this.dropWatch();
      } catch (err) {
        return this.unavailable(`container engine not usable: ${(err as Error).message}`);
      }
    }
    if (wasDown) {
      this.log.info({ engine: this.info.version }, 'container engine available');
      this.error = undefined;
      // What the engine did while it was away (it stops every container when it restarts) is
      // seen only by listing again.
      this.handlers.onChange();
    }
    return true;
  }

  /** A stop function, or undefined when the stream was lost at once (the next check tries again). */
  private async watch(): Promise<(() => void) | undefined> {
    let current = true;
    // The stream may be lost before the runtime has even handed back its stop function.
    const stream: { stop?: () => void } = {};
    const end = () => {
      current = false;
      stream.stop?.();
    };
    stream.stop = await this.runtime.watchContainers({ [LABEL_NODE]: this.opts.name }, () => this.handlers.onChange(), (err) => {
      if (!current) return;
      end();
      this.log.warn({ err: err.message }, 'engine event stream lost');
      this.stopWatch = undefined;
      // The next check makes a new stream if the engine answers; until then, nothing is missed
      // that a reconcile from a fresh list would not see.
      this.handlers.onChange();
    });
    if (current) {
      this.log.debug('watching the engine\'s container events');
      return end;
    }
    stream.stop();
    return undefined;
  }

  private unavailable(message: string): false {
    if (this.error !== message) this.log.error(message);
    this.info = undefined;
    this.error = message;
    // A stream from an engine that went away is no stream: make a new one when it is back.
    this.dropWatch();
    this.handlers.onUnavailable();
    return false;
  }
}
