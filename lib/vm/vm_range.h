// vm_range.h — VmRange: one reserved range (the runtime's VMA) and its counters.
//
// A VmRange is [start, start + length_bytes) of private anonymous memory registered with
// the runtime's userfaultfd, a NUMA policy resolved against the topology, the range's
// PageTable, and relaxed atomic counters. It lives in a slab object ("kernel memory"),
// never in memory that can fault.
//
// Thread-safety: fields are immutable after construction except the page table (see
// page_table.h), `inflight` and the counters, which are atomics.
#ifndef UVMEM_VM_VM_RANGE_H_
#define UVMEM_VM_VM_RANGE_H_

#include <atomic>
#include <cstdint>
#include <string_view>

#include "uvmem/runtime.h"
#include "uvmem/types.h"
#include "vm/page_table.h"

namespace uvmem::internal {

// A NUMA policy with its nodes checked and sorted; no heap memory.
struct ResolvedPolicy {
  static constexpr int kMaxNodes = 64;
  NumaPolicy::Kind kind = NumaPolicy::Kind::kLocal;
  int num_nodes = 0;
  NodeId nodes[kMaxNodes] = {};
  // Interleave: the node index is taken from the low 32 bits of the page number, as the
  // running kernel does (KernelInterleaveUses32BitOffset, kernel_info.h).
  bool interleave_offset_32 = false;
};

struct VmRangeCounters {
  std::atomic<std::uint64_t> faults{0};
  std::atomic<std::uint64_t> pages_filled{0};
  std::atomic<std::uint64_t> fault_around_pages{0};
  std::atomic<std::uint64_t> pages_moved{0};
  std::atomic<std::uint64_t> pages_copied{0};
  std::atomic<std::uint64_t> races_lost{0};
  std::atomic<std::uint64_t> resident_pages{0};
  std::atomic<std::uint64_t> peak_resident_pages{0};
  std::atomic<std::uint64_t> oom_kills{0};
  std::atomic<std::uint64_t> discarded_refills{0};
  std::atomic<std::uint64_t> pages_discarded{0};
  std::atomic<std::uint64_t> pages_populated{0};
  std::atomic<std::uint64_t> swapped_pages{0};      // in swap now
  std::atomic<std::uint64_t> pages_swapped_out{0};
  std::atomic<std::uint64_t> pages_swapped_in{0};
  std::atomic<std::uint64_t> shared_pages{0};  // holder and CoW entries now (cow.h)
  std::atomic<std::uint64_t> cow_copies{0};
  std::atomic<std::uint64_t> cow_moves{0};
  std::atomic<bool> oom_reported{false};

  using Counter = std::atomic<std::uint64_t> VmRangeCounters::*;
  // `pages` mapped by one ioctl: filled, resident, and counted under `how` (pages_moved or
  // pages_copied). UncountFilled takes back the part the ioctl did not map.
  void CountFilled(std::uint64_t pages, Counter how) {
    (this->*how).fetch_add(pages, std::memory_order_relaxed);
    pages_filled.fetch_add(pages, std::memory_order_relaxed);
    AddResident(pages);
  }
  void UncountFilled(std::uint64_t pages, Counter how) {
    if (pages == 0) return;
    (this->*how).fetch_sub(pages, std::memory_order_relaxed);
    pages_filled.fetch_sub(pages, std::memory_order_relaxed);
    resident_pages.fetch_sub(pages, std::memory_order_relaxed);
  }

  void AddResident(std::uint64_t pages) {
    const std::uint64_t now = resident_pages.fetch_add(pages, std::memory_order_relaxed) + pages;
    std::uint64_t peak = peak_resident_pages.load(std::memory_order_relaxed);
    while (now > peak &&
           !peak_resident_pages.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
};

// How much one fault fills: the fault-around window and the sequential readahead, in
// pages (see demand_zero.h). Per range, so a heap can fill less ahead than a buffer.
struct FillWindow {
  std::uint32_t fault_around_pages = 64;  // power of two, 1..512
  std::uint32_t readahead_pages = 256;    // a multiple of fault_around_pages (0: off)
};

class VmRange {
 public:
  static constexpr std::size_t kMaxNameBytes = 47;

  VmRange(SlabCache* tables, std::uintptr_t start, std::size_t length_bytes,
          std::string_view name, const ResolvedPolicy& policy, FillWindow window = {});

  std::uintptr_t start() const { return start_; }
  std::uintptr_t end() const { return start_ + length_bytes_; }
  std::size_t length_bytes() const { return length_bytes_; }
  std::uint64_t pages() const { return length_bytes_ >> kPageShift; }
  std::string_view name() const { return name_; }
  const ResolvedPolicy& policy() const { return policy_; }
  std::uint64_t fault_around_pages() const { return window_.fault_around_pages; }
  std::uint64_t readahead_pages() const { return window_.readahead_pages; }
  void* PageAddress(std::uint64_t page) const {
    return reinterpret_cast<void*>(start_ + (page << kPageShift));
  }

  // The node page `page` should live on. `local` is the node the local policy means for
  // this fault: the faulting thread's CPU's (fault_engine.h), or the caller's (Populate).
  // Interleave uses the page's absolute number, as the kernel's interleave_nid() does
  // for an anonymous VMA (vm_pgoff == address >> PAGE_SHIFT), so pool frames (MOVE) and
  // kernel pages (COPY under mbind) agree.
  NodeId NodeForPage(std::uint64_t page, NodeId local) const;

  PageTable& page_table() { return table_; }
  VmRangeCounters& counters() { return counters_; }
  const VmRangeCounters& counters() const { return counters_; }

  // Fault threads working on this range now; Release waits for zero.
  std::atomic<int> inflight{0};
  // The page of the latest fault (sequential-stream detection for readahead).
  static constexpr std::uint64_t kNoPage = ~std::uint64_t{0};
  std::atomic<std::uint64_t> last_fault_page{kNoPage};
  // Consecutive sequential swap faults (swap_in.h): its readahead ramps up with them.
  std::atomic<std::uint32_t> swap_stream{0};
  // The pool once gave a page of this range a frame on another node than the range's
  // VMA policy names, so COPY fills bind their pages first (copy_placement.h).
  std::atomic<bool> policy_split{false};
  // Where reclaim's clock hand stands in this range (reclaim.h).
  std::atomic<std::uint64_t> reclaim_hand{0};

 private:
  const std::uintptr_t start_;
  const std::size_t length_bytes_;
  char name_[kMaxNameBytes + 1] = {};
  const ResolvedPolicy policy_;
  const FillWindow window_;
  PageTable table_;
  VmRangeCounters counters_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_VM_RANGE_H_
