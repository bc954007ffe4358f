// copy_placement.h — CopyPlacement: a page made by UFFDIO_COPY lands on its frame's node.
//
// UFFDIO_COPY does not take a frame's arena page: the kernel allocates a new page in the
// range (mm/userfaultfd.c, mfill_atomic_pte_copy -> vma_alloc_folio), placed by the VMA's
// mempolicy, else by the calling thread's. Every COPY that gives a frame its page
// (demand-zero fills on kernels without UFFDIO_MOVE or of frames the pool never backed,
// swap-in, copy-on-write, reclaim's put-back) opens a Scope first:
//
// - Bind, preferred and interleave ranges carry their policy on the VMA (mbind at
//   Reserve, which also keeps the kernel's automatic NUMA balancing away from them, as
//   from any mbind'ed memory). It places the page where the pool took the frame:
//   - bind: always (the pool never falls back under bind);
//   - preferred: until the pool falls back to the nearest node (the preferred node out
//     of frames). Then those pages get MPOL_PREFERRED {the frame's node} of their own
//     (mbind of just those pages: the VMA splits), the range is marked `policy_split`,
//     and from then on every COPY into it sets its pages' policy — the fallback node's,
//     or the range's own again, which merges the page back into its neighbours — since
//     the VMA no longer says one thing for all of it. A fallback is a stretch, so the
//     VMAs stay few; each such COPY takes the process's mmap lock for writing (the cost
//     of the degraded mode, paid only after a fallback);
//   - interleave: not after a pool fallback (an interleave node out of frames). Those
//     pages are placed by the kernel's interleave rule while their frames count on the
//     fallback node: giving each its own policy would cost a VMA per page (one in n
//     pages falls back) and soon reach vm.max_map_count. A known gap, COPY path only.
// - Local ranges have no VMA policy: the copying thread's own policy is set to
//   MPOL_PREFERRED {the frame's node}. Fault and reclaim threads (IsRuntimeThread) keep
//   the last node set (a system call only when it changes); any other thread
//   (Range::Populate fills on the caller) gets its own policy back when the scope
//   closes. Like the kernel's own local memory, local ranges are subject to NUMA
//   balancing where it is on (kernel.numa_balancing): it may migrate their pages toward
//   the threads that use them.
//
// With one node or a synthetic topology a Scope does nothing. Per-node statistics agree
// with move_pages(2) (tests/numa_placement_test.cc), but for the interleave gap above.
//
// Thread-safety: CopyPlacement is immutable; a Scope belongs to the thread that made it.
#ifndef UVMEM_VM_COPY_PLACEMENT_H_
#define UVMEM_VM_COPY_PLACEMENT_H_

#include <cstdint>

#include "frames/frame_pool.h"
#include "platform/memory_map.h"
#include "vm/vm_range.h"

namespace uvmem::internal {

class CopyPlacement {
 public:
  // `enabled`: the topology is real and has more than one node.
  CopyPlacement(const FramePool* pool, bool enabled) : pool_(pool), enabled_(enabled) {}

  class Scope {
   public:
    // Until the scope closes, the pages [page, page + count) of `range` that the calling
    // thread fills with UFFDIO_COPY come from the node of `frame` (all `count` frames
    // are on that node: one pool block, or one page).
    Scope(const CopyPlacement& placement, VmRange& range, std::uint64_t page,
          std::uint64_t count, FrameNumber frame);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    bool restore_ = false;
    ThreadMempolicy saved_;
  };

 private:
  const FramePool* const pool_;
  const bool enabled_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_COPY_PLACEMENT_H_
