#!/usr/bin/env bash
# Brings a bare Debian machine to what rootcast and its tests need: node modules (npm ci,
# which also compiles dist/ through `prepare`) and the reference tools the tests compare
# against. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# `setup.sh main` installs what the main job needs; `setup.sh` (tests) also the references.
mode="${1:-test}"
need_apt=()
if [ "$mode" = test ]; then
  for tool in mmdebstrap:mmdebstrap dpkg:dpkg xz:xz-utils gpg:gpg skopeo:skopeo umoci:umoci getfattr:attr \
    flock:util-linux setpriv:util-linux docker-registry:docker-registry htpasswd:apache2-utils openssl:openssl \
    podman:podman lxc-execute:lxc mksquashfs:squashfs-tools mkfs.btrfs:btrfs-progs mkfs.xfs:xfsprogs zstd:zstd ip:iproute2 ssh-keygen:openssh-client; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool##*:}")
  done
fi
# The native addon (mknod, xattrs, streaming xz) compiles against liblzma during npm ci.
[ -f /usr/include/lzma.h ] || need_apt+=(liblzma-dev)
command -v gcc >/dev/null 2>&1 && command -v make >/dev/null 2>&1 || need_apt+=(gcc make)
# The shipped recipes verify against the Debian archive keyring.
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need_apt+=(debian-archive-keyring)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need_apt[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "setup: installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ "${ROOTCAST_SKIP_NPM_CI:-}" != 1 ]; then
  npm ci --no-audit --no-fund
fi
