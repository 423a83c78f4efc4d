#!/usr/bin/env bash
# Disk-full tests on real, small filesystems (needs root to mount tmpfs):
#  1. a 4 MiB tmpfs: crates/annals/tests/diskfull.rs (append until ENOSPC,
#     nothing partial visible, writes resume after space is freed);
#  2. a 32 MiB tmpfs, through the CLI binary as a user would: the bytes a
#     one-event store occupies (after a clean close, and after a reopen that
#     checks the whole tail as after kill -9); then a writer process filling
#     the tmpfs, killed with kill -9 as the space runs out, a second writer
#     appending until ENOSPC, and the full store reopened, read, verified
#     and appended to. No command may die of a signal
#     (SIGBUS is exit code 135), and every acknowledged event must be there.
set -euo pipefail
cd "$(dirname "$0")/.."
mnt=$(mktemp -d)
if ! mount -t tmpfs -o size=4m tmpfs "$mnt" 2>/dev/null; then
  echo "diskfull: skipped: cannot mount a tmpfs here (not root?)"
  rmdir "$mnt"
  exit 0
fi
mnt2=$(mktemp -d)
out=$(mktemp -d)
cleanup() {
  umount "$mnt" 2>/dev/null || true
  umount "$mnt2" 2>/dev/null || true
  rmdir "$mnt" "$mnt2" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT
ANNALS_DISKFULL_DIR="$mnt" cargo test -p annals --test diskfull -- --ignored --nocapture

mount -t tmpfs -o size=32m tmpfs "$mnt2"
# ANNALS_BIN runs the scenario with another binary (e.g. an older build).
bin=${ANNALS_BIN:-target/debug/annals}
[ -n "${ANNALS_BIN:-}" ] || cargo build -q -p annals-cli

# Runs the CLI; fails the script if it died of a signal (exit > 128).
run() {
  local rc=0
  "$bin" "$@" || rc=$?
  if [ "$rc" -gt 128 ]; then
    echo "diskfull: FAILED: annals $1 died of signal $((rc - 128)) (exit $rc)" >&2
    exit 1
  fi
  return "$rc"
}

# One event: bytes used on tmpfs.
run append "$mnt2/one" s --type T --data '"x"' >/dev/null
echo "diskfull: one-event store on tmpfs, after a clean close: $(du -sk "$mnt2/one" | cut -f1) KiB"
# Without the clean-close marker the next open checks the whole tail, as
# after kill -9.
rm "$mnt2/one/CLEAN"
run stats "$mnt2/one" >/dev/null
echo "diskfull: one-event store on tmpfs, after a reopen that checked the tail: $(du -sk "$mnt2/one" | cut -f1) KiB"
rm -rf "$mnt2/one"

# Fill the tmpfs with a writer process and kill -9 it as the space runs
# out (when less than 1 MiB is left, or it stopped by itself); then a
# second writer fills the rest until its append fails (ENOSPC).
head -c $((26 << 20)) /dev/zero >"$mnt2/ballast"
"$bin" stress "$mnt2/full" --seconds 60 --threads 2 --pad-bytes 500 >"$out/acked" 2>"$out/stress.err" &
pid=$!
state="had stopped by itself"
for _ in $(seq 1 6000); do
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  avail=$(df --output=avail -k "$mnt2" | tail -1 | tr -d ' ')
  if [ "$avail" -lt 1024 ]; then
    kill -9 "$pid"
    state="killed with kill -9 while appending"
    break
  fi
  sleep 0.01
done
wait "$pid" || true
echo "diskfull: first writer $state, $(df --output=avail -k "$mnt2" | tail -1 | tr -d ' ') KiB free, $(grep -c . "$out/acked" || true) appends acknowledged"
"$bin" stress "$mnt2/full" --seconds 60 --threads 2 --pad-bytes 500 >>"$out/acked" 2>"$out/stress2.err" || true
acked=$(grep -c . "$out/acked" || true)
echo "diskfull: second writer stopped with $(df --output=avail -k "$mnt2" | tail -1 | tr -d ' ') KiB free, $acked appends acknowledged in all: $(tail -1 "$out/stress2.err")"
[ "$acked" -gt 0 ] || { echo "diskfull: FAILED: no append acknowledged" >&2; exit 1; }
run stats "$mnt2/full" >/dev/null
run verify "$mnt2/full"
# Every acknowledged event is in the feed: the highest acknowledged
# position is below the number of events.
last=$(sed -n 's/.*"last_position":\([0-9]*\).*/\1/p' "$out/acked" | sort -n | tail -1)
events=$(run all "$mnt2/full" | grep -c .)
[ "$events" -gt "$last" ] || { echo "diskfull: FAILED: $events events, acknowledged up to position $last" >&2; exit 1; }
stream=$(sed -n '1s/.*"stream":"\([^"]*\)".*/\1/p' "$out/acked")
run read "$mnt2/full" "$stream" --max 1 | grep -q "$stream@0" \
  || { echo "diskfull: FAILED: first event of $stream unreadable" >&2; exit 1; }
# Still full: an append is an error (or fits in what the segment holds), never a signal.
run append "$mnt2/full" after --type T --data '"full"' >/dev/null 2>&1 || true
rm "$mnt2/ballast"
run append "$mnt2/full" after --type T --data '"freed"' >/dev/null
run verify "$mnt2/full" >/dev/null
echo "diskfull: tmpfs filled, writer killed, store reopened: $events events read and verified, no signal; writes resumed after space was freed"
