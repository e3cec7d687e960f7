import { createRequire } from 'node:module';
import type cliProgressModule from 'cli-progress';
import type { LogLevel, Reporter, TaskHandle } from '../core/reporter.js';

/**
 * Renders library events for a person: log lines on stderr, and progress bars only when
 * both stdout and stderr are terminals (so pipes, CI logs and `--json` stay clean).
 */
export interface TerminalReporterOptions {
  verbose: boolean;
  quiet: boolean;
  /** Force bars off (e.g. with --json). */
  noProgress: boolean;
  /**
   * `--progress json`: every log line and progress update as one JSON object per line on
   * stderr (`{"event":"start"|"progress"|"done"|"log", …}`), updates of a task at most every
   * 200 ms, whatever stdout is; stdout keeps the `--json` result alone.
   */
  jsonProgress?: boolean;
}

export function createTerminalReporter(options: TerminalReporterOptions): Reporter & { stop(): void } {
  if (options.jsonProgress) return jsonLinesReporter(options.verbose);
  const interactive = Boolean(process.stdout.isTTY && process.stderr.isTTY) && !options.noProgress;
  // Loaded only for a terminal: scripts and `--json` runs never pay for it.
  const cliProgress = interactive
    ? (createRequire(import.meta.url)('cli-progress') as typeof cliProgressModule)
    : undefined;
  const bars = cliProgress
    ? new cliProgress.MultiBar(
        {
          stream: process.stderr,
          hideCursor: true,
          clearOnComplete: true,
          format: ' {bar} {percentage}% | {label} | {valueText}',
          barsize: 24,
          autopadding: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;

  const write = (line: string) => {
    if (bars) bars.log(`${line}\n`);
    else process.stderr.write(`${line}\n`);
  };

  return {
    log(level: LogLevel, message: string) {
      if (level === 'debug' && !options.verbose) return;
      if (level === 'info' && options.quiet) return;
      write(level === 'warn' ? `warning: ${message}` : message);
    },
    task(label, taskOptions = {}): TaskHandle {
      if (!bars) return { advance() {}, setTotal() {}, finish() {} };
      const unit = taskOptions.unit ?? 'items';
      let total = taskOptions.total ?? 0;
      let value = 0;
      const text = () =>
        unit === 'bytes' ? `${formatBytes(value)} / ${formatBytes(total)}` : `${value}/${total}`;
      const bar = bars.create(Math.max(total, 1), 0, { label, valueText: text() });
      let finished = false;
      return {
        advance(amount) {
          value += amount;
          bar.update(value, { valueText: text() });
        },
        setTotal(next) {
          total = next;
          bar.setTotal(Math.max(total, 1));
          bar.update(value, { valueText: text() });
        },
        finish() {
          if (finished) return;
          finished = true;
          bar.stop();
          bars.remove(bar);
        },
      };
    },
    stop() {
      bars?.stop();
    },
  };
}

/** The `--progress json` reporter: NDJSON events on stderr, for scripts and front ends. */
function jsonLinesReporter(verbose: boolean): Reporter & { stop(): void } {
  const emit = (event: Record<string, unknown>) => process.stderr.write(`${JSON.stringify(event)}\n`);
  let next = 0;
  return {
    log(level: LogLevel, message: string) {
      if (level === 'debug' && !verbose) return;
      emit({ event: 'log', level, message });
    },
    task(label, taskOptions = {}): TaskHandle {
      const task = ++next;
      const unit = taskOptions.unit ?? 'items';
      let total = taskOptions.total ?? 0;
      let value = 0;
      let last = 0;
      let finished = false;
      emit({ event: 'start', task, label, unit, total });
      const update = (force: boolean) => {
        const now = performance.now();
        if (!force && now - last < 200) return;
        last = now;
        emit({ event: 'progress', task, label, unit, value, total });
      };
      return {
        advance(amount) {
          value += amount;
          update(false);
        },
        setTotal(n) {
          total = n;
          update(false);
        },
        finish() {
          if (finished) return;
          finished = true;
          emit({ event: 'done', task, label, unit, value, total });
        },
      };
    },
    stop() {},
  };
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
