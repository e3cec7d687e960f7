#!/usr/bin/env bash
# Clone and run latency: rootcast's overlay clones (batch and single), the copy driver,
# `run --rm … true`, beside `tar -xf` and `cp -a` of the same tree and a bare `node -e ''`,
# all measured in one run. Prints medians, p99s and ratios (anchor / rootcast: above 1 means
# rootcast is faster).
#
#   bash bench/clone.sh [REPEATS]       (default 11; needs root, overlayfs, the Debian mirror)
#
# Templates: debian-12-minbase:1.0 built from recipes/debian-12-minbase.yaml into a temporary
# store, and a SYNTHETIC ~1 GB template (big:1.0): the minbase tree plus 4,000 files of
# 200 KiB of random bytes under /opt/big, committed with the store API. Environment:
# BENCH_TMPDIR (where the store goes), ROOTCAST_CLI (default dist/cli/main.js), KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
repeats="${1:-11}"
cli="${ROOTCAST_CLI:-dist/cli/main.js}"
[ -f dist/cli/main.js ] || npm run build >/dev/null
work=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/rootcast-bench-clone.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
store="$work/store"
rc() { node "$cli" "$1" --store "$store" "${@:2}"; }
now() { date +%s%N; }
# ms START: milliseconds since START (nanoseconds)
ms() { awk "BEGIN{printf \"%.1f\\n\", ($(now) - $1) / 1e6}"; }
# stats FILE: "median p99" of the numbers in FILE
stats() { sort -g "$1" | awk '{a[NR]=$1} END{i=int(NR*0.99+0.999); if(i>NR)i=NR; printf "%s %s\n", a[int((NR+1)/2)], a[i]}'; }
median() { stats "$1" | cut -d' ' -f1; }

echo "building debian-12-minbase:1.0 into $store …" >&2
cp recipes/debian-12-minbase.yaml "$work/minbase.yaml"
rc build "$work/minbase.yaml" --json >/dev/null

echo "making the synthetic 1 GB template big:1.0 …" >&2
# A file, not node -e: the store's zstd worker inherits execArgv, -e included.
cat >"$work/make-big.mjs" <<EOF
  import { mkdirSync, writeFileSync } from 'node:fs';
  import { execFileSync } from 'node:child_process';
  import { randomBytes } from 'node:crypto';
  import { join } from 'node:path';
  const { readTemplate } = await import('$PWD/dist/store/template-query.js');
  const { createStagingDir } = await import('$PWD/dist/store/layers.js');
  const { commitTemplate } = await import('$PWD/dist/store/templates.js');
  const store = process.argv[2];
  const base = await readTemplate(store, 'debian-12-minbase:1.0');
  const tree = await createStagingDir(store);
  execFileSync('cp', ['-a', base.layers[0].unpackedPath + '/.', tree + '/']);
  for (let d = 0; d < 40; d++) {
    const dir = join(tree, 'opt', 'big', String(d));
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 100; f++) writeFileSync(join(dir, 'f' + f), randomBytes(200 * 1024));
  }
  await commitTemplate({ store, name: 'big', version: '1.0', tree, sourceDateEpoch: 1700000000, arch: 'amd64',
    lock: '{}', recipeDigest: 'sha256:' + '0'.repeat(64), cacheKey: 'sha256:' + '1'.repeat(64), compressionLevel: 1 });
EOF
node "$work/make-big.mjs" "$store"

declare -A layer
for t in debian-12-minbase big; do
  layer[$t]=$(node --input-type=module -e "
    const { readTemplate } = await import('./dist/store/template-query.js');
    console.log((await readTemplate(process.argv[1], process.argv[2] + ':1.0')).layers[0].unpackedPath);
  " "$store" "$t")
done

results="$work/results"
: >"$results"
row() { printf '%-44s %s\n' "$1" "$2" | tee -a "$results"; }

for t in debian-12-minbase big; do
  ref="$t:1.0"
  size=$(du -sh "${layer[$t]}" | cut -f1)
  files=$(find "${layer[$t]}" | wc -l)
  echo "== $ref ($size, $files entries)" | tee -a "$results"
  rc export "$ref" --format tar -o "$work/$t.tar" >/dev/null

  sync
  # A batch of 100 overlay clones: each clone's own time, as clone --json reports it.
  rc clone "$ref" --count 100 --name 'b{{index}}' --driver overlay --json >/dev/null # warm-up
  rc rm $(seq -f 'b%g' 1 100) >/dev/null
  s=$(now)
  rc clone "$ref" --count 100 --name 'b{{index}}' --driver overlay --json >"$work/batch.json"
  batch_ms=$(ms "$s")
  node -e "for (const c of JSON.parse(require('fs').readFileSync(process.argv[1])).containers) console.log(c.ms)" \
    "$work/batch.json" >"$work/batch.ms"
  rc rm $(seq -f 'b%g' 1 100) >/dev/null

  # Whole commands, interleaved with bare Node start-up so both see the same machine load.
  : >"$work/node.ms"; : >"$work/clone1.ms"; : >"$work/runrm.ms"
  for i in $(seq 1 "$repeats"); do
    s=$(now); node -e ''; ms "$s" >>"$work/node.ms"
    s=$(now); rc clone "$ref" "s$i" --driver overlay >/dev/null; ms "$s" >>"$work/clone1.ms"
    s=$(now); rc run --rm "$ref" -- true; ms "$s" >>"$work/runrm.ms"
  done
  rc rm $(seq -f 's%g' 1 "$repeats") >/dev/null

  # Anchors: unpack the tarball, copy the tree, and the copy driver (the same copy plus a
  # clone's customization), interleaved, after the latency measurements (their writeback
  # would slow the fsyncs of clones); `sync` before each so no one pays for another's writeback.
  : >"$work/tar.ms"
  : >"$work/cp.ms"
  : >"$work/copy.ms"
  # They write where clones write, <store>/tmp/ (marked chattr +T for ext4's allocator, see
  # src/store/layers.ts): on ext4 a directory where trees were just deleted is several times
  # slower to fill, which would flatter rootcast.
  x="$store/tmp/anchor"
  for i in 1 2 3; do
    mkdir "$x"
    sync; s=$(now); tar --xattrs --xattrs-include='*' --numeric-owner -xpf "$work/$t.tar" -C "$x"; ms "$s" >>"$work/tar.ms"
    rm -rf "$x"
    sync; s=$(now); cp -a "${layer[$t]}" "$x"; ms "$s" >>"$work/cp.ms"
    rm -rf "$x"
    sync
    rc clone "$ref" "c$i" --driver copy --json |
      node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).containers[0].ms))" >>"$work/copy.ms"
    rc rm "c$i" >/dev/null
    sync
  done

  read -r p50 p99 < <(stats "$work/batch.ms")
  node_ms=$(median "$work/node.ms")
  row "overlay clone in a batch of 100: p50 / p99" "$p50 / $p99 ms   (targets 20 / 100)"
  row "  batch of 100, whole command" "$batch_ms ms = $(awk "BEGIN{printf \"%.0f\", 100000 / $batch_ms}") containers/s   (target <= 2000 ms)"
  row "  tar -xf of the same tree (median of 3)" "$(median "$work/tar.ms") ms = $(awk "BEGIN{printf \"%.0f\", $(median "$work/tar.ms") / $p50}") x the p50 clone"
  row "  cp -a of the same tree (median of 3)" "$(median "$work/cp.ms") ms = $(awk "BEGIN{printf \"%.0f\", $(median "$work/cp.ms") / $p50}") x the p50 clone"
  row "bare node -e '' (median of $repeats)" "$node_ms ms"
  row "rootcast clone T NAME, whole command" "$(median "$work/clone1.ms") ms = node + $(awk "BEGIN{printf \"%.0f\", $(median "$work/clone1.ms") - $node_ms}") ms   (target <= +60)"
  row "rootcast run --rm T -- true, whole command" "$(median "$work/runrm.ms") ms = node + $(awk "BEGIN{printf \"%.0f\", $(median "$work/runrm.ms") - $node_ms}") ms   (target <= +150)"
  row "copy driver clone, forced (median of 3)" "$(median "$work/copy.ms") ms; cp -a / copy = $(awk "BEGIN{printf \"%.2f\", $(median "$work/cp.ms") / $(median "$work/copy.ms")}")   (target >= 1)"
  rm -f "$work/$t.tar"
done
echo "$(nproc) cores; $(node --version); $(uname -r); store on $(stat -f -c %T "$store")"
