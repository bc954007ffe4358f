#!/usr/bin/env bash
# Installs what uvmem needs to build and test on Debian 12. Idempotent; run as root.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git
  libabsl-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev libnuma-dev
  nlohmann-json3-dev libxxhash-dev
  numactl
  libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0 python3
  sqlite3 redis-server redis-tools  # tests/programs: real programs under uvmem run
  qemu-system-x86 busybox-static cpio  # tests/numa_guest: a 2- and 4-node NUMA guest
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages: ${missing[*]}; run as root (or with sudo)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The guest's kernels: Debian's own packages, downloaded and unpacked into a cache (not
# installed). Failing here is not fatal: the guest test then says why it cannot run.
for series in 6.1 6.12; do
  if kernel=$("$(dirname "$0")/../tests/numa_guest/fetch_kernel.sh" --series "$series"); then
    echo "install-deps: guest kernel $series: $kernel"
  else
    echo "install-deps: no guest kernel $series (the NUMA guest tests will fail under tools/run-tests.sh)" >&2
  fi
done
echo "install-deps: all dependencies present"
