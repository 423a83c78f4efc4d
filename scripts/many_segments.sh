#!/usr/bin/env bash
# A store of ~10,000 segments beside one of ~100 holding about as many
# events, both used under `ulimit -n 256` through the CLI: open (`stats`:
# open, count, close), appends (`stress` with default options for 3 s:
# acknowledged appends per second), a stream load (`read` of a stream
# written throughout) and `verify`. Figures go to docs/PERFORMANCE.md.
#
#   scripts/many_segments.sh [PARENT_DIR]   (default /dev/shm: building
#   10,000 segments on a disk costs ~5 fsyncs per roll)
#   ANNALS_BIN=... to use another binary (default target/release/annals)
set -euo pipefail
cd "$(dirname "$0")/.."
parent=${1:-/dev/shm}
bin=${ANNALS_BIN:-target/release/annals}
[ -n "${ANNALS_BIN:-}" ] || cargo build -q --release -p annals-cli
work=$(mktemp -d "$parent/annals-many.XXXXXX")
trap 'rm -rf "$work"' EXIT

segments() { find "$1" -name '*.seg' | wc -l; }

# make DIR SEGMENT_BYTES TARGET_SEGMENTS
make() {
  while [ "$(segments "$1")" -lt "$3" ]; do
    "$bin" stress "$1" --segment-bytes "$2" --seconds 0.5 --threads 2 --streams 20 \
      --pad-bytes 600 >>"$1.acked"
  done 2>/dev/null
}

# seconds COMMAND...: wall time of one run under ulimit -n 256, output dropped
seconds() {
  local start end
  start=$(date +%s.%N)
  (ulimit -n 256 && exec "$@") >/dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }

printf '%-8s %9s %8s %9s %12s %14s %10s\n' store segments events "open s" "appends/s" "read stream s" "verify s"
for spec in "100 409600" "10000 4096"; do
  set -- $spec
  dir="$work/s$1"
  make "$dir" "$2" "$1"
  n=$(segments "$dir")
  events=$("$bin" stats "$dir" | awk '$1 == "events" { print $2 }')
  stream=$(head -1 "$dir.acked" | sed 's/.*"stream":"\([^"]*\)".*/\1/')
  open=$(median3 "$(seconds "$bin" stats "$dir")" "$(seconds "$bin" stats "$dir")" "$(seconds "$bin" stats "$dir")")
  read=$(median3 "$(seconds "$bin" read "$dir" "$stream")" "$(seconds "$bin" read "$dir" "$stream")" "$(seconds "$bin" read "$dir" "$stream")")
  verify=$(seconds "$bin" verify "$dir")
  appends=$( (ulimit -n 256 && exec "$bin" stress "$dir" --seconds 3 --threads 4 --streams 100) 2>/dev/null | wc -l)
  printf '%-8s %9d %8d %9.3f %12d %14.3f %10.3f\n' "$1" "$n" "$events" "$open" $((appends / 3)) "$read" "$verify"
  echo "  (stream $stream: $("$bin" read "$dir" "$stream" | wc -l) events)"
done
