#!/bin/sh
# /init of the NUMA guest's initramfs (tests/numa_guest/run_numa_guest.sh builds it).
# Runs each step under /uvmem, framed by markers the host reads, then powers off.
# Busybox sh; nothing here may need more than busybox and the copied binaries.
/bin/busybox --install -s /bin
export PATH=/bin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
# Background movers at full speed, so that placement is checked against them: khugepaged
# scans every 10 ms (it would collapse 4 KiB pages into huge pages on a node of its own
# choosing), and NUMA balancing stays on (the kernel's default with several nodes).
thp=/sys/kernel/mm/transparent_hugepage
echo always >$thp/enabled
echo 10 >$thp/khugepaged/scan_sleep_millisecs
echo 10 >$thp/khugepaged/alloc_sleep_millisecs
echo "UVMEM-GUEST thp=$(cat $thp/enabled) numa_balancing=$(cat /proc/sys/kernel/numa_balancing)"
echo "UVMEM-GUEST booted kernel=$(uname -r) nodes=$(ls -d /sys/devices/system/node/node[0-9]* | wc -l) cpus=$(nproc)"

step() {  # step NAME COMMAND...
  name=$1
  shift
  echo "UVMEM-GUEST begin $name"
  "$@"
  echo "UVMEM-GUEST end $name rc=$?"
}

cd /uvmem
step info tools/uvmem info
step placement tests/numa_placement_test --gtest_color=no
step bench bench/numa/numa_bench --quick --check --csv=/tmp/numa.csv
# Copy-on-write clones on this kernel (write-protection, and before 6.5 a write-protect
# request that must lie in one VMA); the tests that need a budget (swap needs UFFDIO_MOVE)
# are left out: on 6.1 a budget runtime refuses to start.
# Emulated CPUs make this the longest step (≈1 min on 2 nodes): the driver asks for it
# in one guest only (uvmem.clones=1 on the kernel command line).
if grep -q "uvmem.clones=1" /proc/cmdline; then
  step clone tests/clone_test --gtest_color=no \
    '--gtest_filter=*-*Swap*:*PreservedPagesEvicted*:*UnderABudget*'
fi

echo "UVMEM-GUEST begin csv"
cat /tmp/numa.csv 2>/dev/null
echo "UVMEM-GUEST end csv rc=0"
echo "UVMEM-GUEST done"
poweroff -f
