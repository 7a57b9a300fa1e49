#!/usr/bin/env bash
# Keel's main job: keel-bench on the embedded default device (the simulated NVMe device with
# a realistic latency; no hardware, no root). Extra arguments go to keel-bench raw.
set -euo pipefail
cd "$(dirname "$0")/.."
source vendor-scripts/deps.sh
cargo build --release --locked -p keel-bench 2>&1 | grep -v '^\s*Compiling' || true
bench=target/release/keel-bench
out=${KEEL_OUT:-keel-out}
mkdir -p "$out"
for wl in randwrite randread; do
  for qd in 1 32; do
    "$bench" raw --driver sim --sim-latency-us 10 --size 64m --workload "$wl" --bs 4k \
      --qd "$qd" --seconds "${KEEL_SECONDS:-3}" "$@"
  done
done
