#!/usr/bin/env bash
# Compares Keel's kernel-path drivers with fio on the same file, 4 KiB random I/O:
#
#   bash vendor-scripts/raw-compare.sh [FILE] [SECONDS]
#
#   FILE     file (or block device: its contents are overwritten) to run on; default a
#            fresh 1 GiB file under /var/tmp, written once in full (so reads hit data, not
#            holes) and deleted at the end. A FILE that does not exist is created and filled.
#   SECONDS  length of each run (default 5).
#   env KEEL_COMPARE_SIZE (1g)      bytes of FILE the I/O covers;
#       KEEL_COMPARE_SIM_SIZE (64m) sim device size (a larger one mostly measures the page
#                                   faults of first touching the sim's memory);
#       KEEL_COMPARE_ROUNDS (1)     repeat everything, report the median of each cell.
#
# For randwrite and randread at QD1 and QD32, one after the other so that drift hits both
# tools alike: keel-bench raw psync, keel-bench raw uring, fio psync, fio io_uring. fio runs
# one job with --direct=1, --norandommap (offsets repeat, as keel-bench's do) and, for
# io_uring, registered buffers and files (--fixedbufs --registerfiles), as Keel's uring
# driver uses. fio's psync engine has no queue depth: at QD32 it runs at QD1. Then
# keel-bench raw null at QD128 (software cost only) and sim (10 µs) at QD1 and QD32, which
# have no fio counterpart. Prints one table: IOPS, and keel/fio for each pair.
set -euo pipefail
cd "$(dirname "$0")/.."

file_arg=${1:-}
secs=${2:-5}
size=${KEEL_COMPARE_SIZE:-1g}
sim_size=${KEEL_COMPARE_SIM_SIZE:-64m}
rounds=${KEEL_COMPARE_ROUNDS:-1}
bs=4k

say() { echo "raw-compare: $*" >&2; }

if ! command -v fio >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    say "fio is missing: install it (apt-get install fio) or run as root"
    exit 1
  fi
  say "installing fio"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends fio >/dev/null
fi
command -v python3 >/dev/null || { say "python3 is needed to read JSON"; exit 1; }
if ! command -v cargo >/dev/null; then
  for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
    [ -x "$d/cargo" ] && export PATH="$d:$PATH"
  done
fi

say "building keel-bench (release)"
cargo build --release --quiet -p keel-bench
bench=${CARGO_TARGET_DIR:-target}/release/keel-bench

work=$(mktemp -d /var/tmp/keel-raw-compare.XXXXXX)
trap 'rm -rf "$work"' EXIT
results=$work/results.tsv
: >"$results"

file=${file_arg:-$work/dev.img}
if [ ! -e "$file" ]; then
  say "writing $size to $file once"
  fio --name=prefill --filename="$file" --size="$size" --rw=write --bs=1m --direct=1 \
    --ioengine=psync --output="$work/prefill.json" --output-format=json >/dev/null
fi

# record WORKLOAD QD ENGINE TOOL IOPS
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"; }

# keel ENGINE WORKLOAD QD keel-bench-args...: one keel-bench run, its IOPS recorded.
keel() {
  local engine=$1 wl=$2 qd=$3
  shift 3
  local iops=nan
  if "$bench" raw "$@" --workload "$wl" --bs "$bs" --qd "$qd" --seconds "$secs" --json \
    >"$work/keel.json" 2>"$work/keel.err"; then
    iops=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["iops"])' \
      "$work/keel.json")
  else
    say "keel-bench $engine $wl qd$qd failed: $(tail -n 3 "$work/keel.err")"
  fi
  say "$(printf '%-9s qd%-3s keel %-9s %12.0f IOPS' "$wl" "$qd" "$engine" "$iops")"
  record "$wl" "$qd" "$engine" keel "$iops"
}

# fio_run ENGINE WORKLOAD QD IOENGINE DEPTH fio-args...
fio_run() {
  local engine=$1 wl=$2 qd=$3 ioengine=$4 depth=$5
  shift 5
  local dir=read iops=nan
  [ "$wl" = randwrite ] && dir=write
  if fio --name="$engine" --filename="$file" --size="$size" --rw="$wl" --bs="$bs" \
    --direct=1 --ioengine="$ioengine" --iodepth="$depth" --numjobs=1 --norandommap \
    --randrepeat=0 --time_based --runtime="$secs" "$@" \
    --output-format=json --output="$work/fio.json" >/dev/null 2>"$work/fio.err"; then
    iops=$(python3 -c \
      'import json,sys; print(json.load(open(sys.argv[1]))["jobs"][0][sys.argv[2]]["iops"])' \
      "$work/fio.json" "$dir")
  else
    say "fio $engine $wl qd$qd failed: $(tail -n 3 "$work/fio.err")"
  fi
  say "$(printf '%-9s qd%-3s fio  %-9s %12.0f IOPS' "$wl" "$qd" "$engine" "$iops")"
  record "$wl" "$qd" "$engine" fio "$iops"
}

for round in $(seq 1 "$rounds"); do
  [ "$rounds" -gt 1 ] && say "round $round of $rounds"
  for wl in randwrite randread; do
    for qd in 1 32; do
      keel psync "$wl" "$qd" --driver psync --path "$file" --size "$size"
      keel io_uring "$wl" "$qd" --driver uring --path "$file" --size "$size"
      fio_run psync "$wl" "$qd" psync 1
      fio_run io_uring "$wl" "$qd" io_uring "$qd" --fixedbufs=1 --registerfiles=1
    done
    keel null "$wl" 128 --driver null --size "$size"
    for qd in 1 32; do
      keel "sim-10us" "$wl" "$qd" --driver sim --size "$sim_size" --sim-latency-us 10
    done
  done
done

python3 - "$results" "$file" "$secs" "$rounds" "$(fio --version)" <<'EOF'
import statistics, sys
from collections import defaultdict

path, file, secs, rounds, fio_version = sys.argv[1:6]
runs = defaultdict(list)
order = []
for line in open(path):
    wl, qd, engine, tool, iops = line.rstrip("\n").split("\t")
    key = (wl, int(qd), engine)
    if key not in order:
        order.append(key)
    runs[key + (tool,)].append(float(iops))

def median(key):
    xs = [x for x in runs.get(key, []) if x == x]  # drop failed runs (nan)
    return statistics.median(xs) if xs else None

def fmt(x):
    return "-" if x is None else f"{x:,.0f}"

print(f"keel-bench raw vs fio {fio_version}: 4k, {file}, {secs} s per run, "
      f"median of {rounds} round(s)")
print(f"{'workload':<10}{'qd':>4}  {'path':<9}{'keel IOPS':>13}{'fio IOPS':>13}{'keel/fio':>10}  note")
for wl, qd, engine in order:
    keel = median((wl, qd, engine, "keel"))
    fio = median((wl, qd, engine, "fio"))
    ratio = f"{keel / fio:.2f}" if keel and fio else "-"
    note = ""
    if engine == "psync" and qd > 1:
        note = "fio psync at QD1: psync has no queue depth"
    elif engine == "null":
        note = "no device: software cost only"
    elif engine.startswith("sim"):
        note = "simulated 10 us device"
    print(f"{wl:<10}{qd:>4}  {engine:<9}{fmt(keel):>13}{fmt(fio):>13}{ratio:>10}  {note}")
EOF
