import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clone, listContainers, removeContainers } from '../../src/api/runtime.js';
import { removeTemplate } from '../../src/api/tags.js';
import { RootcastError } from '../../src/core/errors.js';
import { readRecord, templatesInUse } from '../../src/runtime/record.js';
import { generateHostKey } from '../../src/runtime/ssh-keys.js';
import { parseCsv } from '../../src/runtime/values.js';
import { cleanStore } from '../../src/store/clean.js';
import { gcStore } from '../../src/store/gc.js';
import { readTemplate } from '../../src/store/template-query.js';
import { installHostTools, makeTemplate, mountsUnder, tempDir } from './runtime-fixtures.js';

/**
 * Cloning: batches from a CSV (acceptance 5 on a small template), what clone refuses before
 * making anything, the driver probe, templates kept by gc and rmi while containers use them,
 * and a clone killed half-way.
 */
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIAuQPeKICkSsfXZFRfBIsppcEoxfPzqIGX2fCiW92u4';

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof RootcastError) return error.code;
    throw error;
  }
  return 'no error';
}

/** Reads a file through an overlay container's upper directory, else its template layer. */
function containerFile(store: string, name: string, path: string, layer: string): string {
  const upper = join(store, 'containers', name, 'upper', path);
  return readFileSync(existsSync(upper) ? upper : join(layer, path), 'utf8');
}

describe('clone', () => {
  const dir = tempDir();
  const store = join(dir.path, 'store');
  let layer: string;

  beforeAll(async () => {
    mkdirSync(store);
    await makeTemplate({
      store,
      name: 'ssh',
      build: (tree) => {
        installHostTools(tree);
        writeFileSync(join(tree, 'usr/sbin/sshd'), '#!/bin/sh\n', { mode: 0o755 });
        mkdirSync(join(tree, 'etc/ssh'));
        for (const f of [
          'ssh_host_rsa_key',
          'ssh_host_rsa_key.pub',
          'ssh_host_ed25519_key',
          'ssh_host_ed25519_key.pub',
        ])
          writeFileSync(join(tree, 'etc/ssh', f), 'the template key\n');
        writeFileSync(join(tree, 'etc/ssh/sshd_config'), '# config\n');
      },
    });
    layer = (await readTemplate(store, 'ssh:1.0')).layers[0]!.unpackedPath;
  }, 60_000);
  afterAll(() => dir.cleanup());

  it('clones a lab of 30 from a CSV: own hostname, user, key, machine-id and host keys', async () => {
    const csv = join(dir.path, 'students.csv');
    const rows = Array.from(
      { length: 30 },
      (_, i) => `student${i + 1},"${KEY} s${i + 1}",$6$salt$hash${i + 1}`,
    );
    writeFileSync(csv, `user,ssh_key,password_hash\n${rows.join('\n')}\n`);
    const result = await clone('ssh:1.0', undefined, {
      store,
      namePattern: 'lab-{{index}}',
      valuesFile: csv,
      set: ['motd=Hello {{user}} on {{hostname}}', 'domain=lab.test'],
    });
    expect(result.driver).toBe('overlay');
    expect(result.containers.map((c) => c.name)).toEqual(rows.map((_, i) => `lab-${i + 1}`));
    for (const c of result.containers) expect(c.ms).toBeGreaterThan(0);
    const machineIds = new Set<string>();
    const hostKeys = new Set<string>();
    for (let i = 1; i <= 30; i++) {
      const name = `lab-${i}`;
      const file = (path: string) => containerFile(store, name, path, layer);
      expect(file('etc/hostname')).toBe(`${name}\n`);
      expect(file('etc/hosts')).toContain(`127.0.1.1\t${name}.lab.test\t${name}\n`);
      expect(file('etc/motd')).toBe(`Hello student${i} on ${name}\n`);
      expect(file('etc/passwd')).toContain(`student${i}:x:1000:1000::/home/student${i}:/bin/sh\n`);
      expect(file('etc/shadow')).toMatch(
        new RegExp(`^student${i}:\\$6\\$salt\\$hash${i}:\\d+:0:99999:7:::$`, 'm'),
      );
      expect(file(`home/student${i}/.ssh/authorized_keys`)).toBe(`${KEY} s${i}\n`);
      expect(file(`home/student${i}/.profile`)).toBe('# skel profile\n');
      machineIds.add(file('etc/machine-id'));
      const key = file('etc/ssh/ssh_host_ed25519_key');
      expect(key).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
      hostKeys.add(key);
      expect(file('etc/ssh/ssh_host_ecdsa_key.pub')).toMatch(
        new RegExp(`^ecdsa-sha2-nistp256 \\S+ root@${name}\n$`),
      );
      // The template's RSA key is hidden by a whiteout, not left behind.
      const rsa = join(store, 'containers', name, 'upper/etc/ssh/ssh_host_rsa_key');
      expect(readdirSync(join(store, 'containers', name, 'upper/etc/ssh'))).toContain('ssh_host_rsa_key');
      expect(execFileSync('stat', ['-c', '%F %t:%T', rsa], { encoding: 'utf8' }).trim()).toBe(
        'character special file 0:0',
      );
      expect(readRecord(store, name).values).toMatchObject({ user: `student${i}`, index: i });
    }
    expect(machineIds.size).toBe(30);
    expect(hostKeys.size).toBe(30);
    // The upper directories are all the template's files change: home and account files keep their owners.
    const home = join(store, 'containers/lab-3/upper/home/student3');
    expect(
      execFileSync('stat', ['-c', '%u:%g %a', home, join(home, '.ssh/authorized_keys')], {
        encoding: 'utf8',
      }),
    ).toBe('1000:1000 700\n1000:1000 600\n');
    expect(
      execFileSync('stat', ['-c', '%u:%g %a', join(store, 'containers/lab-3/upper/etc/shadow')], {
        encoding: 'utf8',
      }),
    ).toBe('0:42 640\n');
    await removeContainers(
      result.containers.map((c) => c.name),
      { store },
    );
  });

  it('writes host keys that OpenSSH reads', () => {
    const work = tempDir();
    try {
      for (const type of ['ed25519', 'ecdsa'] as const) {
        const key = generateHostKey(type, 'root@test');
        const file = join(work.path, type);
        writeFileSync(file, key.privateKey, { mode: 0o600 });
        let derived: string;
        try {
          derived = execFileSync('ssh-keygen', ['-y', '-f', file], { encoding: 'utf8' });
        } catch {
          continue; // no ssh-keygen on this host: the format check above the loop stands
        }
        expect(derived.split(' ').slice(0, 2)).toEqual(key.publicKey.split(' ').slice(0, 2));
      }
    } finally {
      work.cleanup();
    }
  });

  it('refuses bad batches before making any container', async () => {
    await clone('ssh:1.0', 'taken', { store });
    expect(await code(clone('ssh:1.0', undefined, { store, namePattern: 'x', count: 2 }))).toBe(
      'CLONE_NAME_DUPLICATE',
    );
    expect(
      await code(clone('ssh:1.0', undefined, { store, namePattern: 'n{{index}}-{{nope}}', count: 2 })),
    ).toBe('CLONE_VALUE_MISSING');
    const names = ['a1', 'taken'];
    const csv = join(dir.path, 'two.csv');
    writeFileSync(csv, `box\n${names.join('\n')}\n`);
    expect(await code(clone('ssh:1.0', undefined, { store, namePattern: '{{box}}', valuesFile: csv }))).toBe(
      'CONTAINER_EXISTS',
    );
    expect(await code(clone('ssh:1.0', 'bad_name', { store }))).toBe('CONTAINER_NAME_INVALID');
    expect(await code(clone('ssh:1.0', 'h1', { store, set: ['hostname=not_valid'] }))).toBe(
      'CLONE_VALUE_INVALID',
    );
    expect(await code(clone('ssh:1.0', 'u1', { store, set: ['user=root', 'ssh_key=nonsense'] }))).toBe(
      'CLONE_VALUE_INVALID',
    );
    expect(await code(clone('ssh:1.0', 'd1', { store, driver: 'btrfs' }))).toBe('DRIVER_UNAVAILABLE');
    expect(
      await code(
        clone('ssh:1.0', undefined, { store, namePattern: 'z{{index}}', count: 3, valuesFile: csv }),
      ),
    ).toBe('CLONE_ARGS_INVALID');
    expect((await listContainers({ store })).map((c) => c.name)).toEqual(['taken']);
    expect(JSON.parse(readFileSync(join(store, 'runtime/driver.json'), 'utf8'))).toMatchObject({
      driver: 'overlay',
    });
    await removeContainers(['taken'], { store });
  });

  it('parses quoted CSV fields', () => {
    expect(parseCsv('a,b\r\n"x, ""y""",2\n\n3,\n')).toEqual([{ a: 'x, "y"', b: '2' }, { a: '3' }]);
  });

  it('refuses a CSV with a repeated column or a short row, naming the line', async () => {
    const refused = (text: string) => {
      try {
        parseCsv(text, 'v.csv');
      } catch (error) {
        if (error instanceof RootcastError) return `${error.code}: ${error.message}`;
        throw error;
      }
      return 'no error';
    };
    expect(refused('user,user\nalice,bob\n')).toBe(
      'VALUES_FILE_INVALID: v.csv: line 1: the header names column "user" twice',
    );
    expect(refused('user, user ,x\na,b,c\n')).toMatch(/^VALUES_FILE_INVALID: .*"user" twice$/);
    // Blank lines and a quoted field spanning lines still count.
    expect(refused('user,motd\n\n"a","two\nlines"\n\nbob\n')).toBe(
      'VALUES_FILE_INVALID: v.csv: line 6 has 1 field(s), the header 2',
    );
    expect(refused('a,b\r\n1,2,3\r\n')).toBe(
      'VALUES_FILE_INVALID: v.csv: line 2 has 3 field(s), the header 2',
    );
    const csv = join(dir.path, 'short.csv');
    writeFileSync(csv, 'user,ssh_key\nalice\n');
    expect(
      await code(clone('ssh:1.0', undefined, { store, namePattern: 's{{index}}', valuesFile: csv })),
    ).toBe('VALUES_FILE_INVALID');
  });

  it('refuses account values without a user instead of dropping them', async () => {
    expect(await code(clone('ssh:1.0', 'k1', { store, set: [`ssh_key=${KEY}`] }))).toBe(
      'CLONE_VALUE_INVALID',
    );
    const csv = join(dir.path, 'keys.csv');
    writeFileSync(csv, `user,ssh_key\nalice,${KEY}\n,${KEY}\n`);
    expect(
      await code(clone('ssh:1.0', undefined, { store, namePattern: 'u{{index}}', valuesFile: csv })),
    ).toBe('CLONE_VALUE_INVALID');
    expect(await listContainers({ store })).toEqual([]);
  });

  it('stops a batch when its signal aborts: complete containers kept, the reason thrown', async () => {
    const controller = new AbortController();
    const reason = new RootcastError({ code: 'ABORTED', message: 'stop', hint: 'test' });
    const warnings: string[] = [];
    const reporter = {
      log: (level: string, message: string) => {
        if (level === 'warn') warnings.push(message);
      },
      task: () => ({ advance() {}, setTotal() {}, finish() {} }),
    };
    const batch = clone('ssh:1.0', undefined, {
      store,
      reporter,
      namePattern: 'a{{index}}',
      count: 50,
      signal: controller.signal,
      onCloned: (c) => {
        if (c.name === 'a3') controller.abort(reason);
      },
    });
    await expect(batch).rejects.toBe(reason);
    expect((await listContainers({ store })).map((c) => c.name)).toEqual(['a1', 'a2', 'a3']);
    expect(warnings).toEqual([
      'clone interrupted after 3 of 50 container(s): the 3 made (a1 … a3) are kept; `rootcast rm` them, or clone the rest under other names',
    ]);
    expect(readdirSync(join(store, 'tmp'))).toEqual([]);
    await expect(removeContainers(['a1', 'a2', 'a3'], { store, signal: controller.signal })).rejects.toBe(
      reason,
    );
    expect((await listContainers({ store })).map((c) => c.name)).toEqual(['a1', 'a2', 'a3']);
    await removeContainers(['a1', 'a2', 'a3'], { store });
  });

  it('keeps a template a container uses from rmi and gc', async () => {
    await makeTemplate({ store, name: 'kept', build: installHostTools });
    const details = await readTemplate(store, 'kept:1.0');
    await clone('kept:1.0', 'user1', { store });
    expect(await code(removeTemplate('kept:1.0', { store }))).toBe('TEMPLATE_IN_USE');
    const report = await gcStore(store, { templatesInUse });
    expect(report.removed.filter((r) => r.kind !== 'temporary')).toEqual([]);
    expect(existsSync(details.layers[0]!.unpackedPath)).toBe(true);
    await removeContainers(['user1'], { store });
    await removeTemplate('kept:1.0', { store });
    const after = await gcStore(store, { templatesInUse });
    expect(after.removed.some((r) => r.kind === 'layer' && r.path === details.layers[0]!.unpackedPath)).toBe(
      true,
    );
  });

  it('leaves only complete containers when a batch is killed half-way', async () => {
    const script = join(dir.path, 'clone-forever.mjs');
    const api = new URL('../../dist/api/runtime.js', import.meta.url).pathname;
    writeFileSync(
      script,
      `const { clone } = await import(${JSON.stringify(api)});
       await clone('ssh:1.0', undefined, { store: process.argv[2], namePattern: 'k{{index}}', count: 2000,
         onCloned: (c) => { if (c.name === 'k5') process.stdout.write('five\\n'); } });`,
    );
    const child = spawn(process.execPath, [script, store], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('close', resolve));
    const listed = await listContainers({ store });
    expect(listed.length).toBeGreaterThanOrEqual(5);
    for (const c of listed) {
      const record = readRecord(store, c.name);
      expect(record.name).toBe(c.name);
      expect(existsSync(join(store, 'containers', c.name, 'upper/etc/hostname'))).toBe(true);
    }
    expect(mountsUnder(store)).toEqual([]);
    await cleanStore(store);
    expect(readdirSync(join(store, 'tmp'))).toEqual([]);
    await removeContainers(
      listed.map((c) => c.name),
      { store },
    );
  });
});
