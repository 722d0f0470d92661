import type { Logger } from 'pino';
import { HUB_USERNAME, type Topics } from '../../shared/protocol/topics.js';
import type { Credentials } from '../auth/credentials.js';
import type { HubConfig } from '../config.js';
import { BrokerAuth } from './auth.js';
import type { MessageBus } from './bus.js';
import { DynsecControl } from './dynsec.js';
import { EmbeddedBroker } from './embedded.js';
import { ExternalBroker } from './external.js';
import { MosquittoAccounts } from './mosquitto-accounts.js';
import { hubClientId, loadBrokerPassword } from './mosquitto-config.js';

export interface StartedBus {
  bus: MessageBus;
  /** The MQTT URL devices use. */
  url: string;
  /** The external broker's accounts, kept in step with the hub's credentials; none for the embedded broker. */
  accounts?: MosquittoAccounts;
}

/**
 * The hub's MQTT: the embedded aedes broker on its own port, or, with `--broker URL`, an
 * external Mosquitto that the hub joins as the client `hub` (password in DATA_DIR/broker.password,
 * made by `flotilla broker-config mosquitto`) and whose device accounts it manages.
 */
export async function startMessageBus(opts: {
  config: HubConfig;
  dataDir: string;
  joinTokenFile: string;
  credentials: Credentials;
  topics: Topics;
  log: Logger;
  onDeviceActivity: (node: string) => void;
}): Promise<StartedBus> {
  const { config, topics, log } = opts;
  if (!config.brokerUrl) {
    const auth = new BrokerAuth(opts.credentials, topics, log);
    const broker = await EmbeddedBroker.start({ host: config.listen, port: config.mqttPort, auth, log, onDeviceActivity: opts.onDeviceActivity, maxPacketBytes: config.mqttMaxPacketBytes });
    return { bus: broker, url: `mqtt://${config.listen}:${broker.port}` };
  }
  const password = loadBrokerPassword(opts.dataDir, { create: false });
  const broker = await ExternalBroker.connect({ url: config.brokerUrl, username: HUB_USERNAME, password, clientId: hubClientId(password), topics, log, onDeviceActivity: opts.onDeviceActivity, maxPacketBytes: config.mqttMaxPacketBytes });
  try {
    const dynsec = new DynsecControl(broker.control);
    await dynsec.start();
    const accounts = new MosquittoAccounts(dynsec, topics, opts.credentials, opts.joinTokenFile, log);
    await accounts.start();
    broker.accounts = accounts;
    if (config.nodeGraceSeconds <= 60) {
      log.info({ nodeGraceSeconds: config.nodeGraceSeconds }, 'external broker: devices are heard by their messages only (metrics every 15 s by default); with metrics off, set --node-grace above 60s');
    }
    return { bus: broker, url: config.brokerUrl, accounts };
  } catch (err) {
    await broker.close();
    throw err;
  }
}
