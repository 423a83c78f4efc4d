#!/usr/bin/env bash
# Long fuzz runs of every cargo-fuzz target, seeded from real files.
# Usage: scripts/fuzz.sh [seconds per target]   (default 600)
# Needs the nightly toolchain; installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
scripts/fuzz-seed.sh
cd fuzz
for target in $(cargo +nightly fuzz list); do
  echo "=== $target for ${secs}s"
  cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | grep -E '^(Done|#[0-9]+ +DONE)|crash|ERROR' || true
done
