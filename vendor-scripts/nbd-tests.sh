#!/usr/bin/env bash
# keel-nbd checked by real NBD clients: nbdinfo (libnbd-bin), qemu-io and qemu-img
# (qemu-utils), fio's nbd engine with verify=crc32c. Installs the clients when root; a
# client that is missing and cannot be installed is skipped with a message.
#
#   bash vendor-scripts/nbd-tests.sh          the tests (bounded: each step under `timeout`)
#   bash vendor-scripts/nbd-tests.sh bench    fio nbd, 4 KiB randwrite at QD1 and QD32:
#                                             keel-nbd vs nbdkit memory vs qemu-nbd (tmpfs),
#                                             alternating over rounds, as ratios
#
# Every server started here is killed on exit (trap). Needs cargo (builds keel-nbd).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-test}
T=${KEEL_NBD_STEP_TIMEOUT_S:-120}

pkgs=()
command -v qemu-io >/dev/null || pkgs+=(qemu-utils)
command -v nbdinfo >/dev/null || pkgs+=(libnbd-bin)
command -v fio >/dev/null || pkgs+=(fio)
if [ "$what" = bench ]; then command -v nbdkit >/dev/null || pkgs+=(nbdkit); fi
if [ ${#pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "nbd-tests: installing ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || true
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null ||
      echo "nbd-tests: could not install ${pkgs[*]}; those clients are skipped"
  else
    echo "nbd-tests: not root; missing ${pkgs[*]} are skipped"
  fi
fi
have() { command -v "$1" >/dev/null; }

cargo build --release --locked -p keel-nbd >/dev/null 2>&1 || cargo build --release --locked -p keel-nbd
BIN=target/release/keel-nbd
WORK=$(mktemp -d /tmp/keel-nbd-tests.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$((20000 + $$ % 20000))
fail=0
ok() { echo "  ok   $*"; }
bad() { echo "  FAIL $*"; fail=1; }
skip() { echo "  skip $*"; }

# wait_port PORT: until something listens there (10 s at most).
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# start_keel LOG ARGS...: starts keel-nbd in the background, sets KEEL_PID.
start_keel() {
  local log=$1; shift
  "$BIN" "$@" >"$log" 2>&1 &
  KEEL_PID=$!
  PIDS+=("$KEEL_PID")
}

# stop_keel: SIGTERM, then wait for a clean exit.
stop_keel() {
  kill -TERM "$KEEL_PID"
  local rc=0
  timeout 30 tail --pid="$KEEL_PID" -f /dev/null || rc=$?
  wait "$KEEL_PID" 2>/dev/null || rc=$?
  return $rc
}

# qio URI CMDS...: qemu-io with -c per command; fails on a pattern mismatch or error.
qio() {
  local uri=$1; shift
  local args=()
  for c in "$@"; do args+=(-c "$c"); done
  local out
  out=$(timeout "$T" qemu-io -f raw "${args[@]}" "$uri" 2>&1) || { echo "$out"; return 1; }
  if grep -qiE "fail|error|mismatch" <<<"$out"; then echo "$out"; return 1; fi
}

run_tests() {
  local uri="nbd://127.0.0.1:$PORT/vol"
  echo "== keel-nbd with real clients (port $PORT, sim device, 64 KiB objects)"
  start_keel "$WORK/keel.log" --listen "127.0.0.1:$PORT" --size 1g --object-size 64k \
    --volume vol:64m --volume small:1m --shards 2
  wait_port "$PORT" || { cat "$WORK/keel.log"; bad "keel-nbd did not start"; return; }

  if have nbdinfo; then
    local info
    info=$(timeout "$T" nbdinfo "$uri")
    if grep -q "export-size: 67108864" <<<"$info" &&
      [ "$(grep -cE "can_(flush|fua|trim|zero|multi_conn): true" <<<"$info")" = 5 ]; then
      ok "nbdinfo: size 64 MiB; can_flush, can_fua, can_trim, can_zero, can_multi_conn"
    else
      echo "$info"; bad "nbdinfo: size or flags"
    fi
    if [ "$(timeout "$T" nbdinfo --list --json "nbd://127.0.0.1:$PORT" | grep -c '"export-name"')" = 2 ]; then
      ok "nbdinfo --list: two exports"
    else
      bad "nbdinfo --list"
    fi
  else
    skip "nbdinfo (package libnbd-bin)"
  fi

  if have qemu-io; then
    qio "$uri" 'write -P 0xa5 60k 200k' 'read -P 0xa5 60k 200k' 'read -P 0 0 60k' \
      'read -P 0 260k 100k' && ok "qemu-io: pattern write across object boundaries, verified read, sparse zeroes" ||
      bad "qemu-io pattern"
    qio "$uri" 'write -z 100k 50k' 'read -P 0 100k 50k' 'read -P 0xa5 60k 40k' 'read -P 0xa5 150k 110k' &&
      ok "qemu-io: write -z (write zeroes) reads zero, neighbours intact" || bad "qemu-io write -z"
    qio "$uri" 'discard 128k 64k' 'read -P 0 128k 64k' 'read -P 0xa5 192k 68k' &&
      ok "qemu-io: discard" || bad "qemu-io discard"
    qio "$uri" 'write -f -P 0x3c 1M 64k' 'flush' 'read -P 0x3c 1M 64k' &&
      ok "qemu-io: write with FUA, flush" || bad "qemu-io FUA/flush"
    qio "$uri" 'aio_write -P 0x11 2M 64k' 'aio_write -P 0x22 3M 64k' 'aio_write -P 0x33 4M 4k' 'aio_flush' \
      'aio_read -P 0x11 2M 64k' 'aio_read -P 0x22 3M 64k' 'aio_flush' 'read -P 0x33 4M 4k' &&
      ok "qemu-io: aio writes and reads" || bad "qemu-io aio"
    if ! qio "$uri" 'write -P 1 64m 4k' >/dev/null 2>&1 &&
      ! qio "$uri" 'read 64m-4k 8k' >/dev/null 2>&1; then
      ok "qemu-io: requests past the end fail"
    else
      bad "qemu-io: past the end succeeded"
    fi
    # Several clients at once, each on its own range.
    local pids=() i
    for i in 0 1 2 3; do
      qio "$uri" "write -P $((0x40 + i)) $((8 + i * 4))M 4M" "read -P $((0x40 + i)) $((8 + i * 4))M 4M" &
      pids+=($!)
    done
    local pf=0
    for p in "${pids[@]}"; do wait "$p" || pf=1; done
    [ $pf = 0 ] && ok "qemu-io: 4 clients in parallel, verified" || bad "qemu-io parallel"
  else
    skip "qemu-io (package qemu-utils)"
  fi

  if have qemu-img; then
    local img="$WORK/src.img"
    head -c 16M /dev/urandom >"$img"
    head -c 8M /dev/zero >>"$img"
    head -c 40M /dev/urandom >>"$img"
    if timeout "$T" qemu-img convert -n -f raw -O raw "$img" "$uri" &&
      timeout "$T" qemu-img compare -f raw -F raw "$img" "$uri" >/dev/null; then
      ok "qemu-img convert of a 64 MiB file into the volume; qemu-img compare: identical"
    else
      bad "qemu-img convert / compare"
    fi
  else
    skip "qemu-img (package qemu-utils)"
  fi

  if have fio && fio --enghelp 2>/dev/null | grep -qw nbd; then
    if timeout "$T" fio --name=v --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k \
      --iodepth=16 --numjobs=4 --offset_increment=16m --size=16m --verify=crc32c \
      --verify_fatal=1 --verify_state_save=0 --output="$WORK/fio.txt" >/dev/null 2>&1 &&
      ! grep -q "verify:.*bad" "$WORK/fio.txt"; then
      ok "fio nbd: 4 connections, randwrite QD16, verify=crc32c"
    else
      cat "$WORK/fio.txt" 2>/dev/null | tail -20; bad "fio nbd verify"
    fi
  else
    skip "fio nbd engine (fio built without libnbd)"
  fi

  if stop_keel && grep -q "store checkpointed and closed" "$WORK/keel.log"; then
    ok "SIGTERM: clean stop, store checkpointed and closed"
  else
    cat "$WORK/keel.log"; bad "SIGTERM stop"
  fi

  # Persistence on a file (psync) across a stop, over a Unix socket.
  if have qemu-io; then
    local sock="$WORK/nbd.sock" file="$WORK/keel.img"
    local uuri="nbd+unix:///disk?socket=$sock"
    start_keel "$WORK/keel2.log" --driver psync --path "$file" --size 256m --unix "$sock" --volume disk:32m
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
    qio "$uuri" 'write -P 0x77 1M 3M' 'write -f -P 0x78 31M 1M' || bad "unix socket write"
    stop_keel || bad "stop (psync)"
    start_keel "$WORK/keel3.log" --driver psync --path "$file" --unix "$sock"
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
    if qio "$uuri" 'read -P 0x77 1M 3M' 'read -P 0x78 31M 1M' 'read -P 0 0 1M'; then
      ok "unix socket, psync file: data kept across a stop and restart"
    else
      bad "psync persistence"
    fi
    stop_keel || bad "stop (psync, second run)"
    local listed listed2
    listed=$(timeout "$T" "$BIN" --driver psync --path "$file" --volume two:8m --resize disk:16m --list 2>&1)
    listed2=$(timeout "$T" "$BIN" --driver psync --path "$file" --remove two --list 2>&1)
    if grep -q "^disk.size_bytes=16777216" <<<"$listed" && grep -q "^two" <<<"$listed" &&
      [ "$listed2" = "$(grep '^disk' <<<"$listed")" ]; then
      ok "keel-nbd --volume / --resize / --remove / --list on the kept store"
    else
      echo "$listed"; echo "$listed2"; bad "admin flags"
    fi
  fi

  power_cut_under_load

  if [ $fail = 0 ]; then echo "nbd-tests: all passed"; else echo "nbd-tests: FAILED"; exit 1; fi
}

# power_cut_under_load: qemu-io writes patterns and flushes (acknowledged and flushed),
# fio's nbd engine then keeps random writes going elsewhere on the volume, and the sim
# device's power is cut (SIGUSR1: keel-nbd saves what survived and exits, nothing
# flushed); keel-nbd restarts from that image, recovers, and every acknowledged-and-
# flushed pattern must read back (and the volume and its size be there).
power_cut_under_load() {
  if ! have qemu-io; then skip "power cut under load (no qemu-io)"; return; fi
  local img="$WORK/cut.img" uri="nbd://127.0.0.1:$PORT/crash"
  start_keel "$WORK/cut1.log" --listen "127.0.0.1:$PORT" --size 256m --object-size 64k \
    --volume crash:64m --shards 2 --sim-write-cache --sim-latency-us 20 --power-cut-to "$img"
  wait_port "$PORT" || { cat "$WORK/cut1.log"; bad "keel-nbd (power cut) did not start"; return; }
  local i cmds=()
  for i in 0 1 2 3 4 5 6 7; do cmds+=("write -P $((0x31 + i)) $((i * 2))M 2M"); done
  cmds+=("flush")
  qio "$uri" "${cmds[@]}" || { bad "writes before the cut"; return; }
  local load=""
  if fio --enghelp 2>/dev/null | grep -qw nbd; then
    fio --name=load --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=16 \
      --offset=32m --size=32m --time_based --runtime=20 >"$WORK/cut-fio.log" 2>&1 &
    load=$!
    PIDS+=("$load")
  else
    timeout "$T" qemu-io -f raw -c "aio_write -P 0x99 32M 8M" -c "aio_flush" "$uri" \
      >/dev/null 2>&1 &
    load=$!
  fi
  sleep 1.5
  kill -USR1 "$KEEL_PID"
  local rc=0
  timeout 30 tail --pid="$KEEL_PID" -f /dev/null || rc=$?
  wait "$KEEL_PID" 2>/dev/null || rc=$?
  kill "$load" 2>/dev/null || true
  wait "$load" 2>/dev/null || true
  if [ $rc != 0 ] || [ ! -s "$img" ] || ! grep -q "power cut" "$WORK/cut1.log"; then
    cat "$WORK/cut1.log"; bad "power cut (rc $rc)"; return
  fi
  start_keel "$WORK/cut2.log" --listen "127.0.0.1:$PORT" --size 256m --sim-image "$img" --shards 2
  wait_port "$PORT" || { cat "$WORK/cut2.log"; bad "keel-nbd did not recover the image"; return; }
  cmds=()
  for i in 0 1 2 3 4 5 6 7; do cmds+=("read -P $((0x31 + i)) $((i * 2))M 2M"); done
  if qio "$uri" "${cmds[@]}" && have nbdinfo &&
    timeout "$T" nbdinfo "$uri" | grep -q "export-size: 67108864"; then
    ok "power cut under a fio load: recovered, every acknowledged and flushed write reads back"
  else
    cat "$WORK/cut2.log"; bad "data after the power cut"
  fi
  stop_keel || bad "stop after recovery"
}

# fio_iops URI QD: IOPS of 4 KiB random writes through fio's nbd engine.
fio_iops() {
  timeout "$T" fio --name=b --ioengine=nbd --uri="$1" --rw=randwrite --bs=4k --iodepth="$2" \
    --size=256m --time_based --runtime="${KEEL_NBD_BENCH_S:-5}" --ramp_time=1 \
    --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; s=sys.stdin.read(); print(round(json.loads(s[s.index("{"):])["jobs"][0]["write"]["iops"]))'
}

run_bench() {
  have fio && fio --enghelp 2>/dev/null | grep -qw nbd || { echo "fio has no nbd engine"; exit 1; }
  have nbdkit || { echo "nbdkit missing (package nbdkit)"; exit 1; }
  have qemu-nbd || { echo "qemu-nbd missing (package qemu-utils)"; exit 1; }
  local rounds=${KEEL_NBD_BENCH_ROUNDS:-2}
  local p1=$PORT p2=$((PORT + 1)) p3=$((PORT + 2))
  start_keel "$WORK/keel.log" --listen "127.0.0.1:$p1" --size 2g --volume vol:1g
  nbdkit --exit-with-parent -f -p "$p2" -e vol memory 1G >/dev/null 2>&1 &
  PIDS+=($!)
  local shm=/dev/shm/keel-nbd-bench.$$
  truncate -s 1G "$shm"
  qemu-nbd -f raw -x vol -p "$p3" -b 127.0.0.1 -t --shared=8 --cache=writeback "$shm" >/dev/null 2>&1 &
  PIDS+=($!)
  for p in $p1 $p2 $p3; do wait_port "$p" || { echo "a server did not start on $p"; exit 1; }; done
  echo "== fio nbd engine, 4 KiB randwrite, ${KEEL_NBD_BENCH_S:-5} s per run, $rounds rounds alternating"
  echo "   keel-nbd: sim device (memory, no latency), MetadataOnly volume, 1 shard"
  echo "   nbdkit: memory plugin; qemu-nbd: raw file on tmpfs, cache=writeback"
  declare -A sum
  for r in $(seq "$rounds"); do
    for qd in 1 32; do
      for s in keel:$p1 nbdkit:$p2 qemu:$p3; do
        local name=${s%%:*} port=${s##*:}
        local iops
        iops=$(fio_iops "nbd://127.0.0.1:$port/vol" "$qd")
        echo "   round $r qd$qd $name: $iops IOPS"
        sum[$name.$qd]=$(( ${sum[$name.$qd]:-0} + iops ))
      done
    done
  done
  rm -f "$shm"
  printf "\n   %-6s %12s %12s %12s %14s %14s\n" QD keel-nbd nbdkit-mem qemu-nbd keel/nbdkit keel/qemu-nbd
  for qd in 1 32; do
    local k=$(( sum[keel.$qd] / rounds )) n=$(( sum[nbdkit.$qd] / rounds )) q=$(( sum[qemu.$qd] / rounds ))
    printf "   %-6s %12d %12d %12d %14s %14s\n" "$qd" "$k" "$n" "$q" \
      "$(python3 -c "print(f'{$k/$n:.2f}')")" "$(python3 -c "print(f'{$k/$q:.2f}')")"
  done
}

case $what in
  test) run_tests ;;
  bench) run_bench ;;
  *) echo "usage: $0 [test|bench]" >&2; exit 2 ;;
esac
