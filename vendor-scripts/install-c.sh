#!/usr/bin/env bash
# Builds libkeel (the C API of keel-engine) and installs it for C and C++ programs:
#
#   bash vendor-scripts/install-c.sh [PREFIX]      PREFIX defaults to /usr/local
#   env KEEL_PROFILE=debug                         install a debug build (default release)
#
# Installs PREFIX/include/keel.h, PREFIX/lib/libkeel.so, PREFIX/lib/libkeel.a and
# PREFIX/lib/pkgconfig/keel.pc (from engine/keel.pc.in). Cargo names the libraries after the
# crate (libkeel_engine.*); they are installed as libkeel.*. See docs/c-api.md.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${1:-/usr/local}
profile=${KEEL_PROFILE:-release}
case "$profile" in
  release) cargo build --locked --release -p keel-engine ;;
  debug) cargo build --locked -p keel-engine ;;
  *) echo "install-c: KEEL_PROFILE must be release or debug, not $profile" >&2; exit 2 ;;
esac
out=${CARGO_TARGET_DIR:-target}/$profile
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

install -d "$prefix/include" "$prefix/lib/pkgconfig"
install -m 644 engine/include/keel.h "$prefix/include/keel.h"
install -m 755 "$out/libkeel_engine.so" "$prefix/lib/libkeel.so"
install -m 644 "$out/libkeel_engine.a" "$prefix/lib/libkeel.a"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" engine/keel.pc.in \
  > "$prefix/lib/pkgconfig/keel.pc"
echo "install-c: libkeel $version ($profile) installed in $prefix"
