#!/usr/bin/env bash
# Keel's main job: `keel-bench suite` on the embedded default device (the simulated NVMe
# device, 10 µs per command with a volatile write cache; no hardware, no root), about a
# minute: Full and MetadataOnly side by side on create, append, overwrite and random
# writes at QD1 and QD32. Prints the table; writes suite.txt, suite.json and suite.svg to
# $KEEL_OUT (default keel-out/). Extra arguments go to `keel-bench suite` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
source vendor-scripts/deps.sh
cargo build --release --locked -p keel-bench 2>&1 | grep -v '^\s*Compiling' || true
exec target/release/keel-bench suite --out "${KEEL_OUT:-keel-out}" "$@"
