// info_command.h — `uvmem info`: what this machine offers uvmem, and why.
//
// Prints the uvmem version, the kernel release, every userfaultfd feature the kernel
// offers, whether UFFDIO_MOVE / WP_ASYNC / UFFDIO_POISON / PAGEMAP_SCAN are usable, the
// privilege situation (full or user-mode-only userfaultfd, and what that means for
// syscalls), the transparent-huge-page mode and the NUMA topology.
//
// Thread-safety: call from one thread (the command's main).
#ifndef UVMEM_TOOLS_INFO_COMMAND_H_
#define UVMEM_TOOLS_INFO_COMMAND_H_

#include <string>

#include "platform/kernel_info.h"
#include "platform/numa_topology.h"

namespace uvmem::internal {

struct InfoOptions {
  bool verbose = false;  // add each feature's meaning and the kernel version that added it
};

// The text `uvmem info` prints, from facts already gathered (pure; used by tests).
std::string FormatInfo(const KernelReport& report, const NumaTopology& topology,
                       InfoOptions options);

// Gathers the facts of this machine and prints them to stdout. Returns the exit code:
// 0, or 1 when userfaultfd cannot be opened at all (uvmem cannot run here).
int RunInfoCommand(InfoOptions options);

}  // namespace uvmem::internal

#endif  // UVMEM_TOOLS_INFO_COMMAND_H_
