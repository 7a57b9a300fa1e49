#!/usr/bin/env bash
# Runs every Keel test that this machine can run: the workspace's unit and integration
# tests (drivers on temp files, the simulated device, DMA pools with hugepages when root).
# Tests that need root, hugepages or QEMU skip with a message where those are missing.
# Then the C API's tests (vendor-scripts/c-tests.sh: C compilers, valgrind), then Keel's fio
# engine against the installed fio (vendor-scripts/fio-engine.sh: fetches fio's source with
# apt-get, so it needs root; skips with a message where it cannot, except under CI), then
# keel-nbd against real NBD clients (vendor-scripts/nbd-tests.sh: qemu-io, qemu-img,
# nbdinfo, fio's nbd engine; installs them when root, skips a missing one otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
source vendor-scripts/deps.sh

echo "== cargo test (workspace)"
cargo test --workspace --locked 2>&1
bash vendor-scripts/c-tests.sh
bash vendor-scripts/fio-engine.sh test --skip-if-unavailable
bash vendor-scripts/nbd-tests.sh test
