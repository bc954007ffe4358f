#!/usr/bin/env bash
# Boots Debian's own kernel under QEMU (software emulation: no KVM needed) as a machine
# with 2 or 4 NUMA nodes, runs uvmem's placement tests, `uvmem info` and the NUMA
# benchmark inside it, and checks what they printed. docs/design.md, "NUMA guest".
#
#   run_numa_guest.sh --build-dir DIR [--nodes 2|4] [--kernel 6.1|6.12] [--clones]
#                     [--log FILE] [--csv FILE] [--timeout S]
#
# --clones also runs clone_test there (its tests that need no budget), for copy-on-write
# on the guest's kernel (6.1: write-protect requests must lie in one VMA).
#
# The guest kernel is Debian 12's: 6.1 by default (no UFFDIO_MOVE, no WP_ASYNC, no
# PAGEMAP_SCAN, so uvmem's COPY fallbacks run for real there), or its newer 6.12 (every
# feature: the MOVE path too); UVMEM_GUEST_KERNEL=path/to/vmlinuz boots another. Timings inside it mean nothing; placement,
# checked with move_pages(2), is real. The 4-node guest has a distance matrix in which
# node 1's nearest neighbour is node 2, not node 0, so nearest-node fallback is told
# apart from "lowest other node".
#
# Exit codes: 0 every step passed; 1 a step failed or the guest did not finish (the
# console log is printed); 77 (ctest's skip) when QEMU, busybox, cpio or the kernel are
# not to be had here — with the reason. UVMEM_REQUIRE_GUEST=1 (set by tools/run-tests.sh)
# turns that skip into a failure, so CI can never pass without booting the guest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=""
nodes=2
series=6.1
clones=0
log=""
csv=""
timeout_s=900
while (($#)); do
  case $1 in
    --build-dir) build=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --kernel) series=$2; shift 2 ;;
    --clones) clones=1; shift ;;
    --log) log=$2; shift 2 ;;
    --csv) csv=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "run_numa_guest: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n $build ]] || { echo "run_numa_guest: --build-dir is required" >&2; exit 2; }
[[ $nodes == 2 || $nodes == 4 ]] || { echo "run_numa_guest: --nodes must be 2 or 4" >&2; exit 2; }
build=$(cd "$build" && pwd)

skip() {
  if [[ ${UVMEM_REQUIRE_GUEST:-0} == 1 ]]; then
    echo "run_numa_guest: FAILED (UVMEM_REQUIRE_GUEST=1): $*" >&2
    exit 1
  fi
  echo "run_numa_guest: SKIPPED: $*" >&2
  exit 77
}

# --- what the host needs ---
qemu=$(command -v qemu-system-x86_64 || true)
[[ -n $qemu ]] || skip "qemu-system-x86_64 not found (apt-get install qemu-system-x86; tools/install-deps.sh does)"
busybox=""
for b in /bin/busybox /usr/bin/busybox; do
  # busybox-static's: `ldd` calls it "not a dynamic executable" (fails).
  if [[ -x $b ]] && ! ldd "$b" >/dev/null 2>&1; then busybox=$b; break; fi
done
[[ -n $busybox ]] || skip "a static busybox is needed (apt-get install busybox-static)"
command -v cpio >/dev/null || skip "cpio not found (apt-get install cpio)"
[[ $(uname -m) == x86_64 ]] || skip "the guest is an x86_64 kernel; this host is $(uname -m)"
kernel=${UVMEM_GUEST_KERNEL:-}
if [[ -z $kernel ]]; then
  why=$(mktemp)
  if ! kernel=$("$here/fetch_kernel.sh" --series "$series" 2>"$why"); then
    reason=$(cat "$why")
    rm -f "$why"
    skip "no guest kernel: $reason"
  fi
  rm -f "$why"
fi
[[ -r $kernel ]] || skip "guest kernel $kernel is not readable"

binaries=(tools/uvmem lib/preload/libuvmem_preload.so tests/numa_placement_test tests/numa_probe
          bench/numa/numa_bench tests/clone_test)
for b in "${binaries[@]}"; do
  [[ -e $build/$b ]] || { echo "run_numa_guest: $build/$b is missing: build first" >&2; exit 1; }
done

# --- the initramfs: busybox, the binaries (laid out as in the build tree, so `uvmem run`
# finds the preload library next to itself) and every shared library they load ---
work=$build/numa-guest/$series-$nodes
rm -rf "$work"
root=$work/root
mkdir -p "$root"/{bin,proc,sys,dev,tmp,lib64,uvmem}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"  # for /init's #!; the init installs the other applets
cp "${UVMEM_GUEST_INIT:-$here/guest_init.sh}" "$root/init"  # UVMEM_GUEST_INIT: to debug
chmod 755 "$root/init"
declare -A libs=()
for b in "${binaries[@]}"; do
  mkdir -p "$root/uvmem/$(dirname "$b")"
  cp -L "$build/$b" "$root/uvmem/$b"
  while read -r lib; do libs[$lib]=1; done < <(ldd "$build/$b" | awk '
    $2 == "=>" && $3 ~ /^\// { print $3 }
    $1 ~ /^\// { print $1 }')
done
for lib in "${!libs[@]}"; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$work/initrd.gz")

# --- the machine ---
args=(-accel tcg -cpu max -nographic -no-reboot -nic none -kernel "$kernel" -initrd "$work/initrd.gz"
      -append "console=ttyS0 quiet panic=-1 rdinit=/init uvmem.clones=$clones")
if [[ $nodes == 2 ]]; then
  args+=(-m 2G -smp 2
         -object memory-backend-ram,id=m0,size=1G -object memory-backend-ram,id=m1,size=1G
         -numa node,nodeid=0,cpus=0,memdev=m0 -numa node,nodeid=1,cpus=1,memdev=m1)
  distances=("10 21" "21 10")  # QEMU's default remote distance is 20; say it explicitly
  args+=(-numa dist,src=0,dst=1,val=21)
else
  args+=(-m 2G -smp 4)
  for i in 0 1 2 3; do
    args+=(-object memory-backend-ram,id=m$i,size=512M -numa node,nodeid=$i,cpus=$i,memdev=m$i)
  done
  # A line 0 - 1 - 2 - 3 where node 1 is nearer to 2 (15) than to 0 (20).
  distances=("10 20 30 40" "20 10 15 30" "30 15 10 20" "40 30 20 10")
  for i in 0 1 2 3; do
    read -ra row <<<"${distances[$i]}"
    for j in 0 1 2 3; do
      ((j > i)) && args+=(-numa "dist,src=$i,dst=$j,val=${row[$j]}")
    done
  done
fi
log=${log:-$work/console.log}
echo "run_numa_guest: booting $(basename "$(dirname "$kernel")") with $nodes NUMA nodes (log: $log)"
start=$SECONDS
set +e
timeout "$timeout_s" "$qemu" "${args[@]}" </dev/null >"$log" 2>&1
qemu_rc=$?
set -e
tr -d '\r' <"$log" >"$log.txt" && mv "$log.txt" "$log"
echo "run_numa_guest: guest ran $((SECONDS - start)) s (qemu exit $qemu_rc)"

# --- what the guest said ---
fail=0
failed() {
  echo "run_numa_guest: FAILED: $*" >&2
  fail=1
}
section() {  # the lines between "begin NAME" and "end NAME"
  awk -v n="$1" '$0 ~ "^UVMEM-GUEST end "n" " { on = 0 } on { print } $0 == "UVMEM-GUEST begin "n { on = 1 }' "$log"
}
if ((qemu_rc == 124)); then failed "the guest did not finish within $timeout_s s"; fi
grep -q "UVMEM-GUEST booted .* nodes=$nodes " "$log" || failed "the guest did not boot with $nodes nodes"
if [[ -z ${UVMEM_GUEST_KERNEL:-} ]]; then
  grep -q "UVMEM-GUEST booted kernel=$series\." "$log" || failed "the guest did not run a $series kernel"
fi
grep -q "UVMEM-GUEST thp=\[always\]" "$log" || failed "THP is not 'always' in the guest (khugepaged is part of the test)"
if grep -a -E "(BUG|WARNING): |Oops|Kernel panic" "$log" >&2; then failed "the guest kernel complained (above)"; fi
steps=(info placement bench)
((clones)) && steps+=(clone)
for s in "${steps[@]}"; do
  rc=$(sed -n "s/^UVMEM-GUEST end $s rc=\([0-9]*\)$/\1/p" "$log")
  if [[ -z $rc ]]; then
    failed "step '$s' did not finish"
  elif [[ $rc != 0 ]]; then
    failed "step '$s' exited $rc"
  fi
done
grep -q "^UVMEM-GUEST done" "$log" || failed "the guest's init did not reach its end"

# `uvmem info` must show the topology QEMU was given: N nodes, one CPU each, the distances.
info=$(section info)
grep -q "NUMA topology ($nodes nodes)" <<<"$info" || failed "uvmem info does not report $nodes nodes"
# 6.12 is there to run the MOVE path: it must be usable (else the tests ran COPY twice).
if [[ $series == 6.12 && -z ${UVMEM_GUEST_KERNEL:-} ]]; then
  grep -Eq "^ *UFFDIO_MOVE +usable" <<<"$info" || failed "uvmem info: UFFDIO_MOVE is not usable on 6.12"
fi
for ((i = 0; i < nodes; i++)); do
  want="node $i: cpus $i, distances ${distances[$i]}"
  grep -qx "  *$want\|$want" <<<"$info" || failed "uvmem info lacks '$want'"
done
# The clone tests ran (and passed: checked with the exit codes above).
if ((clones)); then
  grep -q "\[  PASSED  \]" <<<"$(section clone)" || failed "the clone tests did not pass"
fi
# The placement suite ran every test: none skipped for want of nodes.
placement=$(section placement)
if grep -q "\[  SKIPPED \]" <<<"$placement"; then failed "placement tests were skipped in a $nodes-node guest"; fi
grep -q "\[  PASSED  \]" <<<"$placement" || failed "the placement tests did not pass"
# The benchmark measured remote memory, not only local.
bench_csv=$(section csv)
grep -q ",remote," <<<"$bench_csv" || failed "the benchmark's CSV has no remote rows"
if [[ -n $csv ]]; then printf '%s\n' "$bench_csv" >"$csv"; fi

if ((fail)); then
  echo "---- guest console ($log) ----" >&2
  cat "$log" >&2
  exit 1
fi
echo "$placement" | grep -E "^\[ *(OK|PASSED|FAILED) *\]" | sed 's/^/  guest: /'
echo "run_numa_guest: PASSED ($nodes nodes, Linux $series: uvmem info, placement tests, benchmark$( ((clones)) && echo ", clones"))"
