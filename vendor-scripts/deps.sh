#!/usr/bin/env bash
# Installs what Keel's build, tests and benchmarks need on a fresh Debian 12 machine, and
# nothing when it is already there. Sourced or run; safe to run again.
#   KEEL_DEPS_EXTRA="pkg ..."  more Debian packages to install.
set -euo pipefail

need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v fio >/dev/null || need+=(fio)
command -v python3 >/dev/null || need+=(python3)
# The C API's tests (vendor-scripts/c-tests.sh).
command -v g++ >/dev/null || need+=(g++)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v valgrind >/dev/null || need+=(valgrind)
for p in ${KEEL_DEPS_EXTRA:-}; do need+=("$p"); done

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "keel deps: missing ${need[*]}; run as root (or install them) first" >&2
    exit 1
  fi
  echo "keel deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
    [ -x "$d/cargo" ] && export PATH="$d:$PATH"
  done
fi
if ! command -v cargo >/dev/null; then
  echo "keel deps: no Rust toolchain (cargo) found; Keel needs Rust >= 1.82 (rustup)" >&2
  exit 1
fi
