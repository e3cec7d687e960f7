import { constants } from 'node:os';
import { RootcastError } from '../core/errors.js';

/** How long the work may take to unwind after the first signal before the process exits anyway. */
const GRACE_MS = 20_000;

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
type InterruptSignal = (typeof SIGNALS)[number];

/**
 * Ctrl-C, SIGTERM and SIGHUP for a verb that does long work, so that stopping it leaves no
 * staging tree, temporary file or half-written output behind (Node's default would exit at
 * once and leave them for the next build or `fsck --repair`).
 *
 * Lifecycle: `watchInterrupts()` installs the handlers for one verb; `dispose()` removes them.
 * The first signal aborts `signal` with an `ABORTED` error as its reason: the API unwinds as
 * after any failure (children killed, temporaries removed). A second signal, or unwinding
 * longer than 20 s, exits at once with 128 + the signal's number; what is left then is what a
 * SIGKILL leaves, which the next build removes. `rootcast run` does not use this: it relays
 * signals to the command instead.
 */
export interface InterruptWatch {
  readonly signal: AbortSignal;
  /** The first signal received, if any. */
  received(): InterruptSignal | undefined;
  dispose(): void;
}

export function exitCodeFor(signal: InterruptSignal): number {
  return 128 + (constants.signals[signal] ?? 0);
}

export function watchInterrupts(): InterruptWatch {
  const controller = new AbortController();
  let first: InterruptSignal | undefined;
  let timer: NodeJS.Timeout | undefined;
  const onSignal = (name: InterruptSignal) => {
    if (first !== undefined) process.exit(exitCodeFor(first));
    first = name;
    controller.abort(
      new RootcastError({
        code: 'ABORTED',
        message: `interrupted by ${name}`,
        hint: 'Nothing half-written was kept; run the command again to start over.',
      }),
    );
    timer = setTimeout(() => process.exit(exitCodeFor(name)), GRACE_MS);
    timer.unref();
  };
  for (const name of SIGNALS) process.on(name, onSignal);
  return {
    signal: controller.signal,
    received: () => first,
    dispose() {
      for (const name of SIGNALS) process.off(name, onSignal);
      if (timer) clearTimeout(timer);
    },
  };
}
