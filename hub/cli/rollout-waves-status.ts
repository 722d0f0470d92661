import { CliError } from './errors.js';
import { liveBlock, phaseOf, plainLines, targetWord, waveStatuses, waveText, type KeyedLine, type RolloutRecord } from './rollout-waves-render.js';

type Out = (text: string) => void;

/** Where a followed rollout stands: what to show, and whether it ended (a line to print last) or failed (the error to exit with). */
export interface StatusView {
  plain: KeyedLine[];
  block: string[];
  done?: string;
  error?: CliError;
}

/**
 * The outcome `rollout status` exits with: 0 once every wave passed; 1 when the rollout rolled
 * back, was aborted, or stopped on a failed gate (onFailure: pause), so that a deployment
 * pipeline can act on it. RollingBack is followed to its end; Superseded is followed into the
 * newer rollout by the caller.
 */
export function statusView(dsName: string, r: RolloutRecord, now: number): StatusView {
  const view: StatusView = { plain: plainLines(dsName, r), block: liveBlock(dsName, r, now) };
  // The hub's message is on the header line shown last; the error says what happened, and lists the failed devices.
  const word = targetWord(r);
  const kindText = word === 'deployment' ? 'deployment' : 'daemon set';
  const subject = `the rollout of ${kindText} "${dsName}" to revision ${r.spec.revision}`;
  const failedWave = waveStatuses(r).find((w) => w.phase === 'Failed');
  const gate = failedWave ? ` the health gate of wave ${failedWave.name}` : '';
  const failed = (r.status?.failedNodes ?? []).map((f) => `${f.node} (wave ${f.wave}): ${f.reason}${f.message ? `: ${f.message}` : ''}`);
  switch (phaseOf(r)) {
    case 'Succeeded':
      view.done = `${kindText} "${dsName}" successfully rolled out (revision ${r.spec.revision})`;
      break;
    case 'RolledBack':
      view.error = new CliError(`${subject} failed${gate} and was rolled back to revision ${r.spec.fromRevision}`, 1, failed);
      break;
    case 'Aborted':
      view.error = new CliError(`${subject} was aborted at wave ${waveText(r)}`, 1, failed);
      break;
    case 'Paused':
      if (failedWave) {
        view.error = new CliError(`${subject} failed${gate} and is paused (onFailure: pause); go on with 'flotilla rollout resume ${word}/${dsName}', or go back with 'flotilla rollout undo ${word}/${dsName}'`, 1, failed);
      }
      break;
    default:
      break;
  }
  return view;
}

export interface StatusDisplay {
  show(plain: KeyedLine[], block: string[]): void;
  finish(): void;
}

/** On a terminal: the block, redrawn in place (cursor up over the last drawing, clear to the end of the screen). */
export class LiveBlock implements StatusDisplay {
  private drawn = 0;
  private last = '';

  constructor(
    private readonly out: Out,
    private readonly columns: () => number | undefined = () => undefined,
  ) {}

  show(_plain: KeyedLine[], block: string[]): void {
    // A line wider than the terminal would wrap and take two rows, and the redraw would miss one.
    const width = this.columns();
    const lines = width ? block.map((l) => (l.length >= width ? `${l.slice(0, Math.max(1, width - 2))}…` : l)) : block;
    // Nothing changed: drawing it again would only flicker.
    if (this.drawn && lines.join('\n') === this.last) return;
    this.out(`${this.drawn ? `\x1b[${this.drawn}A\x1b[J` : ''}${lines.join('\n')}`);
    this.drawn = lines.length;
    this.last = lines.join('\n');
  }

  finish(): void {
    this.drawn = 0;
    this.last = '';
  }
}

/** Elsewhere (pipes, CI logs): each line when it first appears or changes, never an escape code. */
export class PlainPrinter implements StatusDisplay {
  private readonly last = new Map<string, string>();

  constructor(private readonly out: Out) {}

  show(plain: KeyedLine[]): void {
    for (const line of plain) {
      if (this.last.get(line.key) === line.text) continue;
      this.last.set(line.key, line.text);
      this.out(line.text);
    }
  }

  finish(): void {}
}
