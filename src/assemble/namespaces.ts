/**
 * The `unshare` options both the build sandbox and `rootcast run` start with: new mount, pid,
 * ipc and uts namespaces (and network, unless the host's is wanted), a forked pid 1 that
 * takes every process of the namespace down with it, and mounts that never propagate back
 * to the host. The command follows after `--`.
 */
export function isolatedNamespaceArgs(isolateNetwork: boolean): string[] {
  return [
    '--mount',
    '--pid',
    '--ipc',
    '--uts',
    ...(isolateNetwork ? ['--net'] : []),
    '--fork',
    '--kill-child',
    '--propagation',
    'private',
  ];
}
