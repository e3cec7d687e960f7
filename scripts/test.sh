#!/usr/bin/env bash
# The whole test suite, from a fresh clone: setup, format/lint, type check, every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx biome check .
npx tsc --noEmit -p .
npx vitest run "$@"
