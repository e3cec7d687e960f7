import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { copyDriverFor } from './driver-copy.js';
import { runTool } from './exec.js';

/** `reflink`: see driver-copy.ts. Works where `cp --reflink=always` does (xfs with reflink, btrfs). */
export const reflinkDriver = copyDriverFor('reflink', 'always', async (scratch) => {
  await writeFile(join(scratch, 'a'), 'reflink probe\n');
  const out = await runTool(['cp', '--reflink=always', join(scratch, 'a'), join(scratch, 'b')]).catch(
    () => undefined,
  );
  return out?.code === 0;
});
