import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError, run } from '../../shared/net/exec.js';
import { deleteRoute, enableForwarding, replaceRoute, setLinkUp } from '../../shared/net/ip.js';
import { DEFAULT_TOOLS, deleteInterface, ensureInterface, syncConfig, type WireguardImplementation, type WireguardTools } from '../../shared/net/wireguard.js';
import type { ContainerRuntime } from '../runtime/runtime.js';
import { NFT_TABLE } from './firewall.js';
import type { NetStep } from './plan.js';

type Executors = { [K in NetStep['action']]: (step: Extract<NetStep, { action: K }>) => Promise<void> };

/** A step that failed, with the step's action: the overlay's NetworkUnavailable reason says which. */
export class NetStepError extends Error {
  constructor(
    readonly action: NetStep['action'],
    message: string,
  ) {
    super(message);
  }
}

/** The only code that changes the device's network: it runs the steps planNetwork chose. */
export class NetExecutor {
  private readonly executors: Executors;
  /** The implementation of the interface this executor made (ensureInterface says). */
  implementation: WireguardImplementation | undefined;

  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly tools: WireguardTools = DEFAULT_TOOLS,
    private readonly nft = 'nft',
  ) {
    this.executors = {
      createInterface: async ({ name }) => {
        this.implementation = (await ensureInterface(name, this.tools)).implementation;
      },
      configureInterface: ({ name, privateKey, port, peers }) => syncConfig(name, privateKey, port, peers, this.tools),
      linkUp: ({ name, mtu }) => setLinkUp(name, mtu, this.tools.ip),
      startHandshake: async ({ name, publicKeys, keepaliveSeconds }) => {
        // Keepalive off, then on: turning it on sends a keepalive at once, and with it a
        // handshake. One `wg set` names many peers.
        await run(this.tools.wg, ['set', name, ...publicKeys.flatMap((k) => ['peer', k, 'persistent-keepalive', '0'])]);
        await run(this.tools.wg, ['set', name, ...publicKeys.flatMap((k) => ['peer', k, 'persistent-keepalive', String(keepaliveSeconds)])]);
      },
      createNetwork: async ({ spec }) => {
        if (!this.runtime.createBridgeNetwork) throw new Error('this container engine cannot make the pod network');
        await this.runtime.createBridgeNetwork(spec);
      },
      removeNetwork: async ({ name }) => {
        await this.runtime.removeNetwork?.(name);
      },
      enableForwarding: () => enableForwarding(),
      replaceRoute: ({ dst, dev, src }) => replaceRoute(dst, dev, src, this.tools.ip),
      deleteRoute: ({ dst, dev }) => deleteRoute(dst, dev, this.tools.ip),
      applyFirewall: ({ ruleset }) => this.nftFile(ruleset),
      deleteFirewall: async () => {
        try {
          await run(this.nft, ['delete', 'table', 'ip', NFT_TABLE]);
        } catch (err) {
          if (!(err instanceof CommandError && /No such file or directory/i.test(err.stderr))) throw err;
        }
      },
      deleteInterface: ({ name }) => deleteInterface(name, this.tools),
    };
  }

  async run(step: NetStep): Promise<void> {
    try {
      await (this.executors[step.action] as (s: NetStep) => Promise<void>)(step);
    } catch (err) {
      throw new NetStepError(step.action, (err as Error).message);
    }
  }

  /** `nft -f` reads a file by name; written in a fresh directory only this user reads, and removed at once. */
  private async nftFile(ruleset: string): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'flotilla-nft-'));
    try {
      const file = join(dir, 'flotilla.nft');
      await writeFile(file, ruleset, { mode: 0o600 });
      await run(this.nft, ['-f', file]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
