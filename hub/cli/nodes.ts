import type { Command } from 'commander';
import type { PodSpec, PodStatus } from '../../shared/resources/pod.js';
import { BUDGET_REFUSAL } from '../api/eviction.js';
import { HubClient, objectPath, type ClientOptions } from './client.js';
import { parseDuration } from './commands.js';
import { CliError } from './errors.js';

type Out = (text: string) => void;

interface PodObj {
  metadata: { name: string; namespace?: string; uid: string; ownerReferences?: { kind: string; name: string; controller?: boolean }[] };
  spec: PodSpec;
  status?: PodStatus;
}

/** How often a refused eviction is tried again (kubectl drain: every 5 s). */
export const EVICTION_RETRY_MS = 2_000;

/** `flotilla cordon|uncordon NODE`: spec.unschedulable by JSON merge patch, as kubectl does. */
export async function cordonCommand(node: string, unschedulable: boolean, opts: ClientOptions, out: Out): Promise<void> {
  const client = new HubClient(opts);
  const path = objectPath('nodes', false, undefined, node);
  const { body } = await client.request<{ spec?: { unschedulable?: boolean } }>('GET', path);
  const already = Boolean(body.spec?.unschedulable) === unschedulable;
  if (!already) await client.request('PATCH', path, { spec: { unschedulable: unschedulable ? true : null } }, 'application/merge-patch+json');
  out(`node/${node} ${already ? 'already ' : ''}${unschedulable ? 'cordoned' : 'uncordoned'}`);
}

export interface DrainOptions extends ClientOptions {
  /** Give up after this long (a duration such as 5m; 0: wait for ever). */
  timeout?: string;
  ignoreDaemonsets?: boolean;
  deleteEmptydirData?: boolean;
  force?: boolean;
}

export interface DrainPlan {
  evict: PodObj[];
  warnings: string[];
  errors: string[];
}

const id = (p: PodObj) => `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`;

/**
 * Which of a node's pods a drain evicts, by kubectl's filters: DaemonSet pods are left alone
 * (their controller would put them back at once) or refused without --ignore-daemonsets; a pod
 * with no controller would be gone for good, so it needs --force; a pod with an emptyDir loses
 * its data, so it needs --delete-emptydir-data. Finished pods go without question.
 */
export function planDrain(pods: PodObj[], opts: Pick<DrainOptions, 'ignoreDaemonsets' | 'deleteEmptydirData' | 'force'>): DrainPlan {
  const daemon: PodObj[] = [];
  const bare: PodObj[] = [];
  const local: PodObj[] = [];
  const evict: PodObj[] = [];
  for (const pod of pods) {
    const controller = pod.metadata.ownerReferences?.find((o) => o.controller);
    const finished = pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
    if (controller?.kind === 'DaemonSet') {
      daemon.push(pod);
      continue;
    }
    if (!finished && !controller) bare.push(pod);
    if (!finished && pod.spec.volumes?.some((v) => v.emptyDir)) local.push(pod);
    evict.push(pod);
  }
  const warnings: string[] = [];
  const errors: string[] = [];
  const list = (ps: PodObj[]) => ps.map(id).join(', ');
  if (daemon.length) {
    if (opts.ignoreDaemonsets === false) errors.push(`cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): ${list(daemon)}`);
    else warnings.push(`ignoring DaemonSet-managed Pods: ${list(daemon)}`);
  }
  if (bare.length) {
    if (opts.force) warnings.push(`deleting Pods that declare no controller: ${list(bare)}`);
    else errors.push(`cannot delete Pods that declare no controller (use --force to override): ${list(bare)}`);
  }
  if (local.length) {
    if (opts.deleteEmptydirData) warnings.push(`deleting Pods with local storage: ${list(local)}`);
    else errors.push(`cannot delete Pods with local storage (use --delete-emptydir-data to override): ${list(local)}`);
  }
  return { evict, warnings, errors };
}

/**
 * `flotilla drain NODE`: cordons the node, then evicts its pods through the hub's eviction API,
 * all at once; an eviction the hub refuses for a Deployment's budget (429) is tried again every
 * EVICTION_RETRY_MS until the replacements are available, as kubectl drain retries on a
 * PodDisruptionBudget. The node stays cordoned whatever happens; `uncordon` lets pods back.
 */
export async function drainCommand(node: string, opts: DrainOptions, out: Out, err: Out, sleep: (ms: number) => Promise<void> = delay): Promise<void> {
  const timeoutSeconds = opts.timeout === undefined || opts.timeout === '0' ? 0 : parseDuration(opts.timeout);
  const deadline = timeoutSeconds ? Date.now() + timeoutSeconds * 1000 : Infinity;
  await cordonCommand(node, true, opts, out);
  const client = new HubClient(opts);
  const { body } = await client.request<{ items: PodObj[] }>('GET', '/api/v1/pods');
  const plan = planDrain(body.items.filter((p) => p.spec.nodeName === node), opts);
  if (plan.errors.length) throw new CliError(`unable to drain node "${node}" (it stays cordoned)`, 1, plan.errors);
  for (const w of plan.warnings) err(`Warning: ${w}`);

  const evictOne = async (pod: PodObj): Promise<void> => {
    const ns = pod.metadata.namespace ?? 'default';
    const path = `${objectPath('pods', true, ns, pod.metadata.name)}/eviction`;
    out(`evicting pod ${id(pod)}`);
    let lastRefusal = '';
    for (;;) {
      try {
        await client.request('POST', path, { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: pod.metadata.name, namespace: ns } });
        break;
      } catch (e) {
        if (!(e instanceof CliError)) throw e;
        if (/not found/.test(e.message)) break;
        if (!e.message.startsWith(BUDGET_REFUSAL)) throw e;
        if (Date.now() >= deadline) throw new CliError(`drain did not complete within ${opts.timeout}: pod ${id(pod)} could not be evicted: ${e.message}`);
        if (e.message !== lastRefusal) err(`error when evicting pods/"${pod.metadata.name}" -n "${ns}" (will retry after ${EVICTION_RETRY_MS / 1000}s): ${e.message}`);
        lastRefusal = e.message;
        await sleep(EVICTION_RETRY_MS);
      }
    }
    out(`pod/${pod.metadata.name} evicted`);
  };
  await Promise.all(plan.evict.map(evictOne));
  out(`node/${node} drained`);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function parseBool(value: string): boolean {
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw CliError.usage(`expected true or false, not '${value}'`);
}

/** The cordon, uncordon and drain commands, on the program of hub/cli/main.ts. */
export function registerNodeCommands(program: Command, client: () => ClientOptions, out: Out, err: Out): void {
  program
    .command('cordon <node>')
    .description('mark a node unschedulable: no new pods are placed there')
    .action((node: string) => cordonCommand(node, true, client(), out));
  program
    .command('uncordon <node>')
    .description('mark a node schedulable again')
    .action((node: string) => cordonCommand(node, false, client(), out));
  program
    .command('drain <node>')
    .description("cordon a node and evict its pods, within each Deployment's maxUnavailable")
    .option('--timeout <duration>', 'give up after this long (0: wait for ever)', '5m')
    .option('--ignore-daemonsets [bool]', 'leave DaemonSet pods where they are (true or false)', parseBool, true)
    .option('--delete-emptydir-data', 'evict pods with emptyDir volumes too (their data is lost)')
    .option('--force', 'evict pods that no controller manages too (they are not recreated)')
    .action((node: string, o: Omit<DrainOptions, keyof ClientOptions>) => drainCommand(node, { ...client(), ...o }, out, err));
}
