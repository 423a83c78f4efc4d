#!/usr/bin/env bash
# Long kill -9 loop: a child `annals stress` is SIGKILLed at random moments,
# the store reopened and every acknowledged append checked byte for byte.
# Usage: scripts/kill9.sh [iterations]   (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
export ANNALS_KILL9_ITERATIONS="${1:-1000}"
cargo test --release -p annals-cli --test kill9 -- --nocapture
