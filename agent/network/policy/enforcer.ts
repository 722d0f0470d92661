import type { Logger } from 'pino';
import { desiredPoliciesSchema, type DesiredPolicies } from '../../../shared/protocol/policy.js';
import { fieldErrorsFromZod, formatFieldErrors } from '../../../shared/resources/fields.js';
import type { NodeEvent } from '../../node/image-gc.js';
import { buildModel, isEmptyModel, type PolicyModel } from './model.js';
import { fullRuleset, incrementalScript, removeRuleset } from './nft.js';

/** What the enforcer needs of the device's kernel (kernel.ts; bench/'s hollow devices may give none). */
export interface PolicyPlane {
  /** Runs one nft script as one transaction. */
  apply(script: string): Promise<void>;
  /** Whether the policy table exists (a reboot, or someone's `nft flush ruleset`, removes it). */
  tableExists(): Promise<boolean>;
  /**
   * Makes bridged IPv4 traffic (two pods on the device's bridge) meet the forward hook, with
   * connection tracking: 'on' when it does, 'unavailable' (with why) when the kernel cannot.
   */
  bridgeFiltering(): Promise<{ state: 'on' } | { state: 'unavailable'; why: string }>;
}

/** How often the table's presence is checked when nothing else changed (repair). */
const CHECK_INTERVAL_MS = 30_000;

/**
 * Enforces the desired set's network policy for the device's own pods (docs/ARCHITECTURE.md,
 * 'Network policy'): the model from the section and the pods' IPs, then the smallest change to
 * the kernel's table: one transaction of differences, or the whole table replaced at start,
 * when the table went missing, and after a transaction failed. A section it cannot read or a
 * table it cannot write is logged and told as a node event; what is enforced stays, and pods
 * are never stopped for it.
 */
export class PolicyEnforcer {
  /** What the table holds now; undefined when unknown (at start, after a failure): the next change replaces it whole. */
  private applied: PolicyModel | undefined;
  /** The last section read well, and its text: a section that cannot be read leaves this in force. */
  private section: DesiredPolicies | undefined;
  private sectionText = 'null';
  /** The section and pod IPs the table was last brought to: the same again is nothing to do. */
  private appliedInputs = '';
  private reported = new Set<string>();
  private lastCheck = 0;
  private bridgeChecked = false;
  /** Figures: transactions applied, whole replacements among them, and the last one's duration. */
  readonly stats = { transactions: 0, full: 0, failures: 0, lastMs: 0 };

  constructor(
    private readonly plane: PolicyPlane,
    private readonly log: Logger,
    private readonly onEvent: (e: NodeEvent) => void,
  ) {}

  /**
   * Brings the table to what `raw` (the desired set's `policies`) says for pods with these IPs
   * (uid → IP). Never throws: the agent's reconcile goes on whatever happens here.
   */
  async sync(raw: unknown, podIPs: ReadonlyMap<string, string>): Promise<void> {
    try {
      await this.syncOnce(raw, podIPs);
    } catch (err) {
      this.failed(err);
    }
  }

  private async syncOnce(raw: unknown, podIPs: ReadonlyMap<string, string>): Promise<void> {
    this.read(raw);
    // Most passes change nothing: the same section and the same pod IPs as the table was made from.
    const inputs = `${this.sectionText}\n${JSON.stringify([...podIPs])}`;
    const checkDue = this.applied !== undefined && !isEmptyModel(this.applied) && Date.now() - this.lastCheck >= CHECK_INTERVAL_MS;
    if (this.applied && inputs === this.appliedInputs && !checkDue) return;
    const { model, problems } = buildModel(this.section, podIPs);
    for (const problem of problems) this.once(`problem:${problem}`, { type: 'Warning', reason: 'NetworkPolicyInvalid', message: problem });
    if (checkDue) {
      this.lastCheck = Date.now();
      if (!(await this.plane.tableExists())) {
        this.log.warn('the network policy table is gone; writing it again');
        this.applied = undefined;
      }
    }
    const from = this.applied;
    if (from && incrementalScript(from, model) === '') {
      this.appliedInputs = inputs;
      return;
    }
    if (!isEmptyModel(model)) await this.checkBridge();
    let script: string;
    if (isEmptyModel(model)) {
      // Nothing to enforce: the table goes (at start, whatever an earlier run left).
      if (from && isEmptyModel(from)) {
        this.appliedInputs = inputs;
        return;
      }
      script = removeRuleset();
    } else script = from && !isEmptyModel(from) ? incrementalScript(from, model) : fullRuleset(model);
    const full = !from || isEmptyModel(from) || isEmptyModel(model);
    const started = Date.now();
    try {
      await this.plane.apply(script);
    } catch (err) {
      if (full) return this.failed(err);
      this.log.warn({ err: (err as Error).message }, 'network policy change refused; replacing the table whole');
      try {
        script = fullRuleset(model);
        await this.plane.apply(script);
        this.stats.full++;
      } catch (again) {
        return this.failed(again);
      }
    }
    if (full) this.stats.full++;
    this.stats.transactions++;
    this.stats.lastMs = Date.now() - started;
    if (!from) this.lastCheck = Date.now();
    this.applied = model;
    this.appliedInputs = inputs;
    this.reported.delete('failed');
    this.log.debug({ ingress: model.ingress.size, egress: model.egress.size, sets: model.sets.size, ms: this.stats.lastMs, full }, 'network policy applied');
  }

  /** Reads the section; one that cannot be read leaves the last good one in force. */
  private read(raw: unknown): void {
    const text = JSON.stringify(raw ?? null);
    if (text === this.sectionText) return;
    if (raw === undefined || raw === null) {
      this.section = undefined;
      this.sectionText = text;
      return;
    }
    const parsed = desiredPoliciesSchema.safeParse(raw);
    if (!parsed.success) {
      const message = `the desired set's network policy cannot be read, so the policy enforced before stays: ${formatFieldErrors(fieldErrorsFromZod(parsed.error, 'policies').slice(0, 5))}`;
      this.once(`unreadable:${text}`, { type: 'Warning', reason: 'NetworkPolicyInvalid', message });
      return;
    }
    this.section = parsed.data;
    this.sectionText = text;
  }

  private failed(err: unknown): void {
    this.stats.failures++;
    this.applied = undefined;
    const message = `network policy not applied: ${(err as Error).message}`;
    this.once('failed', { type: 'Warning', reason: 'NetworkPolicyFailed', message });
  }

  private async checkBridge(): Promise<void> {
    if (this.bridgeChecked) return;
    this.bridgeChecked = true;
    const result = await this.plane.bridgeFiltering().catch((err: unknown) => ({ state: 'unavailable' as const, why: (err as Error).message }));
    if (result.state === 'unavailable') {
      this.once('bridge', { type: 'Warning', reason: 'NetworkPolicyDegraded', message: `traffic between two pods of this device is not filtered: ${result.why}` });
    }
  }

  /** Logs and tells the hub once per distinct problem (a pass every 10 s would repeat it). */
  private once(key: string, e: NodeEvent): void {
    if (this.reported.has(key)) return;
    this.log.warn(e.message);
    this.reported.add(key);
    this.onEvent(e);
  }
}
