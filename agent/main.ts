import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { createLogger } from '../shared/log/logger.js';
import { DEFAULT_TOPIC_PREFIX } from '../shared/protocol/topics.js';
import { DEFAULT_METRICS_INTERVAL_SECONDS, parseMetricsInterval } from '../shared/protocol/metrics.js';
import { validateDns1123Subdomain, validateLabels } from '../shared/labels/validation.js';
import { FLOTILLA_VERSION } from '../shared/version.js';
import { parseIPv4 } from '../shared/net/cidr.js';
import { WIREGUARD_DEFAULT_PORT } from '../shared/protocol/network.js';
import { Agent, type AgentConfig } from './agent.js';
import { JoinRefused } from './link/join.js';
import { DEFAULT_HEARTBEAT_SECONDS } from './link/link.js';
import { PAUSE_IMAGE } from './runtime/pause/image.js';
import { DockerRuntime } from './runtime/docker.js';

const USAGE = `Usage: flotilla agent --hub mqtt://HOST:PORT --token JOIN_TOKEN [options]

Runs the Flotilla device agent: joins the hub with the join token (once; its own credentials
are kept in the state directory), then runs the pods the hub assigns to this device on the local
container engine, and keeps running them while the hub is unreachable.

Options:
  --hub URL             the hub's MQTT URL (mqtt://HOST:1883)
  --token TOKEN         join token (only needed to join; see \`flotilla token create\`)
  --token-file FILE     read the join token from FILE (keeps it out of the process list)
  --name NAME           node name (default: this host's name)
  --labels k=v,...      node labels asked for at join (within the join token's label rule;
                        never node-restriction.flotilla.io/, which only operators set)
  --state-dir DIR       where credentials and the last desired state live (default: ./flotilla-agent)
  --docker-host URL     container engine API (default: $DOCKER_HOST or unix:///var/run/docker.sock)
  --pause-image IMAGE   image of the pods' infra containers (default: ${PAUSE_IMAGE}, built in)
  --overlay MODE        the pod network: wireguard (default), a WireGuard overlay across the
                        fleet with the pod CIDR the hub gives this node; or none, a local bridge
                        (--pod-network) and nothing of the overlay left on the device
  --wireguard-port N    the overlay's UDP port (default: ${WIREGUARD_DEFAULT_PORT})
  --wireguard-interface NAME
                        the overlay's WireGuard interface (default: flotilla-wg, at most 15
                        characters); one of that name that is not WireGuard is refused
  --advertise-address IP
                        an IPv4 address of this device that peers can reach, offered first
  --resolv-conf FILE    the device's resolver configuration: where the device's DNS server
                        forwards names outside the cluster, and what pods of dnsPolicy Default
                        use (default: /etc/resolv.conf)
  --ingress-http-port N, --ingress-https-port N
                        where the ingress proxy listens on every address of the device, when
                        the hub makes this node an ingress device (label flotilla.io/ingress=true)
                        (default: 80 and 443; 0 turns one off)
  --pod-network NAME    with --overlay none: engine network the pods join (default: flotilla;
                        "none" for none)
  --pod-subnet CIDR     subnet of that network when the agent creates it (default: 10.88.0.0/16)
  --pod-pids-limit N    at most N processes in a container whose spec sets no limits.pids
                        (default: no limit)
  --topic-prefix P      MQTT topic prefix (default: ${DEFAULT_TOPIC_PREFIX})
  --heartbeat SECONDS   MQTT keepalive, the heartbeat the hub's node grace period counts on
                        (default: ${DEFAULT_HEARTBEAT_SECONDS}; keep it well under the hub's --node-grace)
  --metrics-interval D  how often container and node metrics are sampled and sent, e.g. 15s, 1m
                        (default: ${DEFAULT_METRICS_INTERVAL_SECONDS}s; 0 for none; the Node annotation
                        flotilla.io/metrics-interval, set on the hub, takes precedence)
  -h, --help            show this help
  --version             print the version`;

class UsageError extends Error {}

export function parseLabels(text: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  if (!text) return labels;
  for (const pair of text.split(',').filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--labels: '${pair}' is not key=value`);
    labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  const problems = validateLabels(labels);
  if (problems.length) throw new UsageError(`--labels: ${problems[0]!.key}: ${problems[0]!.message}`);
  return labels;
}

export function parseAgentArgs(argv: string[]): { config: AgentConfig; dockerHost?: string } | 'help' | 'version' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        hub: { type: 'string' },
        token: { type: 'string' },
        'token-file': { type: 'string' },
        name: { type: 'string' },
        labels: { type: 'string' },
        'state-dir': { type: 'string' },
        'docker-host': { type: 'string' },
        'pause-image': { type: 'string' },
        'pod-network': { type: 'string' },
        'pod-subnet': { type: 'string' },
        'pod-pids-limit': { type: 'string' },
        'topic-prefix': { type: 'string' },
        heartbeat: { type: 'string' },
        'metrics-interval': { type: 'string' },
        overlay: { type: 'string' },
        'wireguard-port': { type: 'string' },
        'wireguard-interface': { type: 'string' },
        'advertise-address': { type: 'string' },
        'resolv-conf': { type: 'string' },
        'ingress-http-port': { type: 'string' },
        'ingress-https-port': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return 'help';
  if (values.version) return 'version';
  if (values.hub && !/^mqtts?:\/\/[^/]+/.test(values.hub)) throw new UsageError(`--hub: '${values.hub}' is not an mqtt:// or mqtts:// URL`);
  if (values.token && values['token-file']) throw new UsageError('give --token or --token-file, not both');
  let token = values.token;
  if (values['token-file']) {
    try {
      token = readFileSync(values['token-file'], 'utf8').trim();
    } catch (err) {
      throw new UsageError(`--token-file: cannot read '${values['token-file']}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  const heartbeat = values.heartbeat === undefined ? undefined : Number(values.heartbeat.replace(/s$/, ''));
  if (heartbeat !== undefined && (!Number.isInteger(heartbeat) || heartbeat < 1 || heartbeat > 3600)) throw new UsageError(`--heartbeat: '${values.heartbeat}' is not a whole number of seconds between 1 and 3600`);
  let podPidsLimit: number | undefined;
  if (values['pod-pids-limit'] !== undefined) {
    podPidsLimit = Number(values['pod-pids-limit']);
    if (!/^\d+$/.test(values['pod-pids-limit']) || !Number.isSafeInteger(podPidsLimit) || podPidsLimit < 1) throw new UsageError(`--pod-pids-limit: '${values['pod-pids-limit']}' is not a positive integer`);
  }
  let metricsInterval: number | undefined;
  if (values['metrics-interval'] !== undefined) {
    const text = values['metrics-interval'];
    const parsed = text === '0' || text === 'off' ? 0 : parseMetricsInterval(text);
    if (typeof parsed === 'string') throw new UsageError(`--metrics-interval: ${parsed}, or 0 for none`);
    metricsInterval = parsed;
  }
  const overlay = values.overlay ?? 'wireguard';
  if (overlay !== 'wireguard' && overlay !== 'none') throw new UsageError(`--overlay: '${overlay}' is not wireguard or none`);
  let wireguardPort = WIREGUARD_DEFAULT_PORT;
  if (values['wireguard-port'] !== undefined) {
    wireguardPort = Number(values['wireguard-port']);
    if (!/^\d+$/.test(values['wireguard-port']) || wireguardPort < 1 || wireguardPort > 65535) throw new UsageError(`--wireguard-port: '${values['wireguard-port']}' is not a port number (1 to 65535)`);
  }
  const wireguardInterface = values['wireguard-interface'] ?? 'flotilla-wg';
  // The kernel's IFNAMSIZ, and no character `ip` would read as something else.
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(wireguardInterface) || wireguardInterface === '.' || wireguardInterface === '..') throw new UsageError(`--wireguard-interface: '${wireguardInterface}' is not an interface name (1 to 15 letters, digits, '-', '_' or '.')`);
  const advertiseAddress = values['advertise-address'];
  if (advertiseAddress !== undefined && parseIPv4(advertiseAddress) === undefined) throw new UsageError(`--advertise-address: '${advertiseAddress}' is not an IPv4 address`);
  const ingressPort = (flag: 'ingress-http-port' | 'ingress-https-port', fallback: number): number => {
    const text = values[flag];
    if (text === undefined) return fallback;
    const port = Number(text);
    if (!/^\d+$/.test(text) || port > 65535) throw new UsageError(`--${flag}: '${text}' is not a port number (0 to 65535; 0 turns it off)`);
    return port;
  };
  const ingressHttpPort = ingressPort('ingress-http-port', 80);
  const ingressHttpsPort = ingressPort('ingress-https-port', 443);
  const name = (values.name ?? hostname()).toLowerCase();
  const nameProblems = validateDns1123Subdomain(name);
  if (nameProblems.length) throw new UsageError(`--name: invalid node name '${name}': ${nameProblems[0]}`);
  return {
    config: {
      ...(values.hub ? { hub: values.hub } : {}),
      ...(token ? { token } : {}),
      name,
      labels: parseLabels(values.labels),
      stateDir: values['state-dir'] ?? './flotilla-agent',
      topicPrefix: values['topic-prefix'] ?? DEFAULT_TOPIC_PREFIX,
      pauseImage: values['pause-image'] ?? PAUSE_IMAGE,
      podNetwork: values['pod-network'] ?? 'flotilla',
      podSubnet: values['pod-subnet'] ?? '10.88.0.0/16',
      maxPods: 110,
      ...(podPidsLimit !== undefined ? { podPidsLimit } : {}),
      resyncIntervalMs: 10_000,
      statusIntervalMs: 60_000,
      ...(heartbeat !== undefined ? { heartbeatSeconds: heartbeat } : {}),
      ...(metricsInterval !== undefined ? { metricsIntervalSeconds: metricsInterval } : {}),
      overlay,
      wireguardPort,
      wireguardInterface,
      ...(advertiseAddress !== undefined ? { advertiseAddress } : {}),
      ...(values['resolv-conf'] ? { resolvConf: values['resolv-conf'] } : {}),
      ingressHttpPort,
      ingressHttpsPort,
    },
    ...(values['docker-host'] ? { dockerHost: values['docker-host'] } : {}),
  };
}

/** Runs the agent until SIGINT/SIGTERM; returns the exit status (0 done, 1 failed, 2 usage). */
/**
 * The agent spends its life waiting: V8's optimising compilers (Maglev, TurboFan) buy it no
 * speed that matters, and their code and working memory cost a small device ~5 MB of RSS. The
 * interpreter and the baseline compiler stay. FLOTILLA_AGENT_OPTIMIZE=1 keeps them all.
 * Whatever the compilers, the heap is collected sooner rather than grown: a little garbage at
 * every metrics sample otherwise lets it creep up ~5 MB before V8 collects the old generation.
 */
export function frugalJit(env: NodeJS.ProcessEnv = process.env): boolean {
  setFlagsFromString('--optimize-for-size');
  if (env.FLOTILLA_AGENT_OPTIMIZE === '1') return false;
  setFlagsFromString('--no-opt');
  setFlagsFromString('--no-maglev');
  return true;
}

export async function main(argv: string[]): Promise<number> {
  frugalJit();
  let parsed;
  try {
    parsed = parseAgentArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    throw err;
  }
  if (parsed === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (parsed === 'version') {
    process.stdout.write(`${FLOTILLA_VERSION}\n`);
    return 0;
  }
  const log = createLogger({ name: 'agent' });
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception; the agent keeps running'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection; the agent keeps running'));
  const agent = new Agent(parsed.config, new DockerRuntime(parsed.dockerHost), log);
  try {
    await agent.start();
  } catch (err) {
    if (err instanceof JoinRefused) {
      process.stderr.write(`error: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await agent.stop();
  return 0;
}

// Run when this file is the program (the bundled agent started with plain node).
declare const require: { main?: unknown } | undefined;
declare const module: unknown;
if (typeof require !== 'undefined' && typeof module !== 'undefined' && require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
    if (code !== 0) process.exit(code);
  });
}
