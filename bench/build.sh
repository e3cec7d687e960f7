#!/usr/bin/env bash
# Build time and peak memory: mmdebstrap, debootstrap and rootcast on the same recipe, same
# mirror, in one run. Prints wall-time ratios (anchor / rootcast: above 1 means rootcast is
# faster) and peak RSS.
#
#   bash bench/build.sh [RECIPE]     (default recipes/debian-12-minbase.yaml; needs root)
#
# rootcast is measured three ways: an empty store (indexes, downloads, build, commit), a
# warm package cache with --rebuild (assembly and commit only), and an unchanged rebuild (the
# build cache answers). mmdebstrap writes a tar (as rootcast writes a layer); debootstrap
# writes a directory (it cannot write a tar).
set -euo pipefail
cd "$(dirname "$0")/.."
recipe="${1:-recipes/debian-12-minbase.yaml}"
[ -f dist/cli/main.js ] || npm run build >/dev/null
for tool in mmdebstrap debootstrap; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null; }
done
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

# The machine may be shared: the load average before and after is printed with the results.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/rootcast-bench-build.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
cp "$recipe" "$work/recipe.yaml"
release=$(sed -n 's/^release: *//p' "$recipe" | tr -d '"')
variant=$(sed -n 's/^variant: *//p' "$recipe" | tr -d '"')
mirrors=$(node -e "import('./dist/recipe/apt-sources.js').then(async m => { const x = m.mirrorsFromAptSources(await m.readHostAptSources()); console.log((process.env.ROOTCAST_MIRROR_DEBIAN ?? x.get('debian')) + ' ' + (process.env.ROOTCAST_MIRROR_DEBIAN_SECURITY ?? x.get('debian-security'))) })")
read -r mirror security <<<"$mirrors"

# measure NAME COMMAND...: wall seconds and peak RSS (MiB) into $work/NAME.{s,rss}
measure() {
  local name="$1"
  shift
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/$name.rss" "$@" >"$work/$name.log" 2>&1 || {
    echo "bench: $name failed; last lines:" >&2
    tail -20 "$work/$name.log" >&2
    exit 1
  }
  t1=$(date +%s.%N)
  awk "BEGIN{printf \"%.2f\", $t1 - $t0}" >"$work/$name.s"
  awk '{printf "%.0f", $1 / 1024}' "$work/$name.rss" >"$work/$name.mib"
}

measure mmdebstrap mmdebstrap --quiet --variant="$variant" --components=main "$release" "$work/mmdebstrap.tar" \
  "deb $mirror $release main" "deb $mirror $release-updates main" "deb $security $release-security main"
measure debootstrap debootstrap --variant=minbase "$release" "$work/debootstrap" "$mirror"
rm -rf "$work/debootstrap" "$work/mmdebstrap.tar"

store="$work/store"
measure rootcast_empty node dist/cli/main.js build "$work/recipe.yaml" --store "$store" --json
measure rootcast_warm node dist/cli/main.js build --rebuild "$work/recipe.yaml" --store "$store" --json
measure rootcast_unchanged node dist/cli/main.js build "$work/recipe.yaml" --store "$store" --json

row() {
  local name="$1" s mib
  s=$(cat "$work/$name.s")
  mib=$(cat "$work/$name.mib")
  printf '%-22s %8s s %8s MiB' "$name" "$s" "$mib"
  if [ -n "${2:-}" ]; then
    printf '   mmdebstrap/x %5.2f   debootstrap/x %5.2f' \
      "$(awk "BEGIN{print $(cat "$work/mmdebstrap.s") / $s}")" "$(awk "BEGIN{print $(cat "$work/debootstrap.s") / $s}")"
  fi
  printf '\n'
}
echo "recipe: $recipe ($release, $variant); $(nproc) cores; $(node --version); load average $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after"
row mmdebstrap
row debootstrap
row rootcast_empty ratio
row rootcast_warm ratio
row rootcast_unchanged ratio
echo "targets: warm --rebuild <= 1/3 of mmdebstrap (ratio >= 3), empty store <= 1/2 (ratio >= 2), unchanged <= 1 s, peak RSS <= 300 MiB"
