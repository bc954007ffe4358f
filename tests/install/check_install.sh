#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds two consumers against it: C via
# pkg-config, C++ via find_package(uvmem). Both must build and run.
#   check_install.sh <build-dir> <source-dir>
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
pcdir=$(dirname "$(find "$work/prefix" -name uvmem.pc | head -1)")
export PKG_CONFIG_PATH=$pcdir
cc -std=c11 -Wall -Werror "$src/tests/install/consumer.c" -o "$work/c_consumer" \
  $(pkg-config --cflags --libs uvmem)
"$work/c_consumer"
cmake -S "$src/tests/install" -B "$work/cxx" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release > "$work/configure.log"
cmake --build "$work/cxx" > "$work/build.log"
"$work/cxx/consumer"
