#!/usr/bin/env bash
# Prepares a host for Keel's userspace NVMe driver, in the shape of SPDK's scripts/setup.sh:
#
#   bash vendor-scripts/setup.sh config   reserve hugepages, mount hugetlbfs, and take the
#                                         NVMe controllers from the kernel: bind them to
#                                         vfio-pci, or leave them unbound
#   bash vendor-scripts/setup.sh reset    give the controllers back to the kernel's nvme
#   bash vendor-scripts/setup.sh status   hugepages, and each NVMe controller with its
#                                         driver, NUMA node and block devices
#
#   env HUGEMEM (2048)       MiB of 2 MiB hugepages to reserve (config)
#       PCI_ALLOWED ("")     space-separated PCI addresses (0000:00:04.0) to act on;
#                            empty: every NVMe controller (class 010802)
#       DRIVER_OVERRIDE      vfio-pci (default when the host has an IOMMU), or none: unbind
#                            only, for the driver's sysfs + pagemap path (no IOMMU; DMA
#                            addresses are physical)
#
# A controller with a mounted file system, active swap or a holder (LVM, MD, dm) on any of
# its namespaces or partitions is refused: it is left with the kernel and reported.
# Needs root. Exits 1 when any controller could not be handled.
set -euo pipefail

PCI_ROOT=/sys/bus/pci
NVME_CLASS=0x010802

say() { echo "setup.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# nvme_controllers: PCI addresses of the NVMe controllers PCI_ALLOWED lets us touch.
nvme_controllers() {
  local d addr
  for d in "$PCI_ROOT"/devices/*; do
    [ "$(cat "$d/class")" = "$NVME_CLASS" ] || continue
    addr=$(basename "$d")
    if [ -z "${PCI_ALLOWED:-}" ] || [[ " $PCI_ALLOWED " == *" $addr "* ]]; then
      echo "$addr"
    fi
  done
}

# driver_of ADDR: the bound driver's name, or "none".
driver_of() {
  local link=$PCI_ROOT/devices/$1/driver
  if [ -e "$link" ]; then basename "$(readlink -f "$link")"; else echo none; fi
}

# block_devices ADDR: the kernel block devices (namespaces) under the controller.
block_devices() {
  local b
  for b in "$PCI_ROOT"/devices/"$1"/nvme/nvme*/nvme*n*; do
    [ -e "$b" ] && basename "$b"
  done
  return 0
}

# in_use ADDR: prints why the controller is in use (mounts, swap, holders), if it is.
in_use() {
  local ns part name
  for ns in $(block_devices "$1"); do
    for part in /sys/block/"$ns" /sys/block/"$ns"/"$ns"p*; do
      [ -e "$part" ] || continue
      name=$(basename "$part")
      if awk -v dev="/dev/$name" '$1 == dev { found = 1 } END { exit !found }' /proc/mounts; then
        echo "/dev/$name is mounted"
      fi
      if awk -v dev="/dev/$name" 'NR > 1 && $1 == dev { found = 1 } END { exit !found }' \
        /proc/swaps; then
        echo "/dev/$name is an active swap"
      fi
      if [ -n "$(ls -A "$part/holders" 2>/dev/null)" ]; then
        echo "/dev/$name is held by $(find "$part/holders/" -mindepth 1 -printf '%f ')"
      fi
    done
  done
}

# has_iommu: the host has IOMMU groups (VFIO works only with an IOMMU on this kernel).
has_iommu() { [ -n "$(ls -A /sys/kernel/iommu_groups 2>/dev/null)" ]; }

# unbind ADDR: detaches the controller from whatever driver has it.
unbind() {
  local drv
  drv=$(driver_of "$1")
  [ "$drv" = none ] || echo "$1" >"$PCI_ROOT/devices/$1/driver/unbind"
}

# bind ADDR DRIVER: binds through driver_override (so that no other driver grabs it) and
# drivers_probe; DRIVER "none" leaves it unbound.
bind() {
  local addr=$1 drv=$2
  unbind "$addr"
  if [ "$drv" = none ]; then
    # Keep the kernel nvme driver from taking it back on a rescan.
    echo none >"$PCI_ROOT/devices/$addr/driver_override"
    return 0
  fi
  echo "$drv" >"$PCI_ROOT/devices/$addr/driver_override"
  echo "$addr" >"$PCI_ROOT/drivers_probe" 2>/dev/null || true
  [ "$(driver_of "$addr")" = "$drv" ]
}

load_module() {
  [ -d "/sys/module/${1//-/_}" ] || modprobe "$1" 2>/dev/null || [ -d "$PCI_ROOT/drivers/$1" ]
}

reserve_hugepages() {
  local mib=${HUGEMEM:-2048} pages have
  pages=$(((mib + 1) / 2))
  echo "$pages" >/proc/sys/vm/nr_hugepages
  have=$(cat /proc/sys/vm/nr_hugepages)
  if [ "$have" -lt "$pages" ]; then
    say "asked for $pages hugepages ($mib MiB), the kernel gave $have (memory fragmented?)"
  fi
  if ! awk '$3 == "hugetlbfs" && $2 == "/dev/hugepages" { f = 1 } END { exit !f }' \
    /proc/mounts; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs nodev /dev/hugepages
  fi
}

cmd_config() {
  local target=${DRIVER_OVERRIDE:-} addr why failed=0
  if [ -z "$target" ]; then
    if has_iommu; then target=vfio-pci; else target=none; fi
  fi
  if [ "$target" = vfio-pci ]; then
    has_iommu || die "DRIVER_OVERRIDE=vfio-pci, but there is no IOMMU (boot with intel_iommu=on, or use DRIVER_OVERRIDE=none)"
    load_module vfio-pci || die "cannot load the vfio-pci module"
  fi
  reserve_hugepages
  for addr in $(nvme_controllers); do
    if [ "$(driver_of "$addr")" = "$target" ]; then
      echo "$addr: already on $target"
      continue
    fi
    why=$(in_use "$addr")
    if [ -n "$why" ]; then
      say "$addr: left with $(driver_of "$addr"): ${why//$'\n'/; }"
      failed=1
      continue
    fi
    if bind "$addr" "$target"; then
      echo "$addr: $(driver_of "$addr" | sed 's/^none$/unbound/')"
    else
      say "$addr: could not bind to $target (now: $(driver_of "$addr"))"
      failed=1
    fi
  done
  return $failed
}

cmd_reset() {
  local addr failed=0
  load_module nvme || die "cannot load the nvme module"
  for addr in $(nvme_controllers); do
    [ "$(driver_of "$addr")" = nvme ] && continue
    unbind "$addr"
    echo "" >"$PCI_ROOT/devices/$addr/driver_override"
    echo "$addr" >"$PCI_ROOT/drivers_probe" 2>/dev/null || true
    if [ "$(driver_of "$addr")" = nvme ]; then
      echo "$addr: nvme"
    else
      say "$addr: the nvme driver did not take it back"
      failed=1
    fi
  done
  return $failed
}

cmd_status() {
  local addr numa
  awk '/^HugePages_(Total|Free)|^Hugepagesize/' /proc/meminfo
  if awk '$3 == "hugetlbfs" { print "hugetlbfs mounted at " $2; f = 1 } END { exit !f }' \
    /proc/mounts; then :; else echo "hugetlbfs not mounted"; fi
  if has_iommu; then echo "IOMMU: present"; else echo "IOMMU: none"; fi
  printf '%-14s %-10s %-5s %-11s %s\n' ADDRESS DRIVER NUMA VENDOR:DEV "BLOCK DEVICES"
  for addr in $(nvme_controllers); do
    numa=$(cat "$PCI_ROOT/devices/$addr/numa_node" 2>/dev/null || echo -)
    printf '%-14s %-10s %-5s %-11s %s\n' "$addr" "$(driver_of "$addr")" "$numa" \
      "$(sed 's/^0x//' "$PCI_ROOT/devices/$addr/vendor"):$(sed 's/^0x//' "$PCI_ROOT/devices/$addr/device")" \
      "$(block_devices "$addr" | tr '\n' ' ')"
  done
}

main() {
  local cmd=${1:-}
  case "$cmd" in
    -h | --help | help | "")
      usage
      [ -n "$cmd" ]
      return
      ;;
    config | reset | status) ;;
    *) die "unknown command $cmd (config, reset, status; -h for help)" ;;
  esac
  [ "$(id -u)" -eq 0 ] || die "$cmd needs root"
  "cmd_$cmd"
}

main "$@"
