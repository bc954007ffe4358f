// cpu.h — which CPU the calling thread runs on, and how many CPUs there can be.
//
// Thread-safety: thread-safe. CurrentCpu() is a hint: the thread may migrate right after.
#ifndef UVMEM_PLATFORM_CPU_H_
#define UVMEM_PLATFORM_CPU_H_

namespace uvmem::internal {

// The CPU the caller runs on now (glibc's sched_getcpu reads the rseq area: a few ns).
// Returns 0 when the kernel cannot say.
int CurrentCpu();

// The CPU thread `tid` of this process last ran on (field 39 of
// /proc/self/task/<tid>/stat): for a thread blocked in a page fault, the CPU it faulted
// on. About 5 µs (open, read, close); no allocation. Returns -1 when the thread is gone
// or the file cannot be read.
int CpuOfThread(int tid);

// Number of configured CPUs (get_nprocs_conf): an upper bound for CurrentCpu() + 1.
int ConfiguredCpuCount();

// Gives the CPU to another runnable thread (sched_yield).
void YieldCpu();

}  // namespace uvmem::internal

#endif  // UVMEM_PLATFORM_CPU_H_
