#!/usr/bin/env bash
# Disk-full test on a real, small filesystem: mounts a 4 MiB tmpfs (needs
# root), runs crates/annals/tests/diskfull.rs on it, unmounts.
set -euo pipefail
cd "$(dirname "$0")/.."
mnt=$(mktemp -d)
if ! mount -t tmpfs -o size=4m tmpfs "$mnt" 2>/dev/null; then
  echo "diskfull: skipped: cannot mount a tmpfs here (not root?)"
  rmdir "$mnt"
  exit 0
fi
trap 'umount "$mnt"; rmdir "$mnt"' EXIT
ANNALS_DISKFULL_DIR="$mnt" cargo test -p annals --test diskfull -- --ignored --nocapture
