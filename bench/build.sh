#!/usr/bin/env bash
# Build time and peak memory: mmdebstrap, debootstrap and rootcast on the same recipe, same
# mirror, in one run. Prints wall-time ratios (anchor / rootcast: above 1 means rootcast is
# faster) and peak RSS.
#
#   bash bench/build.sh [RECIPE]     (default recipes/debian-12-minbase.yaml; needs root)
#   ROUNDS=5 bash bench/build.sh     (default 3 rounds; medians, and each round's ratio)
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

rounds="${ROUNDS:-3}"
# One round: every tool once, back to back, so they share the machine's state at that moment.
# Rounds are repeated and medians compared, because the machine may be shared.
for round in $(seq "$rounds"); do
  measure "mmdebstrap.$round" mmdebstrap --quiet --variant="$variant" --components=main "$release" "$work/mmdebstrap.tar" \
    "deb $mirror $release main" "deb $mirror $release-updates main" "deb $security $release-security main"
  measure "debootstrap.$round" debootstrap --variant=minbase "$release" "$work/debootstrap" "$mirror"
  rm -rf "$work/debootstrap" "$work/mmdebstrap.tar"
  store="$work/store.$round"
  rm -f "$work/recipe.lock.json"
  measure "rootcast_empty.$round" node dist/cli/main.js build "$work/recipe.yaml" --store "$store" --json
  measure "rootcast_warm.$round" node dist/cli/main.js build --rebuild "$work/recipe.yaml" --store "$store" --json
  measure "rootcast_unchanged.$round" node dist/cli/main.js build "$work/recipe.yaml" --store "$store" --json
  rm -rf "$store"
done

# median NAME FIELD(s|mib): the median over the rounds
median() {
  for round in $(seq "$rounds"); do cat "$work/$1.$round.$2"; echo; done | sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}
# ratios NAME: mmdebstrap's time / NAME's, per round, lowest to highest
ratios() {
  for round in $(seq "$rounds"); do
    awk "BEGIN{printf \"%.2f\\n\", $(cat "$work/mmdebstrap.$round.s") / $(cat "$work/$1.$round.s")}"
  done | sort -n | tr '\n' ' '
}
row() {
  local name="$1" s mib
  s=$(median "$name" s)
  mib=$(median "$name" mib)
  printf '%-22s %8s s %8s MiB' "$name" "$s" "$mib"
  if [ -n "${2:-}" ]; then
    printf '   mmdebstrap/x %5.2f   debootstrap/x %5.2f   per round: %s' \
      "$(awk "BEGIN{print $(median mmdebstrap s) / $s}")" "$(awk "BEGIN{print $(median debootstrap s) / $s}")" "$(ratios "$name")"
  fi
  printf '\n'
}
echo "recipe: $recipe ($release, $variant); $(nproc) cores; $(node --version); $rounds rounds, medians; load average $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after"
row mmdebstrap
row debootstrap
row rootcast_empty ratio
row rootcast_warm ratio
row rootcast_unchanged ratio
echo "targets: warm --rebuild <= 1/3 of mmdebstrap (ratio >= 3), empty store <= 1/2 (ratio >= 2), unchanged <= 1 s, peak RSS <= 300 MiB"
