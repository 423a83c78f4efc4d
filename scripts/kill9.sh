#!/usr/bin/env bash
# Long kill -9 loop: a child `annals stress` is SIGKILLed at random moments,
# the store reopened and every acknowledged append checked byte for byte.
# Usage: scripts/kill9.sh [iterations] [compact]   (default 1000)
# With `compact`, the child also compacts again and again while appending
# (a stream under a max-count rule, small segments), so kills land in
# compactions.
set -euo pipefail
cd "$(dirname "$0")/.."
export ANNALS_KILL9_ITERATIONS="${1:-1000}"
if [ "${2:-}" = "compact" ]; then
    export ANNALS_KILL9_COMPACT=1
fi
cargo test --release -p annals-cli --test kill9 -- --nocapture
