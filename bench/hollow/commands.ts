/**
 * What a container's command does in the memory runtime: the few busybox forms that tests and
 * benchmarks give pods (`sleep N`, `sh -c "echo …; exit N"`, `true`, `false`), so that a
 * container exits, fails or prints as the same command would on a real engine. Any other
 * command is a server: it runs until it is stopped.
 */

export interface ProcessOutcome {
  /** undefined: still running when the script is done (a server, a long sleep). */
  exitCode: number | undefined;
  /** When it exits, from its start. */
  afterMs: number;
  /** What it printed, one chunk per line. */
  output: string[];
}

/** Longer than this is "until stopped" (timers cannot wait beyond ~24.8 days). */
const FOREVER_MS = 2 ** 31 - 1;

function base(arg: string | undefined): string {
  return (arg ?? '').slice((arg ?? '').lastIndexOf('/') + 1);
}

/** Splits `echo a; exit 3 && true` into statements, each a list of words (quotes honoured, no expansion). */
function statements(script: string): string[][] {
  const out: string[][] = [];
  let words: string[] = [];
  let word = '';
  let quote: string | undefined;
  let inWord = false;
  const endWord = () => {
    if (inWord) words.push(word);
    word = '';
    inWord = false;
  };
  for (let i = 0; i < script.length; i++) {
    const ch = script[i]!;
    if (quote) {
      if (ch === quote) quote = undefined;
      else word += ch;
      continue;
    }
    if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (ch === ';' || ch === '\n' || (ch === '&' && script[i + 1] === '&')) {
      if (ch === '&') i++;
      endWord();
      if (words.length) out.push(words);
      words = [];
    } else if (ch === ' ' || ch === '\t') endWord();
    else {
      word += ch;
      inWord = true;
    }
  }
  endWord();
  if (words.length) out.push(words);
  return out;
}

function run(argv: readonly string[], asMain: boolean): ProcessOutcome {
  const [cmd, ...args] = argv;
  const name = base(cmd);
  if (name === 'true') return { exitCode: 0, afterMs: 0, output: [] };
  if (name === 'false') return { exitCode: 1, afterMs: 0, output: [] };
  if (name === 'echo') return { exitCode: 0, afterMs: 0, output: [`${args.join(' ')}\n`] };
  if (name === 'exit') return { exitCode: Number(args[0] ?? 0) & 255, afterMs: 0, output: [] };
  if (name === 'sleep') {
    const ms = Number.parseFloat(args[0] ?? '0') * 1000;
    return ms >= FOREVER_MS || !Number.isFinite(ms) ? { exitCode: undefined, afterMs: 0, output: [] } : { exitCode: 0, afterMs: ms, output: [] };
  }
  if (name === 'sh' && args[0] === '-c') return script(args[1] ?? '', asMain);
  // A shell with no script and no input ends at once, as /bin/sh does under an engine without a TTY.
  if (name === 'sh' && args.length === 0) return { exitCode: 0, afterMs: 0, output: [] };
  // Anything else serves until it is stopped; run by exec, it answers at once.
  return asMain ? { exitCode: undefined, afterMs: 0, output: [] } : { exitCode: 0, afterMs: 0, output: [] };
}

function script(text: string, asMain: boolean): ProcessOutcome {
  const output: string[] = [];
  let afterMs = 0;
  let exitCode: number | undefined = 0;
  for (const words of statements(text)) {
    const step = run(words, asMain);
    output.push(...step.output);
    afterMs += step.afterMs;
    exitCode = step.exitCode;
    if (exitCode === undefined || base(words[0]) === 'exit') break;
  }
  return { exitCode, afterMs, output };
}

/** The main process of a container made with this entrypoint and command. */
export function mainProcess(entrypoint: readonly string[] | undefined, cmd: readonly string[] | undefined): ProcessOutcome {
  return run([...(entrypoint ?? []), ...(cmd ?? [])], true);
}

/** A command run by exec inside a running container. */
export function runCommand(cmd: readonly string[]): { exitCode: number; afterMs: number; output: string } {
  const r = run(cmd, false);
  return { exitCode: r.exitCode ?? 0, afterMs: r.afterMs, output: r.output.join('') };
}
