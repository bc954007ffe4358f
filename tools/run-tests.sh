#!/usr/bin/env bash
# The test command (README, .ci/run): installs dependencies, builds Release and runs every
# test, then rebuilds the tests with AddressSanitizer+UndefinedBehaviorSanitizer and with
# ThreadSanitizer and runs them again. Exits non-zero on any failure.
#
#   tools/run-tests.sh [--quick]     --quick: Release build only
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[[ ${1:-} == --quick ]] && quick=1
jobs=$(nproc)

tools/install-deps.sh
# The NUMA guest (tests/numa_guest) must boot here: a missing QEMU or kernel is a failure,
# not a skip.
export UVMEM_REQUIRE_GUEST=1

run_suite() {  # run_suite <build-dir> <extra cmake args...>
  local dir=$1
  shift
  echo "==> configure $dir ($*)"
  cmake -S . -B "$dir" -G Ninja "$@"
  echo "==> build $dir"
  cmake --build "$dir" -j "$jobs"
  echo "==> test $dir"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 600
}

start=$SECONDS
run_suite build -DCMAKE_BUILD_TYPE=Release
if ((!quick)); then
  run_suite build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUVMEM_SANITIZER=address,undefined \
    -DUVMEM_BUILD_BENCH=OFF -DUVMEM_BUILD_EXAMPLES=OFF
  run_suite build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUVMEM_SANITIZER=thread \
    -DUVMEM_BUILD_BENCH=OFF -DUVMEM_BUILD_EXAMPLES=OFF
fi
echo "==> all tests passed in $((SECONDS - start)) s"
