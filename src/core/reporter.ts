/**
 * How the library tells its caller what it is doing, without printing.
 *
 * The API takes a `Reporter`; the CLI passes one that renders logs to stderr and tasks as
 * progress bars on a terminal (see `src/cli/terminal-reporter.ts`), a front end may pass
 * its own, and tests pass `silentReporter` or a recording one. Lifecycle of a task: `task()`
 * opens it with an optional total, `advance()` moves it forward any number of times,
 * `finish()` closes it exactly once; a reporter must tolerate tasks that never get a total.
 */
export type LogLevel = 'debug' | 'info' | 'warn';

export interface TaskHandle {
  /** Adds `amount` to the task's progress (bytes or items, as the task was opened). */
  advance(amount: number): void;
  /** Raises the total, for work whose size is learned as it goes. */
  setTotal(total: number): void;
  finish(): void;
}

export interface Reporter {
  log(level: LogLevel, message: string): void;
  task(label: string, options?: { total?: number; unit?: 'bytes' | 'items' }): TaskHandle;
}

const noTask: TaskHandle = { advance() {}, setTotal() {}, finish() {} };

export const silentReporter: Reporter = {
  log() {},
  task() {
    return noTask;
  },
};
