// cpu.h — which CPU the calling thread runs on, and how many CPUs there can be.
//
// Thread-safety: thread-safe. CurrentCpu() is a hint: the thread may migrate right after.
#ifndef UVMEM_PLATFORM_CPU_H_
#define UVMEM_PLATFORM_CPU_H_

namespace uvmem::internal {

// The CPU the caller runs on now (glibc's sched_getcpu reads the rseq area: a few ns).
// Returns 0 when the kernel cannot say.
int CurrentCpu();

// Number of configured CPUs (get_nprocs_conf): an upper bound for CurrentCpu() + 1.
int ConfiguredCpuCount();

// Gives the CPU to another runnable thread (sched_yield).
void YieldCpu();

}  // namespace uvmem::internal

#endif  // UVMEM_PLATFORM_CPU_H_
