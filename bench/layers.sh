#!/usr/bin/env bash
# Layered templates: the shipped family (debian-12-minbase, then -dev, -web and -lab on it)
# built as one graph, measured in one run against the anchors that matter for it.
#
#   bash bench/layers.sh [RUNS]      (default 5 runs of each warm measurement; medians)
#
# 1. family, empty store, warm package cache: `rootcast build` of the four recipes at once,
#    against the four built flat (each child without `from:`, as a tool without shared
#    layers must build it) into another empty store; store sizes of both.
# 2. family, nothing changed: the same command again (target: under 1 s in total), beside a
#    bare `node -e ''` start.
# 3. one file of web changed: the family again with --explain (only web's layer is rebuilt),
#    against `rootcast build --rebuild` of flat web.
# Anchor for tar: `tar -cf - | zstd -3` of web's merged tree is not meaningful here (layers
# are committed once); the anchors are the flat builds measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
[ -f dist/cli/main.js ] || npm run build >/dev/null
work=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/rootcast-bench-layers.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
rc() { node dist/cli/main.js "$@"; }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }
now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

mkdir -p "$work/layered/recipes" "$work/flat/recipes"
cp -r templates "$work/layered/templates"
cp -r templates "$work/flat/templates"
family=(debian-12-minbase debian-12-dev debian-12-web debian-12-lab)
for r in "${family[@]}"; do
  cp "recipes/$r.yaml" "$work/layered/recipes/"
  sed '/^from:/d' "recipes/$r.yaml" >"$work/flat/recipes/$r.yaml"
done
layered=("${family[@]/#/$work/layered/recipes/}"); layered=("${layered[@]/%/.yaml}")
flat=("${family[@]/#/$work/flat/recipes/}"); flat=("${flat[@]/%/.yaml}")

# Warm the package cache (shared by both stores through a symlink) so downloads are not timed.
mkdir -p "$work/packages"
for store in "$work/store-layered" "$work/store-flat"; do mkdir -p "$store"; ln -s "$work/packages" "$store/packages"; done
rc fetch "${layered[@]:0:1}" --store "$work/store-layered" -q
for r in "${layered[@]}"; do rc lock "$r" --store "$work/store-layered" -q; done
rm -rf "$work/store-layered"/{blobs,layers,index.json,oci-layout}
for r in "${flat[@]}"; do rc fetch "$r" --store "$work/store-flat" -q; done

t=$(now); rc build "${layered[@]}" --store "$work/store-layered" -q; layered_empty=$(elapsed "$t")
t=$(now); rc build "${flat[@]}" --store "$work/store-flat" -q; flat_empty=$(elapsed "$t")
size() { du -sb "$1/blobs" "$1/layers" | awk '{s+=$1} END {printf "%.0f", s/1048576}'; }
layered_size=$(size "$work/store-layered"); flat_size=$(size "$work/store-flat")

unchanged=(); node_start=()
for _ in $(seq "$runs"); do
  t=$(now); rc build "${layered[@]}" --store "$work/store-layered" -q; unchanged+=("$(elapsed "$t")")
  t=$(now); node -e ''; node_start+=("$(elapsed "$t")")
done
page="$work/layered/templates/web-index.html.hbs"
changed=(); flat_web=()
for i in $(seq "$runs"); do
  echo "<!-- edit $i -->" >>"$page"
  t=$(now); rc build "${layered[@]}" --store "$work/store-layered" --explain -q; changed+=("$(elapsed "$t")")
  t=$(now); rc build "${flat[2]}" --store "$work/store-flat" --rebuild -q; flat_web+=("$(elapsed "$t")")
done

u=$(printf '%s\n' "${unchanged[@]}" | median); n=$(printf '%s\n' "${node_start[@]}" | median)
c=$(printf '%s\n' "${changed[@]}" | median); f=$(printf '%s\n' "${flat_web[@]}" | median)
printf 'family into an empty store (warm packages): layered %.1f s, flat %.1f s (ratio %.2f)\n' \
  "$layered_empty" "$flat_empty" "$(echo "$layered_empty / $flat_empty" | bc -l)"
printf 'store size (blobs + unpacked layers): layered %s MiB, flat %s MiB (ratio %.2f)\n' \
  "$layered_size" "$flat_size" "$(echo "$layered_size / $flat_size" | bc -l)"
printf 'family again, nothing changed: %s s for four recipes (node start-up alone %s s)\n' "$u" "$n"
printf 'one file of web changed: %s s for the family; flat web --rebuild %s s (ratio %.2f)\n' \
  "$c" "$f" "$(echo "$c / $f" | bc -l)"
