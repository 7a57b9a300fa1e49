#!/usr/bin/env bash
# Keel's fio external ioengine (bench/fio/keel_fio.c): builds it against the source of the
# installed fio, runs its verify jobs, or its IOPS jobs.
#
#   bash vendor-scripts/fio-engine.sh build [--skip-if-unavailable]
#   bash vendor-scripts/fio-engine.sh test  [--skip-if-unavailable]
#   bash vendor-scripts/fio-engine.sh perf  [SECONDS]        (default 10 s per job)
#
# build: fetches the Debian source package of the installed fio (apt-get source; adds a
#        deb-src entry for this Debian release in /etc/apt/sources.list.d/keel-deb-src.sources
#        when apt has none), refuses if `fio --version` is not that source's version (an
#        external engine sees fio's structs, which change between versions), runs fio's
#        ./configure for config-host.h, installs libkeel (release) into target/fio/prefix
#        and compiles target/fio/keel-fio.so. Nothing of fio's is kept outside target/fio.
# test:  build, then bench/fio/keel-verify.fio (crc32c verify: sim, psync, uring; both
#        journal modes; 4 KiB and mixed block sizes) and bench/fio/keel-trim.fio (trimmed
#        ranges read as zeroes), and checks that a verify expected to fail does fail. Exits
#        non-zero on any fio error or verify failure; ends with "fio-engine: N passed, N
#        failed".
# perf:  build, then bench/fio/keel-perf.fio; prints IOPS per job.
#
# --skip-if-unavailable: where the source cannot be fetched (not root, no apt-get) and no
# earlier build left it in target/fio, say so and exit 0 instead of failing. Under CI
# (CI=true) nothing is skipped.
#
#   env KEEL_FIO_DIR=DIR   where file-backed stores go (default a temp dir under /var/tmp:
#                          O_DIRECT needs a file system that supports it)
set -euo pipefail
cd "$(dirname "$0")/.."

start=$SECONDS
say() { echo "fio-engine: [$((SECONDS - start)) s] $*" >&2; }
die() {
  say "$*"
  exit 1
}

cmd=${1:-}
shift || true
skip_if_unavailable=false
perf_seconds=10
for arg in "$@"; do
  case "$arg" in
    --skip-if-unavailable) skip_if_unavailable=true ;;
    [0-9]*) perf_seconds=$arg ;;
    *) die "unknown argument $arg (usage: fio-engine.sh build|test|perf [--skip-if-unavailable])" ;;
  esac
done
case "$cmd" in
  build | test | perf) ;;
  *) die "usage: fio-engine.sh build|test|perf [--skip-if-unavailable] [SECONDS]" ;;
esac

root=$(pwd)
out=$root/target/fio
engine=$out/keel-fio.so
mkdir -p "$out"

# The fio source tree of an earlier build, if it is the installed fio's (fio's version and
# the Debian package's, whose patches may change the headers).
cached_src() {
  command -v fio >/dev/null || return 1
  [ -f "$out/src/config-host.h" ] &&
    [ "$(cat "$out/src.version" 2>/dev/null)" = "$(fio --version)" ] &&
    [ "$(cat "$out/src.debian-version" 2>/dev/null)" = "$(dpkg-query -W -f='${Version}' fio 2>/dev/null)" ]
}

# Where the source cannot be had, skip (when asked to) or fail.
unavailable=""
if ! cached_src; then
  if [ "$(id -u)" -ne 0 ]; then
    unavailable="not root: fetching fio's source (apt-get source, a deb-src entry) needs root"
  elif ! command -v apt-get >/dev/null; then
    unavailable="no apt-get: fio's source comes from Debian's source package"
  fi
fi
if [ -n "$unavailable" ]; then
  if $skip_if_unavailable && [ "${CI:-}" != true ]; then
    say "SKIP: $unavailable (the fio engine is built and tested as root on Debian, as CI does)"
    exit 0
  fi
  die "$unavailable"
fi

source vendor-scripts/deps.sh

# fio's Debian version, without epoch or Debian revision: 3.33-3 -> 3.33.
upstream_version() {
  local v=${1#*:}
  echo "${v%-*}"
}

# Makes sure apt knows the source package of fio $1: adds deb-src for this release when no
# deb-src entry exists, and updates the package lists of that entry.
apt_source_ready() {
  local pkgver=$1 list=/etc/apt/sources.list.d/keel-deb-src.sources codename
  if apt-get source --print-uris -qq "fio=$pkgver" >/dev/null 2>&1; then
    return 0
  fi
  if ! grep -rqsE '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' \
    /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # shellcheck disable=SC1091 # os-release is the system's
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release: add a deb-src entry for fio by hand"
    say "adding deb-src for Debian $codename in $list"
    cat >"$list" <<EOF
# Added by Keel's vendor-scripts/fio-engine.sh: Debian source packages (fio's headers).
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $codename-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  say "apt-get update (source lists)"
  if [ -f "$list" ]; then
    # Only this file's lists: quicker, and leaves the other lists as they are.
    apt-get update -qq -o Dir::Etc::sourcelist="$list" -o Dir::Etc::sourceparts=- \
      -o APT::Get::List-Cleanup=0 >/dev/null
  else
    apt-get update -qq >/dev/null
  fi
  apt-get source --print-uris -qq "fio=$pkgver" >/dev/null ||
    die "apt has no source package fio=$pkgver (the installed fio's version)"
}

# Fetches fio's source into $out/src and configures it (config-host.h).
fetch_source() {
  local pkgver fio_ver src_ver work dir
  fio_ver=$(fio --version)
  pkgver=$(dpkg-query -W -f='${Version}' fio 2>/dev/null) ||
    die "fio is not Debian's package (dpkg knows no fio); install it with apt-get install fio"
  if [ "$fio_ver" != "fio-$(upstream_version "$pkgver")" ]; then
    die "$(command -v fio) says $fio_ver but Debian's fio package is $pkgver: an external engine must be built against the source of the fio that loads it; put Debian's fio first in PATH or reinstall it"
  fi
  if cached_src; then
    return 0
  fi
  command -v dpkg-source >/dev/null || {
    say "installing dpkg-dev (apt-get source unpacks with dpkg-source)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
  }
  apt_source_ready "$pkgver"
  work=$out/fetch
  rm -rf "$work" "$out/src" "$out/src.version" "$out/src.debian-version"
  mkdir -p "$work"
  say "apt-get source fio=$pkgver"
  (cd "$work" && apt-get source -qq -o APT::Sandbox::User=root "fio=$pkgver" >/dev/null)
  dir=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'fio-*' | head -n 1)
  [ -n "$dir" ] || die "apt-get source left no fio-* directory in $work"
  src_ver=$(sed -n 's/^DEF_VER=//p' "$dir/FIO-VERSION-GEN")
  [ "$src_ver" = "$fio_ver" ] ||
    die "fio's source says $src_ver, the installed fio $fio_ver: refusing to build against other headers"
  say "configure fio $src_ver (config-host.h)"
  # Debian's rules add --enable-gfio --enable-libnbd: a GUI binary and one engine, which
  # need GTK and libnbd and change nothing an external engine sees.
  (cd "$dir" && ./configure --disable-native --prefix=/usr >"$out/configure.log" 2>&1) || {
    tail -n 20 "$out/configure.log" >&2
    die "fio's ./configure failed (log: $out/configure.log)"
  }
  mv "$dir" "$out/src"
  rm -rf "$work"
  echo "$fio_ver" >"$out/src.version"
  echo "$pkgver" >"$out/src.debian-version"
}

build() {
  fetch_source
  say "libkeel (release) into $out/prefix"
  bash vendor-scripts/install-c.sh "$out/prefix" >/dev/null
  local cflags libs
  cflags=$(PKG_CONFIG_PATH=$out/prefix/lib/pkgconfig pkg-config --cflags keel)
  libs="$(PKG_CONFIG_PATH=$out/prefix/lib/pkgconfig pkg-config --libs keel) -Wl,-rpath,$out/prefix/lib"
  say "compile $engine"
  # fio's own flags (its Makefile and configure): _GNU_SOURCE and 64-bit file offsets, and
  # config-host.h before everything, as every fio source file has it.
  # shellcheck disable=SC2086 # cflags and libs are lists of words
  gcc -std=gnu11 -O2 -g -Wall -Wextra -Werror -shared -fPIC \
    -D_GNU_SOURCE -D_LARGEFILE_SOURCE -D_FILE_OFFSET_BITS=64 \
    -DKEEL_FIO_BUILT_FOR="\"$(cat "$out/src.version")\"" \
    -include "$out/src/config-host.h" -I "$out/src" $cflags \
    bench/fio/keel_fio.c $libs -o "$engine"
  say "built $engine for $(cat "$out/src.version")"
}

# A temp dir for file-backed stores, removed at exit.
store_dir() {
  if [ -n "${KEEL_FIO_DIR:-}" ]; then
    mkdir -p "$KEEL_FIO_DIR"
    echo "$KEEL_FIO_DIR"
  else
    mktemp -d /var/tmp/keel-fio.XXXXXX
  fi
}

# Runs fio on job file $1, its report as JSON into $2 (the engine's and fio's error
# messages still go to stderr); returns fio's exit status.
run_fio() {
  local job=$1 json=$2 rc=0
  KEEL_FIO_ENGINE=$engine fio --output-format=json --output="$json" "$job" || rc=$?
  return "$rc"
}

# Prints one line per job of fio's JSON report $1 (status, IOPS, bandwidth, bytes) and
# appends "PASSED FAILED" (jobs without and with an error) to file $2; fails if a job failed.
summarize() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
path, counts = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        text = f.read()
    # fio may print notes before the JSON document.
    data = json.loads(text[text.index("{"):])
except (OSError, ValueError) as e:
    print(f"fio-engine: no fio JSON output in {path}: {e}")
    sys.exit(2)
failed = 0
for job in data["jobs"]:
    r, w, t = job["read"], job["write"], job["trim"]
    err = job["error"]
    failed += err != 0
    parts = []
    for name, d in (("read", r), ("write", w), ("trim", t)):
        if d["io_bytes"]:
            parts.append(f'{name} {d["iops"]:.0f} IOPS {d["bw"] / 1024:.1f} MiB/s ({d["io_bytes"] >> 20} MiB)')
    status = "ok" if err == 0 else f"FAILED err={err}"
    print(f'  {job["jobname"]:<34} {status:<8} ' + ", ".join(parts))
with open(counts, "a") as f:
    print(len(data["jobs"]) - failed, failed, file=f)
sys.exit(1 if failed else 0)
EOF
}

fio_test() {
  local dir fails=0 rc passed failed counts
  dir=$(store_dir)
  # shellcheck disable=SC2064 # expand now: the dir is fixed
  [ -n "${KEEL_FIO_DIR:-}" ] || trap "rm -rf '$dir'" EXIT
  export KEEL_FIO_DIR=$dir
  counts=$dir/counts
  : >"$counts"
  for job in bench/fio/keel-verify.fio bench/fio/keel-trim.fio; do
    say "fio $job"
    rc=0
    run_fio "$job" "$dir/$(basename "$job" .fio).json" || rc=$?
    summarize "$dir/$(basename "$job" .fio).json" "$counts" || fails=$((fails + 1))
    [ "$rc" -eq 0 ] || {
      say "fio exited $rc on $job"
      fails=$((fails + 1))
    }
  done
  # keel-trim.fio left its store trimmed: verifying the bytes it held before must fail, or
  # the verify jobs above prove nothing.
  say "fio: verifying 0xab on the trimmed store must fail"
  rc=0
  KEEL_FIO_ENGINE=$engine fio --name=must-fail --ioengine=external:"$engine" \
    --keel_dev=psync --keel_path="$dir/keel-trim.img" --keel_mkfs=0 --size=16m --bs=64k \
    --rw=write --verify=pattern --verify_pattern=0xab --verify_only=1 --verify_fatal=1 \
    --verify_state_save=0 \
    >"$dir/must-fail.log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    cat "$dir/must-fail.log" >&2
    say "FAILED: verification passed on data that is not there"
    fails=$((fails + 1))
    echo "0 1" >>"$counts"
  else
    say "ok: fio reported the mismatch ($(grep -m1 -o 'verify failed at[^(]*' "$dir/must-fail.log" || echo "exit $rc"))"
    echo "1 0" >>"$counts"
  fi
  read -r passed failed < <(awk '{p += $1; f += $2} END {print p + 0, f + 0}' "$counts")
  say "test done"
  echo "fio-engine: $passed passed, $failed failed"
  [ "$fails" -eq 0 ] || die "$fails fio check(s) failed"
}

fio_perf() {
  local dir rc=0
  dir=$(store_dir)
  # shellcheck disable=SC2064
  [ -n "${KEEL_FIO_DIR:-}" ] || trap "rm -rf '$dir'" EXIT
  export KEEL_FIO_DIR=$dir KEEL_FIO_SECONDS=$perf_seconds
  say "fio bench/fio/keel-perf.fio (${perf_seconds} s per timed job)"
  run_fio bench/fio/keel-perf.fio "$dir/keel-perf.json" || rc=$?
  summarize "$dir/keel-perf.json" /dev/null || rc=1
  say "perf done"
  return "$rc"
}

build
case "$cmd" in
  test) fio_test ;;
  perf) fio_perf ;;
esac
