import { cidr, formatCidr } from '../../shared/net/cidr.js';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { createLogger } from '../../shared/log/logger.js';
import { bytes } from '../../shared/quantities/quantity.js';
import { FLOTILLA_VERSION } from '../../shared/version.js';
import { EXTERNAL_BROKER_MAX_PACKET_BYTES } from '../broker/mosquitto-config.js';
import { DEFAULT_CLUSTER_CIDR, DEFAULT_NODE_CIDR_MASK_SIZE } from '../../shared/protocol/network.js';
import { loadHubConfig } from '../config.js';
import { parsePodNetworkSettings } from '../network/ipam.js';
import { limitHeapGrowth } from '../heap.js';
import { runHub } from '../run.js';
import { applyCommand, deleteCommand, describeCommand, getCommand, labelCommand, parseDuration, tokenCommand } from './commands.js';
import { registerBrokerConfigCommand } from './broker-config.js';
import { CliError } from './errors.js';
import { logsCommand, stdoutWriter } from './logs.js';
import { registerNodeCommands } from './nodes.js';
import { relayConfig, relayEndpointOption, relayInterfaceOption, relayModeOption, relayPortOption, type RelayFlags } from './relay-options.js';
import { registerRolloutCommands } from './rollout.js';
import { registerScaleCommand } from './scale.js';
import { registerTopCommand } from './top.js';
import { DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, parseServiceNetworkSettings } from '../services/allocator.js';

const out = (text: string) => process.stdout.write(`${text}\n`);
const err = (text: string) => process.stderr.write(`${text}\n`);

function port(value: string): number {
  const n = Number(value);
  // commander names the option in its message: "option '--api-port <port>' argument 'x' is invalid".
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port is a whole number from 0 to 65535.');
  return n;
}

/** A duration flag of the hub; its error names the flag. */
function hubDuration(flag: string, value: string): number {
  try {
    return parseDuration(value);
  } catch (e) {
    throw CliError.usage(`${flag}: ${(e as Error).message}`);
  }
}

/**
 * How long a hub that has stopped (or failed to start) waits for what is left on the event loop
 * before it exits anyway: a part that forgot a timer or a socket must not keep the process,
 * and its ports, alive.
 */
const HUB_EXIT_GRACE_MS = 2_000;

/** A size in bytes, as a number or a quantity (1Mi, 512Ki). */
function byteSize(value: string): number {
  let n: number;
  try {
    n = bytes(value);
  } catch {
    throw CliError.usage(`invalid size '${value}' (bytes, or a quantity such as 1Mi)`);
  }
  if (!Number.isInteger(n) || n <= 0) throw CliError.usage(`invalid size '${value}' (a whole number of bytes)`);
  return n;
}

/** --cluster-cidr and --node-cidr-mask-size, checked together; a usage error (exit 2) names the flag. */
function podNetworkFlags(clusterCidr: string, maskSize: string): { clusterCIDR: string; nodeCIDRMaskSize: number } {
  const bits = /^\/?\d{1,2}$/.test(maskSize.trim()) ? Number(maskSize.trim().replace('/', '')) : NaN;
  const checked = parsePodNetworkSettings(clusterCidr, bits);
  if ('error' in checked) throw CliError.usage(Number.isNaN(bits) && checked.flag !== '--cluster-cidr' ? `--node-cidr-mask-size: '${maskSize}' is not a prefix length (a whole number such as 24)` : checked.error);
  // Written as ip prints it (10.0.0.0/8, not 10.0.0.0/08): the relay compares routes by this text, and devices receive it.
  return { clusterCIDR: formatCidr(cidr(clusterCidr.trim())), nodeCIDRMaskSize: bits };
}

/** --service-cidr and --service-node-port-range; a usage error (exit 2) names the flag. */
function serviceNetworkFlags(serviceCidr: string, range: string, clusterCIDR: string): { serviceCIDR: string; serviceNodePortRange: string } {
  const checked = parseServiceNetworkSettings(serviceCidr.trim(), range, clusterCIDR);
  if ('error' in checked) throw CliError.usage(checked.error);
  return { serviceCIDR: formatCidr(checked.serviceCIDR), serviceNodePortRange: `${checked.nodePorts.min}-${checked.nodePorts.max}` };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function buildProgram(): Command {
  const program = new Command('flotilla')
    .description('Flotilla: an edge and IoT fleet orchestrator over MQTT')
    .version(FLOTILLA_VERSION)
    .option('--server <url>', 'the hub API (default: $FLOTILLA_SERVER or http://127.0.0.1:8080)')
    .option('--token <token>', 'admin token (default: $FLOTILLA_TOKEN or ./flotilla-data/admin.token)')
    .showHelpAfterError()
    .exitOverride();
  const client = () => program.opts<{ server?: string; token?: string }>();

  program
    .command('hub')
    .description('run the hub: store, MQTT broker, API and controllers')
    .option('--data-dir <dir>', 'where the database and tokens live', './flotilla-data')
    .option('--listen <addr>', 'address to listen on (loopback unless asked)', '127.0.0.1')
    .option('--api-port <port>', 'HTTP API port', port, 8080)
    .option('--mqtt-port <port>', 'MQTT port of the embedded broker', port, 1883)
    .option('--broker <url>', 'use an external MQTT broker (mqtt://HOST:PORT) instead of the embedded one; see flotilla broker-config')
    .option('--node-grace <duration>', 'silence before a node is marked Unknown', '40s')
    .option('--mqtt-max-packet-size <bytes>', 'the largest MQTT packet a device may send (e.g. 1Mi); a client that sends a larger one is disconnected', byteSize)
    .option('--eviction-timeout <duration>', 'how long before pods of an unreachable node are replaced', '5m')
    .addOption(relayModeOption())
    .addOption(relayPortOption())
    .addOption(relayInterfaceOption())
    .addOption(relayEndpointOption())
    .option('--metrics-raw-retention <duration>', 'how long devices\' raw metric samples are kept', '6h')
    .option('--metrics-1m-retention <duration>', 'how long 1-minute metric rollups are kept', '7d')
    .option('--metrics-1h-retention <duration>', 'how long 1-hour metric rollups are kept', '90d')
    .option('--cluster-cidr <cidr>', 'the IPv4 range of every pod address; each node gets a block of it', DEFAULT_CLUSTER_CIDR)
    .option('--node-cidr-mask-size <bits>', 'the prefix length of each node\'s block of the cluster CIDR', String(DEFAULT_NODE_CIDR_MASK_SIZE))
    .option('--service-cidr <cidr>', 'the IPv4 range of the Services\' virtual IPs (apart from the cluster CIDR)', DEFAULT_SERVICE_CIDR)
    .option('--service-node-port-range <first-last>', 'the ports a NodePort Service may take on every device', DEFAULT_NODE_PORT_RANGE)
    .action(async (o: { clusterCidr: string; nodeCidrMaskSize: string; serviceCidr: string; serviceNodePortRange: string; dataDir: string; listen: string; apiPort: number; mqttPort: number; broker?: string; mqttMaxPacketSize?: number; nodeGrace: string; evictionTimeout: string; metricsRawRetention: string; metrics1mRetention: string; metrics1hRetention: string } & RelayFlags) => {
      // Mosquitto as broker-config writes it takes no packet over its own limit: a larger one would never reach the hub.
      if (o.broker && o.mqttMaxPacketSize !== undefined && o.mqttMaxPacketSize > EXTERNAL_BROKER_MAX_PACKET_BYTES) throw CliError.usage(`--mqtt-max-packet-size: with --broker, at most ${EXTERNAL_BROKER_MAX_PACKET_BYTES} bytes (the max_packet_size that flotilla broker-config writes), not ${o.mqttMaxPacketSize}`);
      const network = podNetworkFlags(o.clusterCidr, o.nodeCidrMaskSize);
      const services = serviceNetworkFlags(o.serviceCidr, o.serviceNodePortRange, network.clusterCIDR);
      const config = loadHubConfig({ ...network, ...services, dataDir: o.dataDir, listen: o.listen, apiPort: o.apiPort, mqttPort: o.mqttPort, ...(o.broker ? { brokerUrl: o.broker } : {}), ...(o.mqttMaxPacketSize ? { mqttMaxPacketBytes: o.mqttMaxPacketSize } : {}), nodeGraceSeconds: hubDuration('--node-grace', o.nodeGrace), evictionTimeoutSeconds: hubDuration('--eviction-timeout', o.evictionTimeout), metricsRawRetentionSeconds: hubDuration('--metrics-raw-retention', o.metricsRawRetention), metricsMinuteRetentionSeconds: hubDuration('--metrics-1m-retention', o.metrics1mRetention), metricsHourRetentionSeconds: hubDuration('--metrics-1h-retention', o.metrics1hRetention), ...relayConfig(o) });
      const log = createLogger({ name: 'hub' });
      limitHeapGrowth();
      process.on('uncaughtException', (e) => log.error({ err: e }, 'uncaught exception; the hub keeps serving'));
      process.on('unhandledRejection', (e) => log.error({ err: e }, 'unhandled rejection; the hub keeps serving'));
      try {
        await runHub(config, log);
      } finally {
        // The exit status is set by then (see bin/flotilla.js); process.exit() keeps it.
        setTimeout(() => {
          log.warn('handles still open after the hub stopped: exiting anyway');
          process.exit();
        }, HUB_EXIT_GRACE_MS).unref();
      }
    });

  program
    .command('agent')
    .description('run the device agent (flotilla agent --help for its options)')
    .allowUnknownOption()
    .helpOption(false)
    .action(() => {
      // The bin entry runs the agent's own bundle before this program is loaded; see bin/flotilla.js.
      throw new CliError('the agent runs from its own bundle: use the flotilla command installed by npm');
    });

  const token = program.command('token').description('manage join tokens and device credentials');
  token
    .command('create')
    .description('create a join token (printed once)')
    .option('--description <text>', 'what the token is for')
    .option('--ttl <duration>', 'expire after this long (e.g. 24h)')
    .option('--labels <k=v,...>', 'labels every device joining with it gets; it may claim no others (but see --label-prefix)')
    .option('--label-prefix <prefix>', 'label keys starting with this a device may claim at join, any value (repeatable)', collect)
    .action((o: { description?: string; ttl?: string; labels?: string; labelPrefix?: string[] }) => tokenCommand('create', undefined, { ...client(), ...o }, out));
  token
    .command('list')
    .description('list join tokens and device credentials (never their secrets)')
    .option('-o, --output <format>', 'table or json')
    .action((o: { output?: string }) => tokenCommand('list', undefined, { ...client(), ...o }, out));
  token
    .command('revoke <id>')
    .description('revoke a join token or a device credential (the device is cut off at once)')
    .action((id: string) => tokenCommand('revoke', id, client(), out));

  program
    .command('apply')
    .description('create or update objects from manifests')
    .requiredOption('-f, --filename <path>', 'file, folder or - for stdin (repeatable)', collect)
    .option('--dry-run', 'validate and show what would change, write nothing')
    .option('-n, --namespace <ns>', 'namespace for objects that name none')
    .action((o: { filename: string[]; dryRun?: boolean; namespace?: string }) => applyCommand({ ...client(), ...o }, out, err));

  program
    .command('get <kind> [names...]')
    .description('list objects of a kind, or show some (KIND NAME... or KIND/NAME)')
    .option('-l, --selector <selector>', 'label selector, e.g. app=web,tier!=db')
    .option('-n, --namespace <ns>', 'namespace', undefined)
    .option('-A, --all-namespaces', 'every namespace')
    .addOption(new Option('-o, --output <format>', 'table, wide, json, yaml or name'))
    .option('-w, --watch', 'keep watching for changes')
    .action((kind: string, names: string[], o: { selector?: string; namespace?: string; allNamespaces?: boolean; output?: string; watch?: boolean }) => getCommand(kind, names, { ...client(), ...o }, out));

  program
    .command('describe <kind> [names...]')
    .description('show objects in detail, with their events (KIND NAME... or KIND/NAME; KIND alone: all of them)')
    .option('-n, --namespace <ns>', 'namespace')
    .action((kind: string, names: string[], o: { namespace?: string }) => describeCommand(kind, names, { ...client(), ...o }, out));

  program
    .command('delete [kind] [names...]')
    .description('delete objects by kind and name, or those in manifests')
    .option('-f, --filename <path>', 'file, folder or - for stdin (repeatable)', collect)
    .option('-n, --namespace <ns>', 'namespace')
    .option('--dry-run', 'check each deletion with the hub, delete nothing')
    .action((kind: string | undefined, names: string[], o: { filename?: string[]; namespace?: string; dryRun?: boolean }) => deleteCommand(kind, names, { ...client(), ...o }, out, err));

  program
    .command('label <kind> <args...>')
    .description('set (k=v) or remove (k-) labels: label KIND NAME k=v k2- or label KIND/NAME k=v, e.g. flotilla label node pi-1 fleet=sensors')
    .option('--overwrite', 'allow changing an existing value')
    .option('-n, --namespace <ns>', 'namespace')
    .option('--dry-run', 'check the change with the hub, change nothing')
    .action((kind: string, args: string[], o: { overwrite?: boolean; namespace?: string; dryRun?: boolean }) => labelCommand(kind, args, { ...client(), ...o }, out));

  program
    .command('logs <pod>')
    .description("print a container's logs, read from the device that runs the pod")
    .option('-c, --container <name>', 'the container (needed when the pod has several)')
    .option('-f, --follow', 'keep printing new output')
    .option('--tail <lines>', 'only the last lines (-1: all)')
    .option('--since <duration>', 'only output newer than this, e.g. 5m')
    .option('-p, --previous', 'the previous attempt of a restarted container')
    .option('-n, --namespace <ns>', 'namespace')
    .action((pod: string, o: { container?: string; follow?: boolean; tail?: string; since?: string; previous?: boolean; namespace?: string }) => logsCommand(pod, { ...client(), ...o }, stdoutWriter()));

  registerNodeCommands(program, client, out, err);
  registerRolloutCommands(program, client, out);
  registerScaleCommand(program, client, out);
  registerTopCommand(program, client, out);
  registerBrokerConfigCommand(program, out);

  return program;
}

/** Runs the CLI and returns its exit status: 0 done, 1 refused or failed, 2 usage. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return 2;
    }
    if (e instanceof CliError) {
      if (e.reported) return e.exitCode;
      err(`error: ${e.message}`);
      for (const d of e.details) err(`  ${d}`);
      return e.exitCode;
    }
    err(`error: ${(e as Error).message ?? String(e)}`);
    return 1;
  }
}
