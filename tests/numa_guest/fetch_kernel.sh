#!/usr/bin/env bash
# Fetches Debian's own amd64 kernel for the NUMA guest (tests/numa_guest/run_numa_guest.sh)
# into a cache and prints the path of its vmlinuz. The package is the one Debian 12's
# linux-image-amd64 depends on now (linux-image-6.1.0-N-amd64), downloaded with
# `apt-get download` and unpacked with `dpkg -x`: nothing is installed on this machine.
#
#   fetch_kernel.sh [CACHE_DIR]     default: $UVMEM_GUEST_CACHE, else /var/cache/uvmem
#                                   (root) or ~/.cache/uvmem
# Exit 0 with the path on stdout; 1 with the reason on stderr.
set -euo pipefail
cache=${1:-${UVMEM_GUEST_CACHE:-}}
if [[ -z $cache ]]; then
  if [[ $(id -u) -eq 0 ]]; then cache=/var/cache/uvmem; else cache=${XDG_CACHE_HOME:-$HOME/.cache}/uvmem; fi
fi
mkdir -p "$cache"

package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
pkg=$(package || true)
if [[ -z $pkg && -f $cache/guest-kernel.current ]]; then
  pkg=$(cat "$cache/guest-kernel.current")  # offline: the one fetched last time
fi
pkg=${pkg:-linux-image-6.1.0-56-amd64}
out=$cache/$pkg/vmlinuz
if [[ -s $out ]]; then
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
echo "$pkg" >"$cache/guest-kernel.current"
echo "$out"
