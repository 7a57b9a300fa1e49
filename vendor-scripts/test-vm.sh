#!/usr/bin/env bash
# Runs Keel against a real NVMe controller: QEMU's emulated one (-device nvme), in
# throw-away guests booted under TCG from Debian's own kernel and busybox. See
# docs/test-vm.md for the matrix, the markers and how to read a failure; the measured
# facts behind every choice here are in TEST-VM.md (shared with the project).
#
#   bash vendor-scripts/test-vm.sh [--quick] [--only NAME]... [--pre-driver] [--list]
#
#   --quick        the default guest only
#   --only NAME    only this guest (repeatable); --list names them
#   --pre-driver   the userspace NVMe driver has not landed yet: its missing test binaries
#                  and --driver nvme runs are reported SKIP instead of FAIL (validation of
#                  the harness itself; never use it in CI once drivers/src/nvme exists)
#
#   env KEEL_VM_KEEP=1          keep the run directory (serial logs, QEMU stderr, images)
#       KEEL_VM_TIMEOUT (600)   seconds one guest may run before it is killed (a failure)
#       KEEL_VM_SECONDS (2)     seconds per keel-bench run in the guests
#       KEEL_VM_TESTS ("nvme dma")  test binaries (by target name, keel-drivers and
#                               keel-engine) to run in every guest; "all" for all of them
#       KEEL_VM_CRASH_TXNS (400) transactions of the crash workload per journal mode
#
# Prints one line per result (PASS|FAIL|SKIP guest/step message), a kernel-vs-userspace
# comparison table for the default guest, and last `N passed, N failed`. Exits non-zero on
# any failure, on a missing result (a guest that did not reach its end marker, a test
# binary that did not report), on an IOMMU fault (`DMAR` fault lines in the guest log,
# `vtd_iommu_translate` in QEMU's stderr) or on a kernel oops. Needs root and apt-get
# (Debian 12); elsewhere it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

TRIPLE=x86_64-unknown-linux-gnu
VM=$PWD/target/test-vm
CACHE=$VM/cache
ALL_GUESTS=(default lba4k mdts wt-off vfio setup crash)
SECONDS_PER_BENCH=${KEEL_VM_SECONDS:-2}
GUEST_TIMEOUT=${KEEL_VM_TIMEOUT:-600}
TEST_NAMES=${KEEL_VM_TESTS:-nvme dma}
CRASH_TXNS=${KEEL_VM_CRASH_TXNS:-400}
CRASH_SEED=7
CRASH_MODES="full metadata-only"

say() { echo "test-vm: $*" >&2; }
die() {
  say "$*"
  exit 1
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# ---------------------------------------------------------------------------------------
# Arguments and preconditions

guests=()
pre_driver=0
parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --quick) guests=(default) ;;
      --only)
        [ $# -ge 2 ] || die "--only needs a guest name (--list names them)"
        printf '%s\n' "${ALL_GUESTS[@]}" | grep -qx -- "$2" || die "no guest named $2"
        guests+=("$2")
        shift
        ;;
      --pre-driver) pre_driver=1 ;;
      --list)
        printf '%s\n' "${ALL_GUESTS[@]}"
        exit 0
        ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) die "unknown argument $1 (try -h)" ;;
    esac
    shift
  done
  [ ${#guests[@]} -gt 0 ] || guests=("${ALL_GUESTS[@]}")
}

# CI runs this as root on Debian; a developer's machine may be neither. That is a skip,
# not a failure: the guests need packages only apt can fetch, and root to install them.
check_can_run() {
  if [ "$(id -u)" -ne 0 ]; then
    say "skipped: needs root (it installs QEMU and downloads Debian's kernel with apt-get)"
    exit 0
  fi
  if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
    say "skipped: needs apt-get and dpkg-deb (Debian); see docs/test-vm.md"
    exit 0
  fi
}

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "$@" >/dev/null
}

# Host tools. Installing qemu-system-x86 (7.2) removes a newer qemu-utils; qemu-utils 7.2
# comes back with a second install (TEST-VM.md), so ask for it afterwards.
install_host_deps() {
  local need=()
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  command -v depmod >/dev/null || need+=(kmod)
  command -v xz >/dev/null || need+=(xz-utils)
  command -v python3 >/dev/null || need+=(python3)
  command -v timeout >/dev/null || need+=(coreutils)
  if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq -o DPkg::Lock::Timeout=600 >/dev/null
    apt_install "${need[@]}"
  fi
  if ! command -v qemu-img >/dev/null; then
    say "installing qemu-utils (qemu-system-x86 removed a newer one)"
    apt_install qemu-utils
  fi
}

# ---------------------------------------------------------------------------------------
# Guest kernel and userland, cached under target/test-vm/cache

# fetch PKG: downloads PKG's .deb into the cache once; prints its path.
fetch() {
  local pkg=$1 deb
  deb=$(find "$CACHE" -maxdepth 1 -name "${pkg}_*.deb" | head -n 1)
  if [ -z "$deb" ]; then
    # apt's sandbox user cannot write into a root-owned cache; download as root.
    (cd "$CACHE" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null)
    deb=$(find "$CACHE" -maxdepth 1 -name "${pkg}_*.deb" | head -n 1)
  fi
  [ -n "$deb" ] || die "could not download $pkg"
  echo "$deb"
}

# prepare_kernel: sets KVER, KDIR (the extracted tree), KERNEL (what QEMU boots).
prepare_kernel() {
  local pkg deb off
  pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' |
    head -n 1)
  [ -n "$pkg" ] || die "apt-cache depends linux-image-amd64 names no kernel package"
  KVER=${pkg#linux-image-}
  KDIR=$CACHE/$KVER
  if [ ! -e "$KDIR/.done" ]; then
    deb=$(fetch "$pkg")
    say "extracting $pkg (vmlinuz and the nvme, vfio, block, lib and crypto modules)"
    rm -rf "$KDIR" && mkdir -p "$KDIR"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$KDIR" --wildcards './boot/vmlinuz-*' \
      "./lib/modules/$KVER/kernel/drivers/nvme/*" "./lib/modules/$KVER/kernel/drivers/vfio/*" \
      "./lib/modules/$KVER/kernel/virt/*" "./lib/modules/$KVER/kernel/block/*" \
      "./lib/modules/$KVER/kernel/lib/*" "./lib/modules/$KVER/kernel/crypto/*" \
      "./lib/modules/$KVER/modules.builtin*" "./lib/modules/$KVER/modules.order"
    depmod -b "$KDIR" "$KVER"
    # PVH boot of the ELF vmlinux skips the decompressor: ~4.5 s to power-off instead of
    # ~9 s. The xz payload starts at the first xz magic; xz complains about the bytes after
    # it, so judge by the result (an ELF), not the exit status.
    off=$(LC_ALL=C grep -obUaP '\xfd\x37\x7a\x58\x5a\x00' "$KDIR/boot/vmlinuz-$KVER" |
      head -n 1 | cut -d: -f1 || true)
    if [ -n "$off" ]; then
      tail -c +"$((off + 1))" "$KDIR/boot/vmlinuz-$KVER" | xz -dc >"$KDIR/vmlinux" 2>/dev/null || true
    fi
    if [ "$(head -c 4 "$KDIR/vmlinux" 2>/dev/null | od -An -tx1 | tr -d ' ')" != 7f454c46 ]; then
      say "could not unpack an ELF vmlinux; booting the bzImage (slower)"
      rm -f "$KDIR/vmlinux"
    fi
    touch "$KDIR/.done"
  fi
  KERNEL=$KDIR/vmlinux
  [ -e "$KERNEL" ] || KERNEL=$KDIR/boot/vmlinuz-$KVER
}

# mod_closure MODULE...: module files (relative to lib/modules/KVER) that MODULE needs,
# dependencies first, each once.
mod_closure() {
  python3 - "$KDIR/lib/modules/$KVER/modules.dep" "$@" <<'EOF'
import sys
deps = {}
for line in open(sys.argv[1]):
    mod, _, rest = line.partition(":")
    deps[mod] = rest.split()
by_name = {m.rsplit("/", 1)[-1][:-3].replace("-", "_"): m for m in deps}
out = []
def add(m):
    # modules.dep lists every (transitive) dependency, nearest first: load in reverse.
    for d in reversed(deps[m]):
        if d not in out:
            out.append(d)
    if m not in out:
        out.append(m)
for name in sys.argv[2:]:
    m = by_name.get(name.replace("-", "_"))
    if m is None:
        sys.exit(f"module {name} not in modules.dep")
    add(m)
print("\n".join(out))
EOF
}

prepare_userland() {
  local deb
  BUSYBOX=$CACHE/busybox
  BASH_STATIC=$CACHE/bash-static
  if [ ! -x "$BUSYBOX" ]; then
    deb=$(fetch busybox-static)
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ./bin/busybox >"$BUSYBOX"
    chmod +x "$BUSYBOX"
  fi
  # setup.sh is a bash script (as on a real host); busybox has no bash.
  if [ ! -x "$BASH_STATIC" ]; then
    deb=$(fetch bash-static)
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ./bin/bash-static >"$BASH_STATIC"
    chmod +x "$BASH_STATIC"
  fi
}

# ---------------------------------------------------------------------------------------
# Static Keel binaries

# build_binaries: static keel-bench and test binaries; sets BENCH, TESTS (lines
# "crate name path"), NVME_DRIVER (yes|no) and MISSING (the nvme test binaries not built).
build_binaries() {
  local static=(--config vendor-scripts/guest/static.toml)
  say "building static keel-bench and test binaries ($TRIPLE, release)"
  # One cargo invocation for all of it: a separate `cargo build -p keel-bench` resolves
  # features without the dev-dependencies and rebuilds the shared crates every time.
  cargo "${static[@]}" test --release --locked --no-run --target "$TRIPLE" \
    -p keel-drivers -p keel-engine -p keel-bench --message-format=json 2>"$RUN/cargo-test.err" |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    # package_id: "path+file:///.../drivers#keel-drivers@0.1.0" (or "...#0.1.0" when
    # the directory has the crate name)
    url, _, frag = m["package_id"].partition("#")
    crate = frag.split("@")[0] if "@" in frag else url.rstrip("/").rsplit("/", 1)[-1]
    if m["profile"]["test"] and crate != "keel-bench":
        print(crate, m["target"]["name"], m["executable"])
    elif not m["profile"]["test"] and m["target"]["name"] == "keel-bench":
        print("bin", "keel-bench", m["executable"])
' >"$RUN/all-tests.txt" || {
    cat "$RUN/cargo-test.err" >&2
    die "building the test binaries failed"
  }
  BENCH=$(awk '$1 == "bin" { print $3 }' "$RUN/all-tests.txt")
  [ -x "$BENCH" ] || die "cargo built no keel-bench binary"
  sed -i '/^bin /d' "$RUN/all-tests.txt"
  local want=" $TEST_NAMES "
  TESTS=$(awk -v want="$want" 'want == " all " || index(want, " " $2 " ")' "$RUN/all-tests.txt")
  MISSING=""
  for crate in keel-drivers keel-engine; do
    grep -q "^$crate nvme " "$RUN/all-tests.txt" || MISSING="$MISSING $crate/nvme"
  done
  if "$BENCH" raw --help | grep -q -- '--pci'; then NVME_DRIVER=yes; else NVME_DRIVER=no; fi
  if readelf -l "$BENCH" | grep -q 'program interpreter'; then
    die "$BENCH is dynamically linked: the guests have no libc"
  fi
}

# ---------------------------------------------------------------------------------------
# Initramfs: one common archive, plus a small one per guest with its configuration

build_common_initrd() {
  local root=$RUN/rootfs crate name path
  mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,keel/tests} "$root/lib/modules/$KVER"
  cp "$BUSYBOX" "$root/bin/busybox"
  ln -s busybox "$root/bin/sh"
  cp "$BASH_STATIC" "$root/bin/bash"
  cp vendor-scripts/guest/init.sh "$root/init"
  cp vendor-scripts/setup.sh "$root/keel/setup.sh"
  chmod +x "$root/init"
  cp "$BENCH" "$root/keel/keel-bench"
  while read -r crate name path; do
    [ -n "$crate" ] && cp "$path" "$root/keel/tests/${crate#keel-}-$name"
  done <<<"$TESTS"
  # The kernel's own nvme driver (for the comparison, setup.sh and the crash guest) and
  # vfio-pci; vfio_iommu_type1 is loaded by vfio on demand, so it is named explicitly.
  mod_closure nvme >"$root/keel/modules-nvme.list"
  mod_closure vfio vfio_iommu_type1 vfio_virqfd irqbypass vfio-pci-core vfio-pci \
    >"$root/keel/modules-vfio.list"
  cat "$root"/keel/modules-*.list | while read -r ko; do
    mkdir -p "$(dirname "$root/lib/modules/$KVER/$ko")"
    cp "$KDIR/lib/modules/$KVER/$ko" "$root/lib/modules/$KVER/$ko"
  done
  (cd "$root" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1) >"$RUN/common.cpio.gz"
  say "initramfs: $(du -h "$RUN/common.cpio.gz" | cut -f1) ($(echo "$TESTS" | grep -c . || true) test binaries)"
}

# guest_initrd NAME STEPS: the common archive plus /keel/guest.conf (concatenated cpio
# archives are one initramfs to the kernel).
guest_initrd() {
  local name=$1 steps=$2 dir=$RUN/$1/conf missing_verdict=FAIL crash_driver=nvme
  [ $pre_driver = 1 ] && missing_verdict=SKIP
  [ "$NVME_DRIVER" = yes ] || crash_driver=uring
  mkdir -p "$dir/keel"
  cat >"$dir/keel/guest.conf" <<EOF
GUEST='$name'
KVER='$KVER'
STEPS='$steps'
NVME_DRIVER='$NVME_DRIVER'
MISSING_VERDICT='$missing_verdict'
BENCH_SECONDS='$SECONDS_PER_BENCH'
BENCH_SPAN='64m'
CRASH_MODES='$CRASH_MODES'
CRASH_DRIVER='${KEEL_VM_CRASH_DRIVER:-$crash_driver}'
CRASH_SEED='$CRASH_SEED'
CRASH_TXNS='$CRASH_TXNS'
EOF
  (cd "$dir" && find keel | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1) >"$dir.cpio.gz"
  cat "$RUN/common.cpio.gz" "$dir.cpio.gz" >"$RUN/$name/initrd.gz"
}

# ---------------------------------------------------------------------------------------
# The matrix

# guest_spec NAME: sets STEPS, APPEND (extra kernel arguments) and DEVICES (QEMU args)
# for one guest, creating its disk images in $RUN/NAME.
guest_spec() {
  local name=$1 d=$RUN/$1 nvme_opts=""
  APPEND=""
  STEPS="tests bench-nvme"
  case "$name" in
    default) STEPS="tests bench-nvme bench-kernel compare" ;;
    lba4k) nvme_opts=",logical_block_size=4096,physical_block_size=4096" ;;
    mdts) nvme_opts=",mdts=2,max_ioqpairs=2" ;; # 16 KiB transfers, 2 I/O queue pairs
    wt-off) nvme_opts=",write-cache=off" ;;     # VWC reported absent
    vfio)
      STEPS="vfio tests bench-nvme compare"
      APPEND="intel_iommu=on"
      ;;
    setup)
      STEPS="setup tests"
      APPEND="intel_iommu=on"
      ;;
    crash) STEPS="crash" ;;
  esac
  DEVICES=()
  case "$name" in vfio | setup) DEVICES+=(-device "intel-iommu,intremap=on") ;; esac
  if [ "$name" = crash ]; then
    # blklogwrites writes to the base image in place: keep a copy of the starting state
    # (all zeroes) for the replay.
    local mode slot=4
    for mode in $CRASH_MODES; do
      truncate -s 64M "$d/$mode.img"
      cp --sparse=always "$d/$mode.img" "$d/$mode.base.img"
      : >"$d/$mode.log"
      DEVICES+=(-blockdev "driver=file,node-name=base-$mode,filename=$d/$mode.img"
        -blockdev "driver=file,node-name=wlog-$mode,filename=$d/$mode.log"
        -blockdev "driver=blklogwrites,node-name=nvm-$mode,file=base-$mode,log=wlog-$mode"
        -device "nvme,serial=kc-$mode,drive=nvm-$mode,addr=$slot.0")
      slot=$((slot + 1))
    done
  else
    # Written in full, not sparse: the userspace driver runs before the kernel path, and
    # on a sparse image its writes would pay the host's block allocation that the kernel
    # path's writes to the same blocks then would not (measured: 0.33x at randwrite QD1).
    dd if=/dev/zero of="$d/nvme.img" bs=1M count=256 status=none
    DEVICES+=(-drive "file=$d/nvme.img,if=none,id=nvm,format=raw,cache=writeback"
      -device "nvme,serial=keel0$nvme_opts,drive=nvm")
  fi
}

QEMU_PID=""
# run_guest NAME: boots it, waits (bounded), records its results.
run_guest() {
  local name=$1 d=$RUN/$1 start rc=0
  mkdir -p "$d"
  guest_spec "$name"
  guest_initrd "$name" "$STEPS"
  start=$(date +%s%N)
  timeout --kill-after=10 "$GUEST_TIMEOUT" qemu-system-x86_64 -accel tcg -M q35 -m 1G -smp 2 \
    -display none -monitor none -serial "file:$d/serial.log" -no-reboot -nic none \
    -kernel "$KERNEL" -initrd "$d/initrd.gz" \
    -append "console=ttyS0 panic=-1 hugepages=128 quiet nvme.poll_queues=1 $APPEND" \
    "${DEVICES[@]}" >"$d/qemu.err" 2>&1 &
  QEMU_PID=$!
  wait "$QEMU_PID" || rc=$?
  QEMU_PID=""
  local ms=$((($(date +%s%N) - start) / 1000000))
  printf '%s\t%d.%d\t%s\n' "$name" $((ms / 1000)) $((ms % 1000 / 100)) "$rc" >>"$RUN/times.tsv"
  collect "$name" "$rc"
  [ "$name" = crash ] && check_crash "$d"
  return 0
}

# collect NAME QEMU-RC: turns the guest's markers into result lines, and adds failures for
# what is missing or wrong in its logs.
collect() {
  local name=$1 rc=$2 d=$RUN/$1
  python3 - "$name" "$rc" "$d/serial.log" "$d/qemu.err" "$STEPS" "$TESTS" "$MISSING" \
    "$pre_driver" >>"$RUN/results.tsv" <<'EOF'
import re, sys
name, rc, serial, qerr, steps, tests, missing, pre_driver = sys.argv[1:9]
log = open(serial, errors="replace").read().replace("\r", "")
err = open(qerr, errors="replace").read()
out = []
def res(verdict, step, msg):
    out.append(f"{verdict}\t{name}\t{step}\t{msg}")
seen = {}
for line in log.splitlines():
    m = re.match(r"@@KEEL RESULT (\S+) (PASS|FAIL|SKIP) ?(.*)", line)
    if m:
        seen.setdefault(m.group(1), []).append(m.group(2))
        res(m.group(2), m.group(1), m.group(3))
expected = steps.split()
test_names = ["test:" + t.split()[0].removeprefix("keel-") + "-" + t.split()[1]
              for t in tests.splitlines() if t.strip()]
for step in expected:
    if step == "tests":
        for t in test_names:
            if t not in seen:
                res("FAIL", t, "no result: the test binary did not report")
        for m in missing.split():
            res("SKIP" if pre_driver == "1" else "FAIL", "test:" + m.replace("keel-", "").replace("/", "-"),
                f"no test binary {m} (tests/nvme.rs not in the tree yet)")
    elif step == "crash":
        for mode in ("full", "metadata-only"):
            if "crash-guest:" + mode not in seen:
                res("FAIL", "crash-guest:" + mode, "no result from the crash workload")
    elif step not in seen:
        res("FAIL", step, "no result: the step did not report")
if f"@@KEEL END {name}" not in log:
    res("FAIL", "end", f"no end marker (QEMU exit {rc}; 124 = killed by the timeout)")
faults = [l for l in log.splitlines() if re.search(r"DMAR.*(fault|\[DMA (Read|Write))", l, re.I)]
if faults:
    res("FAIL", "iommu", f"{len(faults)} DMAR fault line(s), first: {faults[0].strip()}")
if "vtd_iommu_translate" in err:
    res("FAIL", "iommu", "vtd_iommu_translate in QEMU's stderr: a DMA outside the IOMMU maps")
oops = [l for l in log.splitlines() if re.search(r"(BUG:|Oops|Kernel panic|general protection)", l)]
if oops:
    res("FAIL", "kernel", f"guest kernel: {oops[0].strip()}")
qemu_errs = [l for l in err.splitlines() if l.strip() and "terminating on signal" not in l]
if qemu_errs and rc not in ("0",):
    res("FAIL", "qemu", f"QEMU exit {rc}: {qemu_errs[0].strip()}")
print("\n".join(out))
EOF
}

# check_crash DIR: on the host, rebuild the images a power cut could have left from each
# controller's write log, and check recovery, fsck and the journal mode's guarantees.
check_crash() {
  local d=$1 mode
  for mode in $CRASH_MODES; do
    if [ ! -s "$d/$mode.log" ]; then
      printf 'FAIL\tcrash\tcrash-check:%s\tno write log\n' "$mode" >>"$RUN/results.tsv"
      continue
    fi
    if "$BENCH" crashlog check --log "$d/$mode.log" --base "$d/$mode.base.img" \
      --mode "$mode" --seed "$CRASH_SEED" --txns "$CRASH_TXNS" --json \
      >"$d/check-$mode.json" 2>"$d/check-$mode.err"; then
      printf 'PASS\tcrash\tcrash-check:%s\t%s\n' "$mode" \
        "$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["summary"])' \
          "$d/check-$mode.json")" >>"$RUN/results.tsv"
    else
      printf 'FAIL\tcrash\tcrash-check:%s\t%s\n' "$mode" \
        "$(tail -n 3 "$d/check-$mode.err" | tr '\n' ' ')" >>"$RUN/results.tsv"
    fi
  done
}

# compare: the default guest's userspace-vs-kernel table (IOPS and CPU per I/O).
compare() {
  local log=$RUN/default/serial.log
  [ -e "$log" ] || return 0
  python3 - "$log" <<'EOF'
import json, re, sys
rows = {}
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"@@KEEL JSON (\w+) (.+?) (\{.*\})\s*$", line.replace("\r", ""))
    if m:
        try:
            rows[(m.group(1), m.group(2))] = json.loads(m.group(3))
        except ValueError:
            pass
cmp = rows.pop(("compare", "report"), None)
if not rows and not cmp:
    sys.exit(0)
print("default guest, 4 KiB, same emulated controller (TCG: compare ratios, not absolutes)")
print(f"{'run':<30}{'nvme IOPS':>11}{'kernel IOPS':>13}{'ratio':>7}"
      f"{'nvme cpu us/op':>16}{'kernel cpu us/op':>18}{'ratio':>7}")
keys = sorted({k[1] for k in rows}, key=lambda s: (s.startswith("engine"), s))
def fmt(x, spec):
    return "-" if x is None else format(x, spec)
for k in keys:
    u, c = rows.get(("nvme", k)), rows.get(("kernel", k))
    ui, ci = (u or {}).get("iops"), (c or {}).get("iops")
    uc, cc = (u or {}).get("cpu_us_per_op"), (c or {}).get("cpu_us_per_op")
    ri = f"{ui / ci:.2f}" if ui and ci else "-"
    rc = f"{uc / cc:.2f}" if uc and cc else "-"
    print(f"{k:<30}{fmt(ui, ',.0f'):>11}{fmt(ci, ',.0f'):>13}{ri:>7}"
          f"{fmt(uc, '.1f'):>16}{fmt(cc, '.1f'):>18}{rc:>7}")
if cmp:
    print(f"keel-bench compare --pci (randwrite qd {cmp['qd']}, one run, the controller moved "
          "between userspace and the kernel by compare)")
    for r in cmp["rows"]:
        print(f"  {r['contender']:<28}{r['path']:<7}{fmt(r['iops'], ',.0f'):>11}"
              f"  ÷ kernel {fmt(r.get('ratio_to_kernel'), '.2f')}")
EOF
}

cleanup() {
  local rc=$?
  # Only the QEMU this script started (through its timeout wrapper).
  if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
    kill "$QEMU_PID" 2>/dev/null || true
    pkill -P "$QEMU_PID" 2>/dev/null || true
  fi
  if [ "${KEEL_VM_KEEP:-0}" = 1 ]; then
    say "logs kept in $RUN"
  else
    rm -rf "$RUN"
  fi
  exit "$rc"
}

main() {
  parse_args "$@"
  check_can_run
  # shellcheck source=vendor-scripts/deps.sh
  command -v cargo >/dev/null || source vendor-scripts/deps.sh
  mkdir -p "$CACHE"
  RUN=$(mktemp -d "$VM/run.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  local t0
  t0=$(date +%s)
  install_host_deps
  prepare_kernel
  prepare_userland
  build_binaries
  if [ "$NVME_DRIVER" = no ] && [ $pre_driver = 0 ]; then
    say "keel-bench has no --driver nvme yet: its runs fail (use --pre-driver to skip them)"
  fi
  build_common_initrd
  : >"$RUN/results.tsv"
  : >"$RUN/times.tsv"
  say "prepared in $(($(date +%s) - t0)) s; guests: ${guests[*]}"
  for g in "${guests[@]}"; do
    say "guest $g"
    run_guest "$g"
    awk -F'\t' -v g="$g" '$2 == g { printf "%-4s %s/%s  %s\n", $1, $2, $3, $4 }' "$RUN/results.tsv"
    awk -F'\t' -v g="$g" '$1 == g { printf "     %s: %s s (QEMU exit %s)\n", $1, $2, $3 }' "$RUN/times.tsv"
    if grep -q "^FAIL	$g	" "$RUN/results.tsv"; then
      echo "---- $g: last lines of the serial log"
      tail -n 30 "$RUN/$g/serial.log" 2>/dev/null | tr -d '\r' || true
      echo "---- $g: QEMU stderr"
      tail -n 5 "$RUN/$g/qemu.err" 2>/dev/null || true
    fi
  done
  compare
  echo "guests took $(awk -F'\t' '{s += $2} END {printf "%.0f", s}' "$RUN/times.tsv") s; whole run $(($(date +%s) - t0)) s"
  local pass fail skip
  pass=$(grep -c '^PASS' "$RUN/results.tsv" || true)
  fail=$(grep -c '^FAIL' "$RUN/results.tsv" || true)
  skip=$(grep -c '^SKIP' "$RUN/results.tsv" || true)
  [ "$skip" -gt 0 ] && echo "$skip skipped (--pre-driver: the userspace NVMe driver has not landed)"
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
}

main "$@"
