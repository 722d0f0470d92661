import type { Command } from 'commander';
import { lookupKind } from '../../shared/resources/kinds.js';
import { HubClient, objectPath, type ClientOptions } from './client.js';
import { CliError } from './errors.js';

type Out = (text: string) => void;

/** The kinds whose spec.replicas `scale` sets. */
const SCALABLE = new Set(['Deployment', 'ReplicaSet']);

/** `flotilla scale KIND/NAME --replicas N`: spec.replicas by JSON merge patch, as kubectl scale does. */
export async function scaleCommand(target: string, name: string | undefined, opts: ClientOptions & { replicas: string; namespace?: string }, out: Out): Promise<void> {
  const [kindName, inlineName] = target.split('/');
  const kind = lookupKind(kindName ?? '');
  if (!kind || !SCALABLE.has(kind.kind)) throw CliError.usage(`scale: cannot scale "${kindName}" (use deployment/NAME or replicaset/NAME)`);
  const objectName = inlineName ?? name;
  if (!objectName || (inlineName && name)) throw CliError.usage(`scale needs one ${kind.singular}: ${kind.singular}/NAME`);
  if (!/^\d+$/.test(opts.replicas)) throw CliError.usage(`--replicas must be a whole number of 0 or more, not '${opts.replicas}'`);
  const client = new HubClient(opts);
  const path = objectPath(kind.plural, true, opts.namespace ?? 'default', objectName);
  await client.request('PATCH', path, { spec: { replicas: Number(opts.replicas) } }, 'application/merge-patch+json');
  out(`${kind.singular}/${objectName} scaled`);
}

export function registerScaleCommand(program: Command, client: () => ClientOptions, out: Out): void {
  program
    .command('scale <kind/name> [name]')
    .description('set the number of replicas of a deployment or replica set')
    .requiredOption('--replicas <n>', 'the new number of replicas')
    .option('-n, --namespace <ns>', 'namespace')
    .action((target: string, name: string | undefined, o: { replicas: string; namespace?: string }) => scaleCommand(target, name, { ...client(), ...o }, out));
}
