#!/bin/sh
# /init of Keel's throw-away test guests (vendor-scripts/test-vm.sh builds the initramfs).
#
# Runs under busybox sh, as PID 1, with nothing mounted. /keel/guest.conf (written by the
# host for this guest) names the steps to run; each step prints exactly one result marker
#
#   @@KEEL RESULT <step> PASS|FAIL|SKIP <message>
#
# and benchmarks print `@@KEEL JSON <label> <one line of JSON>`. The last line is
# `@@KEEL END <guest>`: a log without it means the guest died or timed out. The host reads
# all of this from the serial console; nothing else leaves the guest (the crash step's
# writes reach the host through the disk image and QEMU's write log).
export PATH=/bin:/sbin
/bin/busybox --install -s /bin

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/hugepages /tmp
mount -t hugetlbfs none /dev/hugepages
mount -t tmpfs tmp /tmp
# Kernel messages above warnings go to the console anyway; keep the rest quiet.
echo 4 >/proc/sys/kernel/printk

# shellcheck source=/dev/null
. /keel/guest.conf

marker() { echo "@@KEEL $*"; }
result() { marker RESULT "$@"; }

# nvme_devices: PCI addresses of NVMe-class devices (class 0x010802), in bus order.
nvme_devices() {
  for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/class")" = 0x010802 ] && basename "$d"
  done
}

# insmod_list FILE: loads the modules FILE names, in order (the host computed the order
# from modules.dep: dependencies first). An already loaded module is not an error.
insmod_list() {
  while read -r ko; do
    [ -n "$ko" ] || continue
    name=$(basename "$ko" .ko | tr - _)
    grep -q "^$name " /proc/modules && continue
    insmod "/lib/modules/$KVER/$ko" || return 1
  done <"$1"
}

# run_quiet LOG CMD...: runs CMD with its output in LOG; on failure shows LOG's tail.
run_quiet() {
  log=$1
  shift
  rc=0
  "$@" >"$log" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] && return 0
  echo "---- $* failed (exit $rc); last lines:"
  tail -n 40 "$log"
  echo "----"
  return "$rc"
}

# The PCI address the userspace driver should use: `auto` unless the step needs one.
PCI=auto

# step_vfio: binds the first NVMe controller to vfio-pci (insmod order from TEST-VM.md).
step_vfio() {
  if ! insmod_list /keel/modules-vfio.list; then
    result vfio FAIL "could not load the vfio modules"
    return
  fi
  dev=$(nvme_devices | head -n 1)
  if [ -z "$dev" ]; then
    result vfio FAIL "no NVMe controller in the guest"
    return
  fi
  echo vfio-pci >"/sys/bus/pci/devices/$dev/driver_override"
  echo "$dev" >/sys/bus/pci/drivers_probe
  drv=$(basename "$(readlink "/sys/bus/pci/devices/$dev/driver" 2>/dev/null || echo none)")
  group=$(basename "$(readlink "/sys/bus/pci/devices/$dev/iommu_group" 2>/dev/null || echo none)")
  if [ "$drv" = vfio-pci ] && [ -e "/dev/vfio/$group" ]; then
    PCI=$dev
    result vfio PASS "$dev bound to vfio-pci, /dev/vfio/$group"
  else
    result vfio FAIL "$dev: driver $drv, iommu group $group"
  fi
}

# step_tests: every test binary in /keel/tests, with KEEL_NVME_PCI set; one result each.
step_tests() {
  for t in /keel/tests/*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    start=$(date +%s)
    if KEEL_NVME_PCI=$PCI run_quiet "/tmp/$name.log" "$t" --test-threads=1; then
      verdict=PASS
    else
      verdict=FAIL
    fi
    summary=$(grep '^test result:' "/tmp/$name.log" | tail -n 1)
    if grep -q 'skipped: KEEL_NVME_PCI not set' "/tmp/$name.log"; then
      verdict=FAIL
      summary="$summary (skipped although KEEL_NVME_PCI=$PCI)"
    fi
    result "test:$name" "$verdict" "$summary ($(($(date +%s) - start)) s)"
  done
}

# bench LABEL ARGS...: one keel-bench run with --json; prints its JSON as a marker.
bench() {
  label=$1
  shift
  if run_quiet "/tmp/bench.log" /keel/keel-bench "$@" --json; then
    marker JSON "$label" "$(grep '^{' /tmp/bench.log | tail -n 1)"
    return 0
  fi
  return 1
}

# bench_set PREFIX DEVICE-ARGS...: 4 KiB randwrite then randread (so reads hit written
# blocks) at QD1 and QD32, then the engine; one result for the set.
bench_set() {
  prefix=$1
  shift
  ok=0
  for wl in randwrite randread; do
    for qd in 1 32; do
      bench "$prefix raw $wl qd$qd" raw "$@" --size "$BENCH_SPAN" --workload "$wl" \
        --bs 4k --qd "$qd" --seconds "$BENCH_SECONDS" || ok=1
    done
  done
  bench "$prefix engine metadata-only qd32" engine "$@" --mode metadata-only \
    --seconds "$BENCH_SECONDS" || ok=1
  return $ok
}

# step_bench_nvme: keel-bench raw and engine on the userspace NVMe driver.
step_bench_nvme() {
  if [ "$NVME_DRIVER" != yes ]; then
    result bench-nvme "$MISSING_VERDICT" "keel-bench has no --driver nvme (drivers/src/nvme not landed)"
    return
  fi
  if bench_set nvme --driver nvme --pci "$PCI"; then
    result bench-nvme PASS "raw and engine on --driver nvme --pci $PCI"
  else
    result bench-nvme FAIL "a keel-bench run on --driver nvme failed"
  fi
}

# kernel_nvme: loads the kernel's nvme driver (after the userspace steps: it takes every
# controller) and waits for the namespace.
kernel_nvme() {
  insmod_list /keel/modules-nvme.list || return 1
  i=0
  while [ ! -b /dev/nvme0n1 ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  [ -b /dev/nvme0n1 ]
}

# step_bench_kernel: the same runs through the guest kernel's nvme driver and io_uring.
step_bench_kernel() {
  if ! kernel_nvme; then
    result bench-kernel FAIL "kernel nvme driver did not bring up /dev/nvme0n1"
    return
  fi
  if bench_set kernel --driver uring --path /dev/nvme0n1; then
    result bench-kernel PASS "raw and engine on io_uring, /dev/nvme0n1 (kernel nvme driver)"
  else
    result bench-kernel FAIL "a keel-bench run on io_uring /dev/nvme0n1 failed"
  fi
}

# step_compare: `keel-bench compare --pci` on the first controller: Keel raw and engine on
# the userspace driver against the same on the guest kernel's nvme driver and io_uring,
# compare itself moving the controller between the two before each run. Passes when every
# nvme row has its ratio to the kernel row.
step_compare() {
  if [ "$NVME_DRIVER" != yes ]; then
    result compare "$MISSING_VERDICT" "keel-bench has no --driver nvme (drivers/src/nvme not landed)"
    return
  fi
  if ! insmod_list /keel/modules-nvme.list; then
    result compare FAIL "could not load the nvme modules"
    return
  fi
  dev=$(nvme_devices | head -n 1)
  if ! run_quiet /tmp/compare.log /keel/keel-bench compare --pci "$dev" --paths nvme,uring \
    --size "$BENCH_SPAN" --seconds "$BENCH_SECONDS" --rounds 1 --no-fio --json; then
    result compare FAIL "keel-bench compare --pci $dev failed"
    return
  fi
  json=$(grep '^{' /tmp/compare.log | tail -n 1)
  marker JSON compare report "$json"
  # Four nvme rows (keel raw, raw group-flush, engine metadata-only, engine full), each
  # with its ratio to the same contender on the kernel's io_uring.
  ratios=$(echo "$json" | grep -o '"ratio_to_kernel":[0-9]' | wc -l)
  if [ "$ratios" -eq 4 ]; then
    result compare PASS "compare --pci $dev: nvme and kernel uring on one controller, 4 ratios (now on $(basename "$(readlink "/sys/bus/pci/devices/$dev/driver" 2>/dev/null || echo none)"))"
  else
    result compare FAIL "compare --pci $dev reported $ratios of 4 nvme ÷ kernel ratios"
  fi
}

# step_setup: vendor-scripts/setup.sh config / status / reset on the emulated controller,
# with the kernel nvme driver bound first (as on a real host), then DRIVER_OVERRIDE=none.
step_setup() {
  if ! kernel_nvme || ! insmod_list /keel/modules-vfio.list; then
    result setup FAIL "could not load the nvme and vfio modules"
    return
  fi
  dev=$(nvme_devices | head -n 1)
  drv() { basename "$(readlink "/sys/bus/pci/devices/$dev/driver" 2>/dev/null || echo none)"; }
  s=/keel/setup.sh
  fails=""
  # The guest has 1 GiB: ask for 256 MiB of hugepages, not the default 2 GiB.
  export HUGEMEM=256
  run_quiet /tmp/setup.log bash $s config || fails="$fails config"
  [ "$(drv)" = vfio-pci ] || fails="$fails config:driver=$(drv)"
  grep -q "^HugePages_Total: *0" /proc/meminfo && fails="$fails hugepages"
  run_quiet /tmp/setup.log bash $s status || fails="$fails status"
  grep -q "$dev.*vfio-pci" /tmp/setup.log || fails="$fails status:no-$dev"
  cat /tmp/setup.log
  run_quiet /tmp/setup.log bash $s reset || fails="$fails reset"
  i=0
  while [ ! -b /dev/nvme0n1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  [ "$(drv)" = nvme ] || fails="$fails reset:driver=$(drv)"
  [ -b /dev/nvme0n1 ] || fails="$fails reset:no-nvme0n1"
  # A namespace in use must be refused. The guest has no file system modules, so "in use"
  # is an active swap (built into the kernel), which setup.sh checks like a mount.
  if mkswap /dev/nvme0n1 >/dev/null 2>&1 && swapon /dev/nvme0n1; then
    if bash $s config >/tmp/setup.log 2>&1 || [ "$(drv)" != nvme ]; then
      fails="$fails in-use-not-refused"
    fi
    swapoff /dev/nvme0n1
  else
    fails="$fails could-not-swapon"
  fi
  DRIVER_OVERRIDE=none run_quiet /tmp/setup.log bash $s config || fails="$fails config:none"
  [ "$(drv)" = none ] || fails="$fails none:driver=$(drv)"
  # Unbound behind this guest's IOMMU, physical addresses would fault: the driver must
  # refuse the sysfs path and say to bind vfio-pci, touching nothing.
  if /keel/keel-bench raw --driver nvme --pci "$dev" --seconds 0.1 >/tmp/iommu.log 2>&1 ||
    ! grep -q "behind an IOMMU" /tmp/iommu.log; then
    fails="$fails unbound-behind-iommu-not-refused"
  fi
  # Then bind vfio-pci again, so the tests that follow run the VFIO path.
  run_quiet /tmp/setup.log bash $s config || fails="$fails config:again"
  [ "$(drv)" = vfio-pci ] || fails="$fails again:driver=$(drv)"
  if [ -z "$fails" ]; then
    PCI=$dev
    result setup PASS "config (vfio-pci), status, reset (nvme), swap in use refused, DRIVER_OVERRIDE=none refused behind the IOMMU, config again"
  else
    result setup FAIL "failed:$fails"
  fi
}

# step_crash: the crash workload on each logged controller (serial kc-MODE: NVMe serials have 20 bytes), through
# the userspace driver when there is one, else through the kernel's nvme driver.
step_crash() {
  if [ "$NVME_DRIVER" != yes ] || [ "$CRASH_DRIVER" = uring ]; then
    if ! kernel_nvme; then
      result crash-guest FAIL "kernel nvme driver did not come up"
      return
    fi
  fi
  for mode in $CRASH_MODES; do
    args=""
    if [ "$CRASH_DRIVER" = uring ]; then
      blk=""
      for c in /sys/class/nvme/nvme*; do
        [ "$(tr -d ' ' <"$c/serial")" = "kc-$mode" ] && blk=/dev/$(basename "$c")n1
      done
      args="--driver uring --path $blk"
    else
      pci=""
      for d in $(nvme_devices); do
        # The serial is in Identify Controller; the harness gives each controller its own
        # slot instead: 00:04.0 is full, 00:05.0 metadata-only.
        case "$mode:$d" in full:*04.0 | metadata-only:*05.0) pci=$d ;; esac
      done
      args="--driver nvme --pci $pci"
    fi
    # shellcheck disable=SC2086 # args is a list of words
    if run_quiet "/tmp/crash-$mode.log" /keel/keel-bench crashlog run $args --mode "$mode" \
      --seed "$CRASH_SEED" --txns "$CRASH_TXNS" --json; then
      marker JSON "crash $mode" "$(grep '^{' "/tmp/crash-$mode.log" | tail -n 1)"
      result "crash-guest:$mode" PASS "workload done ($args)"
    else
      result "crash-guest:$mode" FAIL "crashlog run failed ($args)"
    fi
  done
}

marker START "$GUEST" "$(uname -r)"
for step in $STEPS; do
  marker STEP "$step"
  "step_$(echo "$step" | tr - _)"
done
sync
marker END "$GUEST"
poweroff -f
