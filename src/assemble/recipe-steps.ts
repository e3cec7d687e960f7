import { RootcastError } from '../core/errors.js';
import type { Reporter } from '../core/reporter.js';
import type { RecipeStep } from '../recipe/types.js';
import { outputTail, runInSandbox } from './sandbox.js';

/**
 * Recipe `steps:` run inside the assembled tree.
 *
 * Lifecycle: after the packages are configured and the recipe files written, each step's
 * `run` text is handed to the tree's own `/bin/sh -c`, in recipe order, each in a fresh
 * sandbox (namespaces, chroot, services held). The network is off unless the step says
 * `network: true`; then the host's resolver is visible for that step only. The first step
 * that exits non-zero stops the build with STEP_FAILED; later steps do not run.
 */
export interface StepsContext {
  reporter: Reporter;
  signal?: AbortSignal;
  sourceDateEpoch?: number;
  /** Per step; default the sandbox's own (30 minutes). */
  timeoutMs?: number;
}

/** Wall time of each step, in recipe order. */
export interface StepTiming {
  index: number;
  ms: number;
}

export async function runRecipeSteps(
  root: string,
  steps: readonly RecipeStep[],
  ctx: StepsContext,
): Promise<StepTiming[]> {
  const timings: StepTiming[] = [];
  if (steps.length === 0) return timings;
  const task = ctx.reporter.task('running recipe steps', { total: steps.length, unit: 'items' });
  try {
    for (const [index, step] of steps.entries()) {
      const started = performance.now();
      ctx.reporter.log('info', `step ${index + 1}/${steps.length}: ${step.run.split('\n')[0]}`);
      const result = await runInSandbox(root, ['/bin/sh', '-c', step.run], {
        network: step.network === true,
        reporter: ctx.reporter,
        ...(ctx.signal ? { signal: ctx.signal } : {}),
        ...(ctx.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: ctx.sourceDateEpoch }),
        ...(ctx.timeoutMs === undefined ? {} : { timeoutMs: ctx.timeoutMs }),
      });
      if (result.code !== 0) {
        throw new RootcastError({
          code: 'STEP_FAILED',
          message: `recipe step ${index + 1} (steps[${index}]) exited with code ${result.code}: ${step.run.split('\n')[0]}`,
          hint: `Fix the step or what it needs${step.network ? '' : ' (it ran without network; add network: true if it downloads)'}. Output ended with:\n${outputTail(result)}`,
          details: { index, code: result.code, run: step.run, output: outputTail(result, 60) },
        });
      }
      timings.push({ index, ms: performance.now() - started });
      task.advance(1);
    }
  } finally {
    task.finish();
  }
  return timings;
}
