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
    return this.readRepairing(CREDENTIALS_FILE, credentialsSchema);
  }

  saveCredentials(creds: DeviceCredentials): void {
    this.files.write(CREDENTIALS_FILE, creds);
  }

  desired(): DesiredState | undefined {
    return this.readRepairing(DESIRED_FILE, desiredStateSchema);
  }

  saveDesired(desired: DesiredState): void {
    this.files.write(DESIRED_FILE, desired);
  }

  /**
   * Reads a file; when it had to fall back to the `.bak` copy, writes that copy back as the
   * main file, so the next start reads a whole file again (and the next write keeps a good
   * `.bak`). A failed repair is only logged: the value read is good either way.
   */
  private readRepairing<T>(name: string, schema: z.ZodType<T>): T | undefined {
    let problems = 0;
    const value = this.files.read(name, schema, (message) => {
      problems++;
      this.onProblem(message);
    });
    if (value !== undefined && problems > 0) {
      try {
        this.files.write(name, value);
      } catch (err) {
        this.onProblem(`could not repair ${this.files.path(name)}: ${(err as Error).message}`);
      }
    }
    return value;
  }
}
