import * as z from 'zod';
import { desiredStateSchema, type DesiredState } from '../../shared/protocol/messages.js';
import { StateFiles } from './files.js';

export const credentialsSchema = z.object({
  hub: z.string(),
  node: z.string(),
  username: z.string(),
  password: z.string(),
});

export type DeviceCredentials = z.infer<typeof credentialsSchema>;

const CREDENTIALS_FILE = 'credentials.json';
const DESIRED_FILE = 'desired.json';
/** The newest revision of the desired set this device has taken: no copy older than it is ever run again. */
const REVISION_FILE = 'desired-revision.json';

const revisionSchema = z.object({ rev: z.number().int().min(0) });

/** The desired set found on disk at start, or why none could be used although one had been kept. */
export interface RestoredDesired {
  desired?: DesiredState;
  /** Set when the device had a desired set but no copy of it can be trusted: nothing is known to run. */
  lost?: string;
}

/** What the agent keeps on the device: its own credentials, and the last desired set (offline autonomy). */
export class AgentState {
  private readonly files: StateFiles;

  constructor(
    dir: string,
    private readonly onProblem: (message: string) => void,
  ) {
    this.files = new StateFiles(dir);
  }

  get dir(): string {
    return this.files.dir;
  }

  credentials(): DeviceCredentials | undefined {
    let problems = 0;
    const creds = this.files.read(CREDENTIALS_FILE, credentialsSchema, (message) => {
      problems++;
      this.onProblem(message);
    });
    // Written back whole, so the next start reads it quietly and both copies hold it again.
    if (creds && problems > 0) this.repair(CREDENTIALS_FILE, () => this.saveCredentials(creds));
    return creds;
  }

  saveCredentials(creds: DeviceCredentials): void {
    this.files.write(CREDENTIALS_FILE, creds);
  }

  desired(): DesiredState | undefined {
    return this.restoreDesired().desired;
  }

  /**
   * The newest desired set on disk that is not older than the newest revision this device has
   * taken. A damaged or older copy is never run: the device would remove the pods of the
   * revision it runs now. With no trustworthy copy the agent starts with no desired set, which
   * leaves every container as it is until the hub's arrives (as the kubelet removes no pod
   * before it has heard from its sources).
   */
  restoreDesired(): RestoredDesired {
    const revisions = this.files.copies(REVISION_FILE, revisionSchema);
    for (const copy of revisions) if (copy.value === undefined) this.onProblem(`${copy.problem}; ignoring it`);
    const taken = revisions.flatMap((c) => (c.value ? [c.value.rev] : []));
    const newest = taken.length > 0 ? Math.max(...taken) : undefined;
    const copies = this.files.copies(DESIRED_FILE, desiredStateSchema);
    const usable: DesiredState[] = [];
    for (const copy of copies) {
      if (copy.value === undefined) this.onProblem(`${copy.problem}; ignoring it`);
      else if (newest !== undefined && copy.value.rev < newest) {
        this.onProblem(`${copy.file} holds revision ${copy.value.rev}, older than revision ${newest} that this device last took; ignoring it (a device never goes back to an older revision)`);
      } else if (newest === undefined && copy.file.endsWith('.bak')) {
        // Agents before the revision file kept the previous revision in .bak: it may be older.
        this.onProblem(`${copy.file} cannot be checked against the newest revision taken (${this.files.path(REVISION_FILE)} is missing or damaged); ignoring it`);
      } else usable.push(copy.value);
    }
    // The main copy first among equals; the newest revision wins.
    const desired = usable.reduce<DesiredState | undefined>((best, d) => (best === undefined || d.rev > best.rev ? d : best), undefined);
    if (desired) {
      const whole = revisions.length === 2 && revisions.every((c) => c.value?.rev === desired.rev) && copies.length === 2 && copies.every((c) => c.value !== undefined && JSON.stringify(c.value) === JSON.stringify(desired));
      if (!whole) this.repair(DESIRED_FILE, () => this.saveDesired(desired));
      return { desired };
    }
    if (newest === undefined && copies.length === 0) return {};
    return { lost: `no usable copy of the desired set${newest !== undefined ? ` (revision ${newest})` : ''} in ${this.dir}` };
  }

  /**
   * Records the revision and both copies of the set, all durable before the set is run: no copy
   * older than a revision that may have run is ever taken at a start (a power cut on the way
   * leaves at worst copies of the set about to run, or older copies with the new revision
   * recorded, which are refused). When the set
   * cannot be written (a full disk), the copies left would be older than what is about to run:
   * they are removed (unlinking needs no space), so a restart waits for the hub instead.
   */
  saveDesired(desired: DesiredState): void {
    try {
      this.files.writeAll([
        [REVISION_FILE, { rev: desired.rev }],
        [DESIRED_FILE, desired],
      ]);
    } catch (err) {
      try {
        this.files.remove(DESIRED_FILE);
      } catch (removeErr) {
        this.onProblem(`could not remove the outdated ${this.files.path(DESIRED_FILE)}: ${(removeErr as Error).message}`);
      }
      throw err;
    }
  }

  /** A failed repair is only logged: the value read is good either way. */
  private repair(name: string, write: () => void): void {
    try {
      write();
    } catch (err) {
      this.onProblem(`could not repair ${this.files.path(name)}: ${(err as Error).message}`);
    }
  }
}
