import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { Topics, DEFAULT_TOPIC_PREFIX } from '../../shared/protocol/topics.js';
import { buildDynsecConfig, buildMosquittoConf, findDynsecPlugin, loadBrokerPassword } from '../broker/mosquitto-config.js';
import { CliError } from './errors.js';

type Out = (text: string) => void;

export interface BrokerConfigOptions {
  dataDir: string;
  out?: string;
  listen: string;
  port: number;
  plugin?: string;
  dynsecFile?: string;
  topicPrefix: string;
  force?: boolean;
}

const DEFAULT_DYNSEC_FILE = '/etc/mosquitto/flotilla/dynamic-security.json';

/**
 * `flotilla broker-config mosquitto`: the configuration that makes an existing Mosquitto (2.0,
 * with its dynamic-security plugin) enforce the fleet's rules, for `flotilla hub --broker`.
 * The hub's broker password is made here, once, in DATA_DIR/broker.password (mode 0600).
 * With --out, writes mosquitto.conf and dynamic-security.json into that folder; without it,
 * prints both, each under a `# ==> FILE <==` line.
 */
export function brokerConfigCommand(kind: string, o: BrokerConfigOptions, out: Out): void {
  if (kind !== 'mosquitto') throw CliError.usage(`unknown broker '${kind}': only mosquitto is supported`);
  let topics: Topics;
  try {
    topics = new Topics(o.topicPrefix);
  } catch (err) {
    throw CliError.usage(`--topic-prefix: ${(err as Error).message}`);
  }
  const dataDir = resolve(o.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  let hubPassword: string;
  try {
    hubPassword = loadBrokerPassword(dataDir, { create: true });
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  const dynsec = `${JSON.stringify(buildDynsecConfig({ topics, hubPassword }), null, 2)}\n`;
  const pluginPath = o.plugin ?? findDynsecPlugin();
  const brokerUrl = `mqtt://${o.listen.includes(':') ? `[${o.listen}]` : o.listen}:${o.port}`;

  if (!o.out) {
    const dynsecFile = o.dynsecFile ?? DEFAULT_DYNSEC_FILE;
    out(`# ==> mosquitto.conf <==\n${buildMosquittoConf({ host: o.listen, port: o.port, pluginPath, dynsecFile })}`);
    out(`# ==> ${dynsecFile} <==\n${dynsec}`);
    return;
  }
  const dir = resolve(o.out);
  const dynsecFile = join(dir, 'dynamic-security.json');
  const confFile = join(dir, 'mosquitto.conf');
  // The plugin saves every account the hub creates into this file: replacing it drops them.
  if (existsSync(dynsecFile) && !o.force) throw new CliError(`${dynsecFile} exists and holds the broker's device accounts; use --force to start afresh (every device must then join again)`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(confFile, buildMosquittoConf({ host: o.listen, port: o.port, pluginPath, dynsecFile, persistenceDir: dir }), { mode: 0o644 });
  writeFileSync(dynsecFile, dynsec, { mode: 0o600 });
  out(`wrote ${confFile}`);
  out(`wrote ${dynsecFile}`);
  out('start the broker (as root it runs as user mosquitto, which must own the folder):');
  out(`  chown -R mosquitto: ${dir} && mosquitto -c ${confFile}`);
  out('then the hub:');
  out(`  flotilla hub --data-dir ${dataDir} --broker ${brokerUrl}`);
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw CliError.usage(`--port: invalid port '${value}' (1-65535)`);
  return n;
}

export function registerBrokerConfigCommand(program: Command, out: Out): void {
  program
    .command('broker-config <broker>')
    .description('print or write the configuration of an external MQTT broker (mosquitto) for flotilla hub --broker')
    .option('--data-dir <dir>', 'the hub\'s data directory (holds broker.password)', './flotilla-data')
    .option('--out <dir>', 'write mosquitto.conf and dynamic-security.json into this folder instead of printing them')
    .option('--listen <addr>', 'address the broker listens on', '127.0.0.1')
    .option('--port <port>', 'MQTT port of the broker', port, 1883)
    .option('--plugin <path>', 'path of mosquitto_dynamic_security.so (default: found in the usual places)')
    .option('--dynsec-file <path>', 'where the printed configuration expects dynamic-security.json', DEFAULT_DYNSEC_FILE)
    .option('--topic-prefix <prefix>', 'the fleet\'s MQTT topic prefix', DEFAULT_TOPIC_PREFIX)
    .option('--force', 'with --out: replace an existing dynamic-security.json')
    .action((broker: string, o: BrokerConfigOptions) => brokerConfigCommand(broker, o, out));
}
