import { z } from 'zod';
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
    return this.files.read(CREDENTIALS_FILE, credentialsSchema, this.onProblem);
  }

  saveCredentials(creds: DeviceCredentials): void {
    this.files.write(CREDENTIALS_FILE, creds);
  }

  desired(): DesiredState | undefined {
    return this.files.read(DESIRED_FILE, desiredStateSchema, this.onProblem);
  }

  saveDesired(desired: DesiredState): void {
    this.files.write(DESIRED_FILE, desired);
  }
}
