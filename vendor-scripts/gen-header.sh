#!/usr/bin/env bash
# Generates engine/include/keel.h, the C header of libkeel, from engine/src/ffi/ with
# cbindgen (engine/cbindgen.toml). The header is checked in; regenerate it after changing
# anything in engine/src/ffi/ that C sees (a function, a struct, a constant, a doc comment).
#
#   bash vendor-scripts/gen-header.sh          rewrite engine/include/keel.h
#   bash vendor-scripts/gen-header.sh --check  exit 1 with a diff if the checked-in header
#                                              is stale (vendor-scripts/c-tests.sh runs this)
#
# cbindgen is pinned (its output changes between versions): the right version is installed
# with `cargo install --locked` when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CBINDGEN_VERSION=0.29.4
header=engine/include/keel.h

for d in "${CARGO_HOME:-$HOME/.cargo}/bin" /usr/local/cargo/bin; do
  case ":$PATH:" in *":$d:"*) ;; *) [ -d "$d" ] && PATH="$d:$PATH" ;; esac
done
if [ "$(cbindgen --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]; then
  echo "gen-header: installing cbindgen $CBINDGEN_VERSION" >&2
  cargo install --locked --quiet --version "$CBINDGEN_VERSION" cbindgen
fi

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cbindgen --quiet --config engine/cbindgen.toml --output "$tmp" engine/src/ffi/mod.rs

if [ "${1:-}" = "--check" ]; then
  if ! diff -u "$header" "$tmp"; then
    echo "gen-header: $header is stale: run bash vendor-scripts/gen-header.sh and commit it" >&2
    exit 1
  fi
  echo "gen-header: $header is up to date"
else
  mkdir -p "$(dirname "$header")"
  cp "$tmp" "$header"
  echo "gen-header: wrote $header"
fi
