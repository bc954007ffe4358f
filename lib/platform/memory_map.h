// memory_map.h — virtual memory calls: reserve, release, commit, madvise, mbind, and
// asking the kernel where pages live. The only place uvmem calls mmap/munmap/mprotect/
// madvise/mbind/set_mempolicy/move_pages (snmalloc's pal_linux.h, scudo's mem_map_linux.cpp).
//
// Shared rules for every function here: `addr` is page aligned; lengths are in bytes and
// multiples of kPageSize, > 0 (checked: InvalidArgument / EINVAL). Errors come back as
// absl::Status with the errno text (control plane) or as an errno int (functions marked
// hot path). No function allocates from a uvmem heap. Thread-safety: all functions are
// thread-safe (they are syscalls).
#ifndef UVMEM_PLATFORM_MEMORY_MAP_H_
#define UVMEM_PLATFORM_MEMORY_MAP_H_

#include <absl/status/status.h>
#include <absl/status/statusor.h>
#include <absl/types/span.h>

#include <cstddef>
#include <cstdint>

#include "uvmem/types.h"

namespace uvmem::internal {

// Reserves `length_bytes` of private anonymous address space (MAP_NORESERVE), readable
// and writable, whose start is a multiple of `alignment_bytes` (a power of two ≥ 4 KiB).
// The kernel backs pages on first touch. Returns InvalidArgument for a length that is not a
// positive multiple of 4 KiB or a bad alignment, ResourceExhausted on ENOMEM.
absl::StatusOr<void*> ReserveAnonymous(std::size_t length_bytes, std::size_t alignment_bytes);

// As ReserveAnonymous, for callers that must not allocate even on failure (a malloc's
// own slow paths): returns nullptr and leaves errno set instead of a Status.
// REQUIRES: the same length and alignment rules (checked only in debug builds).
void* ReserveAnonymousNoAlloc(std::size_t length_bytes, std::size_t alignment_bytes);

// Returns [addr, addr + length_bytes) to the system (munmap).
absl::Status ReleaseMapping(void* addr, std::size_t length_bytes);

// Makes a reserved stretch inaccessible (PROT_NONE) or readable+writable again.
absl::Status ProtectNone(void* addr, std::size_t length_bytes);
absl::Status ProtectReadWrite(void* addr, std::size_t length_bytes);

// madvise(MADV_DONTNEED): drops the pages' contents and frames; the next touch reads zero
// (or faults to userfaultfd when registered). Hot path: returns 0 or an errno (EINVAL
// for a range that breaks the shared rules, rather than letting madvise round it up).
[[nodiscard]] int DiscardPages(void* addr, std::size_t length_bytes);

// True when the 4 KiB page at `page` (aligned) is resident in this process (mincore).
bool IsPageResident(const void* page);

// madvise(MADV_POPULATE_WRITE, Linux 5.14+): backs every page of the stretch with a
// zeroed, writable frame now, in one call — no fault per page. Pages already present are
// left as they are. Hot path: returns 0 or an errno (EINVAL before 5.14, ENOMEM, EFAULT
// on a userfaultfd-registered hole, EHWPOISON).
[[nodiscard]] int PopulateWrite(void* addr, std::size_t length_bytes);

// madvise(MADV_HUGEPAGE / MADV_NOHUGEPAGE) on a stretch.
absl::Status AdviseHugePages(void* addr, std::size_t length_bytes, bool enable);

// mbind(MPOL_BIND) of a stretch to one node, with MPOL_MF_STRICT|MPOL_MF_MOVE so pages
// already present migrate. Returns InvalidArgument (EINVAL) when the node does not exist.
absl::Status BindToNode(void* addr, std::size_t length_bytes, NodeId node);

// mbind(MPOL_PREFERRED) of a stretch: pages come from `node` while it has memory.
absl::Status PreferNode(void* addr, std::size_t length_bytes, NodeId node);

// mbind(MPOL_INTERLEAVE) over `nodes` (non-empty).
absl::Status InterleaveOverNodes(void* addr, std::size_t length_bytes,
                                 absl::Span<const NodeId> nodes);

// mbind(MPOL_PREFERRED) of a stretch without moving anything: pages the kernel allocates
// there from now on (UFFDIO_COPY's) come from `node` while it has memory. Splits the VMA
// (the kernel merges neighbours with equal policies again). Hot path: returns 0 or an
// errno (EINVAL for a node outside 0..1023 or absent, ENOMEM at vm.max_map_count).
[[nodiscard]] int PreferPagesOnNode(void* addr, std::size_t length_bytes, NodeId node);

// The calling thread's own memory policy (set_mempolicy/get_mempolicy), which decides
// where the kernel puts pages it allocates on the thread's behalf in a VMA without a
// policy of its own — UFFDIO_COPY's destination pages among them (mm/userfaultfd.c,
// mfill_atomic_pte_copy -> vma_alloc_folio -> get_vma_policy falls back to the task's).
// Hot path: errno ints, no allocation.
struct ThreadMempolicy {
  int mode = 0;                     // MPOL_DEFAULT, MPOL_PREFERRED, ...
  unsigned long nodes[16] = {};     // node mask of the first 1024 nodes
};
// Saves the calling thread's policy into *out. Returns 0 or an errno.
[[nodiscard]] int GetThisThreadMempolicy(ThreadMempolicy* out);
// Restores a policy saved by GetThisThreadMempolicy. Returns 0 or an errno.
[[nodiscard]] int SetThisThreadMempolicy(const ThreadMempolicy& policy);
// MPOL_PREFERRED {node} for the calling thread: its pages come from `node` while the node
// has memory, then from the nearest others. Returns 0, or EINVAL for a node this machine
// lacks (or outside 0..1023).
[[nodiscard]] int PreferNodeForThisThread(NodeId node);

// Asks where each page in `pages` lives without touching it: move_pages(0, n, pages,
// NULL, status, 0). out_status[i] is the node number, or a negative errno (-ENOENT: not
// present, -EFAULT: not mapped). Sizes of both spans must match.
absl::Status QueryPageNodes(absl::Span<void* const> pages, absl::Span<int> out_status);

// Writes one byte into each page of the stretch (read-then-write of the first byte, so
// the content is kept), making the kernel back them. Used to pre-fault frame arenas.
void TouchPages(void* addr, std::size_t length_bytes);

}  // namespace uvmem::internal

#endif  // UVMEM_PLATFORM_MEMORY_MAP_H_
