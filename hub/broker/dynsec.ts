import { randomBytes } from 'node:crypto';
import { DYNSEC_REQUEST_TOPIC, DYNSEC_RESPONSE_TOPIC } from './mosquitto-acl.js';

/** The raw MQTT the control channel rides on: the hub's own connection to the broker. */
export interface ControlLink {
  publish(topic: string, payload: Buffer): Promise<void>;
  subscribe(pattern: string, handler: (topic: string, payload: Buffer) => void): Promise<void>;
}

/** One command of Mosquitto's dynamic-security API (`createClient`, `deleteRole`, …). */
export type DynsecCommand = { command: string } & Record<string, unknown>;

export interface DynsecResult {
  command: string;
  /** The plugin's own words when it refused ("Client not found", "Role already exists"). */
  error?: string;
  data?: Record<string, unknown>;
}

export class DynsecError extends Error {
  override name = 'DynsecError';
  constructor(
    readonly command: string,
    readonly reason: string,
  ) {
    super(`the broker refused ${command}: ${reason}`);
  }
}

interface Pending {
  resolve: (result: DynsecResult) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * Mosquitto's dynamic-security plugin, driven over MQTT: commands are published to
 * `$CONTROL/dynamic-security/v1` as `{"commands": [...]}`, and the plugin answers every
 * command of a message in one `{"responses": [...]}` on the response topic. That topic is
 * shared by every admin client of the broker, so each command carries a correlation id
 * unique to this hub (a random prefix and a counter) and only those answers are taken.
 */
export class DynsecControl {
  private readonly pending = new Map<string, Pending>();
  private readonly idPrefix = randomBytes(4).toString('hex');
  private sequence = 0;

  constructor(
    private readonly link: ControlLink,
    private readonly timeoutMs = 10_000,
  ) {}

  async start(): Promise<void> {
    await this.link.subscribe(DYNSEC_RESPONSE_TOPIC, (_topic, payload) => this.onResponses(payload));
  }

  /** Runs commands in order, in one message; resolves with one result per command, refusals included. */
  async run(commands: DynsecCommand[]): Promise<DynsecResult[]> {
    const ids = commands.map(() => `flotilla-${this.idPrefix}-${++this.sequence}`);
    const results = ids.map(
      (id, i) =>
        new Promise<DynsecResult>((resolve, reject) => {
          const timer = setTimeout(() => {
            this.pending.delete(id);
            reject(new Error(`the broker did not answer ${commands[i]!.command} within ${this.timeoutMs / 1000}s (is the dynamic-security plugin loaded?)`));
          }, this.timeoutMs);
          this.pending.set(id, { resolve, reject, timer });
        }),
    );
    const payload = Buffer.from(JSON.stringify({ commands: commands.map((c, i) => ({ ...c, correlationData: ids[i] })) }));
    try {
      await this.link.publish(DYNSEC_REQUEST_TOPIC, payload);
    } catch (err) {
      for (const id of ids) this.settle(id)?.reject(err as Error);
    }
    return Promise.all(results);
  }

  /** Runs one command; a refusal is an error, unless its reason is one of `tolerated`. */
  async one(command: DynsecCommand, tolerated: string[] = []): Promise<DynsecResult> {
    const [result] = await this.run([command]);
    if (result!.error && !tolerated.includes(result!.error)) throw new DynsecError(command.command, result!.error);
    return result!;
  }

  /** Fails every command still waiting (the hub is stopping). */
  stop(): void {
    for (const id of [...this.pending.keys()]) this.settle(id)?.reject(new Error('the hub is stopping'));
  }

  private settle(id: string): Pending | undefined {
    const entry = this.pending.get(id);
    if (!entry) return undefined;
    clearTimeout(entry.timer);
    this.pending.delete(id);
    return entry;
  }

  private onResponses(payload: Buffer): void {
    let body: { responses?: unknown };
    try {
      body = JSON.parse(payload.toString('utf8')) as { responses?: unknown };
    } catch {
      return;
    }
    if (!Array.isArray(body.responses)) return;
    for (const r of body.responses as Record<string, unknown>[]) {
      if (typeof r?.correlationData !== 'string') continue;
      const entry = this.settle(r.correlationData);
      if (!entry) continue;
      entry.resolve({
        command: String(r.command ?? ''),
        ...(typeof r.error === 'string' ? { error: r.error } : {}),
        ...(r.data && typeof r.data === 'object' ? { data: r.data as Record<string, unknown> } : {}),
      });
    }
  }
}
