#!/usr/bin/env bash
# Resolve time, warm index cache: rootcast lock --update against apt-get install --simulate
# for the same package set, measured in the same run on the same mirror.
#
#   bash bench/lock.sh [RUNS]        (default 5 runs each; prints medians and ratios)
#
# rootcast: `rootcast lock --update` on a copy of each recipe (variants minbase and
# standard), with the store's index cache already filled. Its time includes the one
# InRelease request per suite, reading the cached indexes and resolving; the resolver alone
# is reported separately. apt: an apt environment in a temporary directory with an empty
# dpkg status and the same sources, `apt-get update` once, then `apt-get install --simulate`
# of exactly the packages rootcast chose (apt resolves them again from the roots it is given).
# Anchor: `mmdebstrap --simulate --skip=update` of the same variant over apt's warm lists from
# that environment (mmdebstrap resolves from the variant's roots, with its own apt runs; its
# simulated stage 2 starts from an empty status, so its package count differs: a time, not a set).
# Set MMDEBSTRAP=0 to skip it.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
[ -f dist/cli/main.js ] || npm run build >/dev/null
work=$(mktemp -d /tmp/rootcast-bench-lock.XXXXXX)
trap 'rm -rf "$work"' EXIT
store="$work/store"

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }
now() { date +%s.%N; }

# The host's mirrors, as rootcast sees them (never written into the repository).
mirror_debian=$(node -e "import('./dist/recipe/apt-sources.js').then(async m => { const x = m.mirrorsFromAptSources(await m.readHostAptSources()); console.log(process.env.ROOTCAST_MIRROR_DEBIAN ?? x.get('debian') ?? '') })")
mirror_security=$(node -e "import('./dist/recipe/apt-sources.js').then(async m => { const x = m.mirrorsFromAptSources(await m.readHostAptSources()); console.log(process.env.ROOTCAST_MIRROR_DEBIAN_SECURITY ?? x.get('debian-security') ?? '') })")

apt_env() {
  local dir="$1"
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/etc/preferences.d" "$dir/etc/apt.conf.d" "$dir/log"
  : >"$dir/status"
  cat >"$dir/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror_debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror_debian bookworm-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror_security bookworm-security main
SRC
}
apt_opts() {
  local dir="$1"
  echo "-o Dir::State::status=$dir/status -o Dir::State::Lists=$dir/lists -o Dir::Cache=$dir/cache \
 -o Dir::Etc::SourceList=$dir/sources.list -o Dir::Etc::SourceParts=/dev/null \
 -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=$dir/etc/preferences.d \
 -o Dir::Etc::Parts=$dir/etc/apt.conf.d -o Dir::Log=$dir/log -o Debug::NoLocking=1 \
 -o APT::Sandbox::User=root -o APT::Architecture=amd64 -o APT::Install-Recommends=false -o pkgCacheGen::Essential=none"
}

mmdeb_sim() {
  local variant="$1" dir="$2"
  mmdebstrap --quiet --variant="$variant" --simulate --skip=update --skip=cleanup/apt/lists \
    --aptopt="Dir::State::Lists \"$dir/lists\"" bookworm /dev/null \
    "deb $mirror_debian bookworm main" "deb $mirror_debian bookworm-updates main" \
    "deb $mirror_security bookworm-security main" >/dev/null 2>&1
}
with_mmdebstrap=0
[ "${MMDEBSTRAP:-1}" != 0 ] && command -v mmdebstrap >/dev/null && with_mmdebstrap=1

printf '%-10s %12s %12s %12s %10s %14s\n' variant rootcast_s resolve_s apt_sim_s ratio mmdeb_sim_s
for variant in minbase standard; do
  recipe="$work/bench-$variant.yaml"
  sed -e "s/^variant: .*/variant: $variant/" -e "s/^name: .*/name: bench-$variant/" recipes/debian-12-minbase.yaml >"$recipe"
  node dist/cli/main.js lock "$recipe" --store "$store" --quiet # warm the index cache
  ours=(); resolve=()
  for _ in $(seq "$runs"); do
    t0=$(now)
    json=$(node dist/cli/main.js lock --update "$recipe" --store "$store" --json)
    t1=$(now)
    ours+=("$(awk "BEGIN{print $t1 - $t0}")")
    resolve+=("$(echo "$json" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).seconds.resolve))')")
  done
  names=$(node -e "const l=require('$work/bench-$variant.lock.json'); console.log(l.packages.map(p=>p.name).join(' '))")
  dir="$work/apt-$variant"
  apt_env "$dir"
  # shellcheck disable=SC2046
  apt-get $(apt_opts "$dir") update -qq >/dev/null
  # shellcheck disable=SC2046,SC2086
  apt-get $(apt_opts "$dir") install --simulate -qq $names >/dev/null # builds apt's cache: warm from here
  apts=()
  for _ in $(seq "$runs"); do
    t0=$(now)
    # shellcheck disable=SC2046,SC2086
    apt-get $(apt_opts "$dir") install --simulate -qq $names >/dev/null
    t1=$(now)
    apts+=("$(awk "BEGIN{print $t1 - $t0}")")
  done
  mm=-
  if [ "$with_mmdebstrap" = 1 ]; then
    mms=()
    for _ in $(seq "$runs"); do
      t0=$(now)
      mmdeb_sim "$variant" "$dir"
      t1=$(now)
      mms+=("$(awk "BEGIN{print $t1 - $t0}")")
    done
    mm=$(printf '%s\n' "${mms[@]}" | median)
  fi
  o=$(printf '%s\n' "${ours[@]}" | median)
  r=$(printf '%s\n' "${resolve[@]}" | median)
  a=$(printf '%s\n' "${apts[@]}" | median)
  printf '%-10s %12s %12s %12s %9.2fx %14s\n' "$variant" "$o" "$r" "$a" "$(awk "BEGIN{print $a / $o}")" "$mm"
done
echo "ratio = apt-get --simulate time / rootcast lock time (above 1: rootcast faster); medians of $runs runs"
