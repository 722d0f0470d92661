import { CREDENTIALS_MIGRATION, JOIN_TOKEN_RULES_MIGRATION } from '../auth/credentials.js';
import { DISPATCH_MIGRATION } from '../dispatch/desired.js';
import { METRICS_MIGRATION } from '../metrics/schema.js';
import { POD_NETWORK_MIGRATION } from '../network/tables.js';
import { SERVICE_MESSAGES_MIGRATION } from '../services/tables.js';
import { openDatabase, type Database } from './db.js';
import { migrations as storeMigrations, type Migration } from './migrations.js';

/**
 * The hub's whole schema: the object store's migrations, then those of the parts that keep
 * tables of their own beside it. Append only, with the next version number (store migrations
 * included: the store's own list stops at version 1); never reorder.
 */
export const hubMigrations: readonly Migration[] = [
  ...storeMigrations,
  { version: 2, name: 'credentials', up: CREDENTIALS_MIGRATION },
  { version: 3, name: 'dispatch revisions', up: DISPATCH_MIGRATION },
  { version: 4, name: 'metrics', up: METRICS_MIGRATION },
  { version: 5, name: 'join token label rules', up: JOIN_TOKEN_RULES_MIGRATION },
  { version: 6, name: 'pod network: pod CIDR allocations and peer messages', up: POD_NETWORK_MIGRATION },
  { version: 7, name: 'services: the messages published to devices', up: SERVICE_MESSAGES_MIGRATION },
];

export function openHubDatabase(file: string): Database {
  return openDatabase(file, hubMigrations);
}
