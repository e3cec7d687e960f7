import { constants } from 'node:os';
import { isRootcastError, RootcastError } from '../core/errors.js';

/** How long the work may take to unwind after the first signal before the process exits anyway. */
const GRACE_MS = 20_000;

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
type InterruptSignal = (typeof SIGNALS)[number];

/**
 * Ctrl-C, SIGTERM and SIGHUP for a verb that does long work, so that stopping it leaves no
 * staging tree, temporary file or half-written output behind (Node's default would exit at
 * once and leave them for the next build or `fsck --repair`).
 *
 * Lifecycle: `watchInterrupts()` installs the handlers for one verb. The first signal aborts
 * `signal` with an `ABORTED` error as its reason, and the API unwinds as after any failure
 * (children killed, temporaries removed). When the verb has settled and printed, `finish()`
 * removes the handlers and, if a signal came, raises it again with its default action: the
 * process dies *by* the signal, which is how a shell knows to stop a script (an exit status
 * of 130 alone would let `rootcast build a; rootcast build b` go on to b after Ctrl-C). A
 * second signal, or unwinding longer than 20 s (the timer also keeps the process alive, so a
 * cleanup stuck on a promise cannot end in a silent exit 0), ends the process at once.
 * `rootcast run` does not use this: it relays signals to its command instead.
 */
export interface InterruptWatch {
  readonly signal: AbortSignal;
  /** The first signal received, if any. */
  received(): InterruptSignal | undefined;
  /**
   * The error to report for `error`, which the verb threw after a signal came: the abort
   * itself, or a failure that came with it (kept in `details`, so a real error is not hidden).
   */
  errorAfterSignal(error: unknown): RootcastError;
  /** Removes the handlers; re-raises the received signal, so this returns only when none came. */
  finish(): void;
}

export function exitCodeFor(signal: InterruptSignal): number {
  return 128 + (constants.signals[signal] ?? 0);
}

export function watchInterrupts(): InterruptWatch {
  const controller = new AbortController();
  let first: InterruptSignal | undefined;
  let timer: NodeJS.Timeout | undefined;
  const dieBy = (name: InterruptSignal): never => {
    for (const s of SIGNALS) process.off(s, onSignal);
    process.kill(process.pid, name);
    // The default action is immediate; this is only reached if the signal is ignored.
    process.exit(exitCodeFor(name));
  };
  const onSignal = (name: InterruptSignal) => {
    if (first !== undefined) dieBy(first);
    first = name;
    // After a hang-up the terminal is gone: writing to it fails with EIO, which must not
    // crash the cleanup that is about to run.
    process.stdout.on('error', () => {});
    process.stderr.on('error', () => {});
    controller.abort(
      new RootcastError({
        code: 'ABORTED',
        message: `interrupted by ${name}`,
        hint: 'Nothing half-written was kept; work finished before the signal stays (a warning above says what).',
      }),
    );
    timer = setTimeout(() => dieBy(name), GRACE_MS);
  };
  for (const name of SIGNALS) process.on(name, onSignal);
  return {
    signal: controller.signal,
    received: () => first,
    errorAfterSignal(error) {
      const reason = controller.signal.reason as RootcastError;
      if (error === reason || (isRootcastError(error) && error.code === 'ABORTED')) return reason;
      // Usually the signal's doing (a killed sandbox fails as SANDBOX_FAILED), but it may be a
      // failure that came first: say what it was instead of hiding it.
      return new RootcastError({
        code: reason.code,
        message: reason.message,
        hint: reason.hint,
        cause: error,
        details: {
          during: isRootcastError(error)
            ? { code: error.code, message: error.message }
            : { message: String(error) },
        },
      });
    },
    finish() {
      if (timer) clearTimeout(timer);
      if (first !== undefined) dieBy(first);
      for (const name of SIGNALS) process.off(name, onSignal);
    },
  };
}
