// fork_copy.h — a forked child sees the parent's swapped-out pages.
//
// Without UFFD_FEATURE_EVENT_FORK the kernel unregisters a child's ranges: its copy of a
// page the parent had swapped out would read as zeros. So each runtime with swap
// registers fork handlers (pthread_atfork) that hand the child its pages:
//   prepare (parent)  the swap device holds frees (SwapDevice::HoldFrees): no slot the
//                     child may read is reused; a pipe is opened;
//   child             walks its copy of every range's page table — a consistent picture,
//                     since fork() copies memory with the mappings locked — and, for each
//                     page that is not resident, reads its swap slot (checked against its
//                     checksum) from the inherited swap fd into the page, or copies a page
//                     caught mid-writeback from reclaim's staging area; then signals the
//                     pipe. The
//                     child is then a plain process (its heap runs detached, heap.h);
//   parent            waits for the child's signal (or its death), then lets the held
//                     slots go, and writes into each resident page once (an atomic add
//                     of zero): fork left them shared with the child, and the kernel
//                     will not move a shared page out (UFFDIO_MOVE: EBUSY) until the
//                     parent writes it — without this, reclaim could evict nothing.
// Clones (cow.h): a CoW entry is not mapped in its range, so the child also copies each
// into place — from the holder's page, the preserved frame, or its swap slot. Holder pages
// are mapped already (the child reads its copy of them).
// fork() therefore costs O(pages swapped out) when the parent has swapped pages, and
// nothing more otherwise; vfork()/posix_spawn() share the mm and run no handlers. A slot
// that cannot be read kills the child with SIGBUS and a message (never zeros).
//
// Thread-safety: Register/Unregister are thread-safe; the handlers serialise forks.
#ifndef UVMEM_VM_FORK_COPY_H_
#define UVMEM_VM_FORK_COPY_H_

#include "vm/address_space.h"
#include "vm/cow.h"
#include "vm/reclaim.h"
#include "vm/swap_device.h"

namespace uvmem::internal {

struct ForkCopySource {
  AddressSpace* space;
  SwapDevice* swap;            // null without a budget
  const Reclaimer* reclaimer;  // its staging areas hold pages caught mid-writeback (or null)
  FramePool* pool;             // shared frames' descriptors and preserved pages (cow.h)
  const CowCounters* cow;      // clones made: CoW entries to copy
};

// Adds a runtime's ranges to what forked children receive. False when kMaxRuntimes
// runtimes with swap are registered already (its children then read zeros: reported).
bool RegisterForkCopy(const ForkCopySource* source);
void UnregisterForkCopy(const ForkCopySource* source);

}  // namespace uvmem::internal

#endif  // UVMEM_VM_FORK_COPY_H_
