import { spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { unmountOverlay } from '../assemble/overlay.js';
import { RootcastError } from '../core/errors.js';
import { type LockPackage, lockFileSchema } from '../lock/lock-file.js';
import { ANNOTATION } from './oci.js';
import { storeLayout, temporaryName } from './paths.js';
import { readTemplate, readTemplateLock, type TemplateDetails } from './template-query.js';

/**
 * A template's whole tree as one directory, for readers (diff, export, tests).
 *
 * A one-layer template is its unpacked layer directory itself. A layered one is a read-only
 * overlay of its layer directories (top first), mounted under `<store>/tmp/<pid>-…/` so a
 * process killed while it is mounted leaves it where `cleanStore` unmounts it. Release the
 * view when done; the directory must not be written to either way.
 */
export interface TemplateView {
  root: string;
  release(): Promise<void>;
}

export async function openTemplateView(store: string, details: TemplateDetails): Promise<TemplateView> {
  const missing = details.layers.find((l) => !l.unpacked);
  if (missing) {
    throw new RootcastError({
      code: 'LAYER_NOT_UNPACKED',
      message: `layer ${missing.diffId} of ${details.ref ?? details.manifestDigest} is not unpacked in the store`,
      hint: 'Run `rootcast fsck --repair`, then rebuild or pull the template.',
    });
  }
  if (details.layers.length === 1) return { root: details.layers[0]!.unpackedPath, release: async () => {} };
  const dir = join(storeLayout.tmp(store), temporaryName());
  const root = join(dir, 'view');
  await mkdir(root, { recursive: true, mode: 0o755 });
  const lowers = details.layers.map((l) => l.unpackedPath).reverse();
  const result = await new Promise<{ code: number; stderr: string }>((resolve) => {
    const child = spawn(
      'mount',
      ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${lowers.join(':')}`, root],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('error', (error) => resolve({ code: -1, stderr: String(error) }));
    child.on('close', (code) => resolve({ code: code ?? 1, stderr }));
  });
  if (result.code !== 0) {
    await rm(dir, { recursive: true, force: true });
    throw new RootcastError({
      code: 'OVERLAY_MOUNT_FAILED',
      message: `cannot mount the layers of ${details.ref ?? details.manifestDigest}: ${result.stderr.trim()}`,
      hint: 'Reading layered templates needs root and overlayfs (modprobe overlay).',
    });
  }
  return {
    root,
    release: async () => {
      await unmountOverlay(root);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Runs `work` on the template's tree and releases the view afterwards, also on errors. */
export async function withTemplateView<T>(
  store: string,
  ref: string,
  work: (root: string, details: TemplateDetails) => Promise<T>,
): Promise<T> {
  const details = await readTemplate(store, ref);
  const view = await openTemplateView(store, details);
  try {
    return await work(view.root, details);
  } finally {
    await view.release();
  }
}

/**
 * Every package a template has installed: the locks along its parent chain (each lists what
 * its layer added), base first. Undefined when some template in the chain records no lock.
 */
export async function templatePackageChain(store: string, ref: string): Promise<LockPackage[] | undefined> {
  const out: LockPackage[][] = [];
  const seen = new Set<string>();
  let current: string | undefined = ref;
  while (current !== undefined) {
    const details = await readTemplate(store, current);
    if (seen.has(details.manifestDigest)) break;
    seen.add(details.manifestDigest);
    if (!details.lockDigest) return undefined;
    out.unshift(
      lockFileSchema.parse(JSON.parse(await readTemplateLock(store, details.manifestDigest))).packages,
    );
    current = details.annotations[ANNOTATION.parent];
  }
  return out.flat();
}
