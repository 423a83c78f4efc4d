#!/usr/bin/env bash
# Seeds the fuzz corpora from real files: a store written by `annals stress`,
# cut into the input shapes each target takes (see fuzz/fuzz_targets/*.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo run -q --release -p annals-cli -- stress "$work/store" --threads 2 --streams 5 --seconds 0.3 >/dev/null 2>&1
python3 - "$work/store/00000000000000000000.seg" fuzz/corpus <<'PY'
import os, struct, sys
seg, out = sys.argv[1], sys.argv[2]
data = open(seg, 'rb').read()
salt = data[24:32]
end = len(data.rstrip(b'\0'))
end = (end + 7) // 8 * 8
body = data[64:end]
for t in ['frame_decode', 'segment_open', 'store_open', 'frame_index_load', 'run_pages', 'secondary_pages']:
    os.makedirs(os.path.join(out, t), exist_ok=True)
def put(target, name, blob):
    open(os.path.join(out, target, name), 'wb').write(blob)
off, n = 64, 0
while off + 48 <= end and n < 32:
    size = struct.unpack_from('<I', data, off + 4)[0]
    if size < 48 or off + size > end:
        break
    put('frame_decode', f'real-frame-{n}', salt + struct.pack('<Q', off) + data[off:off + size])
    off += (size + 7) // 8 * 8
    n += 1
for i, cut in enumerate([len(body), 4096, 16 << 10, 60 << 10]):
    put('segment_open', f'real-segment-{i}', salt + body[:cut])
first = body[:(16 << 10) - 64]
put('store_open', 'real-store-0', salt + struct.pack('<I', len(first)) + first)
# run_pages: a start (2 bytes, in 16-byte steps) and bytes to XOR over run pages.
for i, start in enumerate([0, 1, 40, 255, 600]):
    put('run_pages', f'xor-{i}', struct.pack('>H', start) + bytes((k * 37 + i) & 0xff for k in range(256)))
# secondary_pages: the same shape, over the secondary runs' pages; and the
# input that raised a posting past the next one of its key (fixed in f17deee).
for i, start in enumerate([0, 1, 40, 255, 2560, 4000]):
    put('secondary_pages', f'xor-{i}', struct.pack('>H', start) + bytes((k * 37 + i) & 0xff for k in range(256)))
put('secondary_pages', 'posting-raised', bytes([0x0a, 0x0a, 0x0a]))
print(f'seeded {n} frames and {len(body)} body bytes from {seg}')
PY
