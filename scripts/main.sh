#!/usr/bin/env bash
# The main job from a fresh clone: set up, then lock and fetch the default recipe (or the
# recipe given as the first argument). Extra arguments go to each rootcast verb.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh main
recipe="${1:-recipes/debian-12-minbase.yaml}"
shift || true
node dist/cli/main.js lock "$recipe" "$@"
node dist/cli/main.js fetch "$recipe" "$@"
