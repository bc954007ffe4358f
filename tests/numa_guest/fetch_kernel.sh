#!/usr/bin/env bash
# Fetches one of Debian 12's own amd64 kernels for the NUMA guest
# (tests/numa_guest/run_numa_guest.sh) into a cache and prints the path of its vmlinuz.
# Downloaded with `apt-get download`, unpacked with `dpkg -x`: nothing is installed.
#
#   fetch_kernel.sh [--series 6.1|6.12] [CACHE_DIR]
#     6.1  (default) the package Debian 12's linux-image-amd64 depends on now
#          (linux-image-6.1.0-N-amd64): no UFFDIO_MOVE, WP_ASYNC or PAGEMAP_SCAN
#     6.12 the newest linux-image-6.12.N+deb12-amd64 (Debian 12's newer kernel, from
#          bookworm-security): every userfaultfd feature uvmem uses
#     CACHE_DIR default: $UVMEM_GUEST_CACHE, else /var/cache/uvmem (root) or ~/.cache/uvmem
# Exit 0 with the path on stdout; 1 with the reason on stderr.
set -euo pipefail
series=6.1
if [[ ${1:-} == --series ]]; then
  series=$2
  shift 2
fi
[[ $series == 6.1 || $series == 6.12 ]] || { echo "fetch_kernel: --series is 6.1 or 6.12" >&2; exit 2; }
cache=${1:-${UVMEM_GUEST_CACHE:-}}
if [[ -z $cache ]]; then
  if [[ $(id -u) -eq 0 ]]; then cache=/var/cache/uvmem; else cache=${XDG_CACHE_HOME:-$HOME/.cache}/uvmem; fi
fi
mkdir -p "$cache"

package() {
  if [[ $series == 6.1 ]]; then
    apt-cache depends linux-image-amd64 2>/dev/null |
      awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
  else
    apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' 2>/dev/null |
      awk '{ print $1 }' | sort -V | tail -1
  fi
}
current=$cache/guest-kernel-$series.current
pkg=$(package || true)
if [[ -z $pkg && -f $current ]]; then
  pkg=$(cat "$current")  # offline: the one fetched last time
fi
if [[ -z $pkg ]]; then
  [[ $series == 6.1 ]] && pkg=linux-image-6.1.0-56-amd64
fi
[[ -n $pkg ]] || { echo "fetch_kernel: no linux-image-6.12.*+deb12-amd64 package known to apt (apt-get update?)" >&2; exit 1; }
out=$cache/$pkg/vmlinuz
if [[ -s $out ]]; then
  echo "$pkg" >"$current"  # the offline fallback names what is cached
  echo "$out"
  exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "fetch_kernel: apt-get and dpkg are needed to fetch $pkg (a Debian machine)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt's _apt user downloads into it
if ! (cd "$work" && apt-get download -qq "$pkg" >/dev/null 2>&1); then
  # Stale or missing package lists on a fresh machine: refresh once (root only).
  if [[ $(id -u) -eq 0 ]] && apt-get update -qq >/dev/null 2>&1 &&
    (cd "$work" && apt-get download -qq "$pkg" >/dev/null 2>&1); then
    :
  else
    echo "fetch_kernel: 'apt-get download $pkg' failed (no Debian mirror reachable?)" >&2
    exit 1
  fi
fi
dpkg -x "$work"/"$pkg"_*.deb "$work/x"
mkdir -p "$cache/$pkg"
cp "$work"/x/boot/vmlinuz-* "$out.tmp"
mv "$out.tmp" "$out"
echo "$pkg" >"$current"
echo "$out"
