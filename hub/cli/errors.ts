/**
 * The one place that turns errors into the CLI's exit status (docs/ARCHITECTURE.md, 'The command line'):
 * 0 done, 1 refused or failed (with a message on stderr), 2 usage.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 1,
    readonly details: string[] = [],
    /** Already printed where it happened (each failed object of a delete): only the exit status is left to give. */
    readonly reported = false,
  ) {
    super(message);
    this.name = 'CliError';
  }

  /** A failure whose messages are already on stderr. */
  static reported(message: string): CliError {
    return new CliError(message, 1, [], true);
  }

  static usage(message: string): CliError {
    return new CliError(message, 2);
  }

  /** An error answer of the hub's API: its message, and one line per bad field. */
  static fromApi(status: number, body: unknown): CliError {
    const b = (body ?? {}) as { message?: string; code?: string; details?: { fields?: { path: string; message: string }[] } };
    const fields = b.details?.fields ?? [];
    const message = b.message ?? `the hub answered HTTP ${status}`;
    return new CliError(message, 1, fields.length > 1 ? fields.map((f) => `${f.path}: ${f.message}`) : []);
  }
}
