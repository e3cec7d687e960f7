#!/usr/bin/env bash
# The main job from a fresh clone: set up, then build the default recipe (or the recipe
# given as the first argument) into the store: lock, fetch, assemble, commit. Extra
# arguments go to `rootcast build`. Needs root (maintainer scripts run in namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh main
recipe="${1:-recipes/debian-12-minbase.yaml}"
shift || true
node dist/cli/main.js build "$recipe" "$@"
node dist/cli/main.js ls
