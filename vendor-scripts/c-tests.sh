#!/usr/bin/env bash
# The C API's tests: builds libkeel (debug), checks that engine/include/keel.h is what
# cbindgen generates now, installs libkeel into a temporary prefix (so keel.pc and the
# install steps of docs/c-api.md are exercised), compiles the header alone as C11 and as
# C++17, the C examples and the C test suite with gcc -std=c11 -Wall -Wextra -Werror, runs
# the examples and the tests under valgrind (errors and leaks fail), and links the tests
# against the static library too. Exits non-zero on any failure.
#
#   bash vendor-scripts/c-tests.sh
#   env KEEL_C_TMP=DIR   where temp files go (default /var/tmp: O_DIRECT needs a file
#                        system that supports it, which tmpfs does only from Linux 6.6)
set -euo pipefail
cd "$(dirname "$0")/.."
source vendor-scripts/deps.sh

tmp=$(mktemp -d "${KEEL_C_TMP:-/var/tmp}/keel-c-tests.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
bin=$tmp/bin
mkdir -p "$bin"
export TMPDIR=$tmp # test_keel's temp files

echo "== c-tests: header is fresh"
bash vendor-scripts/gen-header.sh --check

echo "== c-tests: build and install libkeel (debug) into a temp prefix"
KEEL_PROFILE=debug bash vendor-scripts/install-c.sh "$prefix"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
cflags=$(pkg-config --cflags keel)
libs="$(pkg-config --libs keel) -Wl,-rpath,$prefix/lib"
warn=(-Wall -Wextra -Werror)

echo "== c-tests: keel.h compiles on its own as C11 and C++17"
gcc -std=c11 "${warn[@]}" -pedantic -fsyntax-only -x c "$prefix/include/keel.h"
g++ -std=c++17 "${warn[@]}" -pedantic -fsyntax-only -x c++ "$prefix/include/keel.h"
# shellcheck disable=SC2086 # cflags and libs are lists of words
g++ -std=c++17 "${warn[@]}" -pedantic $cflags engine/tests/c/cxx_header.cpp $libs \
  -o "$bin/cxx_header"
"$bin/cxx_header"

echo "== c-tests: compile the examples and the tests"
for src in engine/examples/c/hello.c engine/examples/c/async.c engine/tests/c/test_keel.c; do
  # shellcheck disable=SC2086
  gcc -std=c11 "${warn[@]}" -g $cflags "$src" $libs -o "$bin/$(basename "$src" .c)"
done
# The same tests against the static library.
# shellcheck disable=SC2086
gcc -std=c11 "${warn[@]}" -g $cflags engine/tests/c/test_keel.c "$prefix/lib/libkeel.a" \
  -lpthread -ldl -lm -lrt -lutil -lgcc_s -o "$bin/test_keel_static"

vg=(valgrind -q --error-exitcode=1 --leak-check=full)
echo "== c-tests: examples under valgrind"
"${vg[@]}" "$bin/hello"
"${vg[@]}" "$bin/hello" "$tmp/hello.keel"
"${vg[@]}" "$bin/async" 300

echo "== c-tests: test_keel (static library)"
"$bin/test_keel_static" > "$tmp/static.log" || { cat "$tmp/static.log"; exit 1; }
tail -n 1 "$tmp/static.log"

echo "== c-tests: test_keel under valgrind"
"${vg[@]}" "$bin/test_keel"
echo "== c-tests: all passed"
