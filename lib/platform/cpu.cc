#include "platform/cpu.h"

#include <sched.h>
#include <sys/sysinfo.h>

namespace uvmem::internal {

int CurrentCpu() {
  int cpu = ::sched_getcpu();
  return cpu < 0 ? 0 : cpu;
}

int ConfiguredCpuCount() {
  int n = ::get_nprocs_conf();
  return n < 1 ? 1 : n;
}

void YieldCpu() { ::sched_yield(); }

}  // namespace uvmem::internal
