// uvmem/runtime.h — the runtime, its ranges, and their statistics (public C++ API).
//
//   Runtime      a process's paging runtime: a frame pool per NUMA node, a userfaultfd,
//                and fault threads that serve the page faults of every range.
//   Range        a reserved stretch of virtual memory (a VMA) whose pages are filled on
//                first touch (demand-zero) with frames from the runtime's pool.
//   NumaPolicy   where a range's frames come from: local, bind, preferred, interleave.
//
// Example:
//   auto runtime = uvmem::Runtime::Create({});            // StatusOr: says why if not
//   auto range = (*runtime)->Reserve(1 << 30, {.name = "table"});
//   std::memset(range->data(), 1, 1 << 20);               // faults served by uvmem
//   uvmem::RangeStats s = range->Stats();
//
// Units: lengths are bytes; page counts are 4 KiB pages; times are nanoseconds.
// Thread-safety: every method of Runtime and Range is thread-safe, except that a Range
// must not be Released while another thread calls its methods; memory of a range may be
// touched from any thread at any time until it is released.
#ifndef UVMEM_RUNTIME_H_
#define UVMEM_RUNTIME_H_

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "uvmem/types.h"

namespace uvmem {

namespace internal {
class RuntimeImpl;
class VmRange;
}  // namespace internal

// Where a range's frames come from; as the kernel's mempolicies (mm/mempolicy.c).
struct NumaPolicy {
  enum class Kind {
    kLocal,       // the node of the CPU the faulting thread runs on (as MPOL_LOCAL; the
                  // fault message names the thread); for Range::Populate, the caller's
                  // CPU; without UFFD_FEATURE_THREAD_ID, the serving fault thread's. No
                  // VMA policy: where the kernel's NUMA balancing is on it may migrate
                  // these pages, as it does the kernel's own local memory (bind,
                  // preferred and interleave ranges carry an mbind policy, which keeps
                  // balancing away). Pages found off their frame's node at Release are
                  // not returned to the pool's arenas.
    kBind,        // only `nodes[0]`; when it is full the fault gets SIGBUS
    kPreferred,   // `nodes[0]`, then the nearest node with free frames
    kInterleave,  // the page at address a on nodes[(a / 4 KiB) % n], over the n distinct
                  // nodes in ascending order (page-offset interleave, as MPOL_INTERLEAVE
                  // for a VMA; before Linux 6.7 the kernel, and so uvmem, uses the low 32
                  // bits of a / 4 KiB), so the page counts of any two nodes in a range
                  // differ by at most one. A node out of frames: the nearest one's (on
                  // the COPY path the kernel still places the page by the rule then, and
                  // per-node statistics count it on the node that gave the frame)
  };
  Kind kind = Kind::kLocal;
  std::vector<NodeId> nodes;

  static NumaPolicy Local() { return {}; }
  static NumaPolicy Bind(NodeId node) { return {Kind::kBind, {node}}; }
  static NumaPolicy Preferred(NodeId node) { return {Kind::kPreferred, {node}}; }
  static NumaPolicy Interleave(std::vector<NodeId> nodes) {
    return {Kind::kInterleave, std::move(nodes)};
  }
};

struct RuntimeOptions {
  // Frame pool: bytes of frames on each NUMA node (rounded up to 4 MiB). When 0, the
  // pool is pool_bytes_total split evenly over the nodes.
  std::size_t pool_bytes_per_node = 0;
  std::size_t pool_bytes_total = std::size_t{1} << 30;  // 1 GiB
  // Fault threads; 0 = one per NUMA node (at least one).
  int fault_threads = 0;
  // Pages mapped per fault, including the faulting one: an aligned window of this many
  // pages around the fault, clamped to the range and to pages not yet present. A power
  // of two from 1 (fault-around off) to 512; anything else is InvalidArgument. The default was chosen by measurement
  // (docs/benchmarks.md).
  std::size_t fault_around_pages = 64;
  // Pages filled ahead of a sequential stream of faults, window by window, after the
  // faulting thread is woken (the kernel's readahead idea applied to demand-zero). 0
  // turns it off; at most 8192. Default chosen by measurement (docs/benchmarks.md).
  std::size_t readahead_pages = 256;
  // Move pool frames in with UFFDIO_MOVE where the kernel has it (6.8+). false forces the
  // UFFDIO_COPY path (the kernel allocates the page by the range's mbind policy).
  bool use_move = true;
  // Accept a user-mode-only userfaultfd (an unprivileged process without access to
  // /dev/userfaultfd). Then a system call that writes into a missing page of a range
  // (read(2) into a fresh buffer, recv) fails with EFAULT instead of being served.
  bool allow_user_mode_only = false;
  // Back every pool frame with a zeroed page at creation (one MADV_POPULATE_WRITE per
  // node), as a reserved huge-page pool is: faults then only move frames in (≈0.1 µs a
  // page), but the whole pool is resident from the start. Without it, a frame's first
  // fill is a COPY (a hole has no page to move); frames moved into a range move back to
  // the pool when the range is released, so later fills move them. MOVE path only.
  bool prefault_pool = false;
  // Debug mode for the runtime's own slab caches (page tables, range descriptors), as the
  // kernel's slub_debug: redzones, poison, double-free and overflow checks that abort
  // with the cache, the address and what was wrong. Slower; for chasing corruption.
  bool slab_debug = false;

  // ---- Resident budget and swap (docs/design.md, "Swap") ----
  // The most bytes of range pages that may be resident at once, over all ranges (rounded
  // down to 4 KiB pages; at least 1 MiB when set). 0: no budget — pages stay resident
  // until released and the pool is the only limit. With a budget, a background reclaimer
  // keeps resident pages between the budget's low and high watermarks by writing cold
  // pages to the swap device; a fault that finds the budget spent reclaims directly. The
  // runtime's metadata (page tables, descriptors, swap maps) is not counted: it is
  // reported as RuntimeStats::metadata_bytes. Must not exceed the pool.
  std::size_t budget_bytes = 0;
  // Where swapped pages go: a directory (an unlinked O_TMPFILE file, mode 0600, is made in
  // it and vanishes with the process), or an existing regular file or block device
  // (written from its start; its old content is lost). Empty: $TMPDIR, else /tmp. Only
  // used with a budget.
  std::string swap_path;
  // Most bytes of swap (rounded down to 4 KiB slots). 0: a block device's or existing
  // file's size, else the pool's size (at least 4 × budget_bytes). Swap files are sparse:
  // disk is used only by slots written; a full disk is a write error (pages stay resident).
  std::size_t swap_max_bytes = 0;
  // Copy-on-write clones under a budget. A clone needs the first write to a shared page
  // to stop at uvmem (a synchronous write-protect fault); swap's dirty tracking prefers
  // the kernel to lift write-protection by itself (UFFD_FEATURE_WP_ASYNC: a write to a
  // watched page costs no round trip). One runtime cannot have both: WP_ASYNC belongs to
  // the whole userfaultfd. Without a budget, clones always work and this is ignored. With
  // a budget, Range::Clone is FailedPrecondition unless this is true — and then every
  // first write to a page reclaim watches (a page read back from swap, a page the clock
  // hand passed) is a fault round trip: 2–5× slower swap workloads when pages are read
  // back and then written (docs/benchmarks.md#swap).
  bool clones_with_budget = false;
};

struct RangeOptions {
  static constexpr std::size_t kRuntimeDefault = ~std::size_t{0};
  std::string name = "anon";  // shown in statistics and error messages
  NumaPolicy numa;
  // This range's fault-around window in pages (as RuntimeOptions::fault_around_pages);
  // 0 takes the runtime's. A heap whose neighbouring pages may be free wants less than
  // a buffer that will be written end to end.
  std::size_t fault_around_pages = 0;
  // This range's readahead in pages (0 turns it off); kRuntimeDefault takes the runtime's.
  std::size_t readahead_pages = kRuntimeDefault;
};

// Statistics of one range. Counters are cumulative; resident_pages is current. A fill is
// counted just before its pages are mapped (and taken back if the kernel refuses), so a
// thread that sees a page never sees statistics that miss it.
struct RangeStats {
  std::string name;
  std::uintptr_t start = 0;
  std::size_t length_bytes = 0;
  std::uint64_t faults = 0;             // fault messages served for this range
  std::uint64_t pages_filled = 0;       // pages mapped in (faulting + fault-around)
  std::uint64_t fault_around_pages = 0; // of which mapped ahead of a fault
  std::uint64_t pages_moved = 0;        // mapped with UFFDIO_MOVE
  std::uint64_t pages_copied = 0;       // mapped with UFFDIO_COPY
  std::uint64_t races_lost = 0;         // faults found already served (EEXIST, claimed)
  std::uint64_t resident_pages = 0;     // pages mapped now
  std::uint64_t peak_resident_pages = 0;
  std::uint64_t page_table_bytes = 0;   // the runtime's page-table memory for the range
  std::uint64_t oom_kills = 0;          // faults answered with SIGBUS: no frame left
  std::uint64_t discarded_refills = 0;  // pages dropped by the program (MADV_DONTNEED)
                                        // and touched again: refilled with zeros
  std::uint64_t pages_discarded = 0;    // pages given back with Range::Discard
  std::uint64_t pages_populated = 0;    // pages filled by Range::Populate (no fault)
  std::uint64_t swapped_pages = 0;      // pages in swap now (not resident)
  std::uint64_t pages_swapped_out = 0;  // evictions to swap (written or dropped clean)
  std::uint64_t pages_swapped_in = 0;   // pages read back from swap
  // Copy-on-write (Range::Clone). A page is shared while its bytes serve two or more
  // ranges; it is copied when one of them writes it (or, in a range that does not map
  // it, touches it at all).
  std::uint64_t shared_pages = 0;       // pages of this range still on a frame from a
                                        // clone, not yet copied (shared, or left as its
                                        // last user: taken without a copy when touched)
  std::uint64_t cow_copies = 0;         // shared pages this range copied (see CloneStats)
  std::uint64_t cow_moves = 0;          // shared pages this range received without a copy
};

// Copy-on-write clones of the whole runtime (Range::Clone). Counters are cumulative;
// shared_* and bytes_saved are current.
struct CloneStats {
  std::uint64_t clones = 0;             // Range::Clone calls that succeeded
  std::uint64_t shared_frames = 0;      // frames serving two or more ranges now
  std::uint64_t shared_pages = 0;       // pages, over all ranges, served by those frames
  // Copies, by side. Source side: a range wrote a shared page it maps (the range it was
  // cloned from, typically): the original was preserved for the others first. Clone
  // side: a range touched a shared page it does not map (a clone): it got its own copy.
  std::uint64_t cow_copies_source_side = 0;
  std::uint64_t cow_copies_clone_side = 0;
  // The last range sharing a preserved page received its frame by UFFDIO_MOVE (no copy).
  std::uint64_t cow_moves = 0;
  std::uint64_t shared_swap_slots = 0;  // swap slots serving two or more ranges now
  std::uint64_t bytes_saved = 0;        // (shared_pages − shared_frames) × 4 KiB of memory
};

// Swap and reclaim of a runtime with a budget (all zero without one). Counters are
// cumulative since the runtime started; *_pages and slots_* are current.
struct SwapStats {
  bool enabled = false;
  std::string device;                   // e.g. "/tmp (O_TMPFILE)" or "/dev/vdb"
  std::uint64_t budget_pages = 0;       // RuntimeOptions::budget_bytes in pages
  std::uint64_t low_watermark_pages = 0;   // reclaimer wakes below this many free pages
  std::uint64_t high_watermark_pages = 0;  // and reclaims until this many are free
  std::uint64_t slots_total = 0;        // 4 KiB slots on the device
  std::uint64_t slots_used = 0;         // slots holding a page now
  std::uint64_t pages_swapped_out = 0;  // pages evicted (written, or dropped clean)
  std::uint64_t pages_swapped_in = 0;   // pages read back on a fault (readahead included)
  std::uint64_t bytes_written = 0;      // to the device
  std::uint64_t bytes_read = 0;         // from the device
  std::uint64_t clean_pages_dropped = 0;  // evicted without a write: the slot held them
  std::uint64_t refaults = 0;           // faults on swapped pages (the page was needed)
  std::uint64_t readahead_pages = 0;    // pages read with a fault's page, ahead of need
  std::uint64_t readahead_hits = 0;     // of those, pages touched before being evicted
  std::uint64_t write_errors = 0;       // pages whose write failed (kept resident)
  std::uint64_t read_errors = 0;        // pages whose read failed (poisoned)
  std::uint64_t checksum_errors = 0;    // pages read back with a wrong checksum (poisoned)
  std::uint64_t busy_pages = 0;         // evictions the kernel refused (a page shared after
                                        // fork or pinned for I/O): kept resident, active
  std::uint64_t swap_full = 0;          // evictions given up for want of a free slot
  std::uint64_t reclaim_passes = 0;     // background reclaimer wake-ups
  std::uint64_t direct_reclaims = 0;    // faults that had to reclaim before filling
  std::uint64_t budget_exhausted = 0;   // faults answered with SIGBUS: nothing to evict
  std::uint64_t swapin_latency_p50_ns = 0;  // fault on a swapped page → page mapped
  std::uint64_t swapin_latency_p99_ns = 0;
};

// Statistics of the whole runtime.
struct RuntimeStats {
  std::uint64_t faults = 0;
  std::uint64_t pages_filled = 0;
  std::uint64_t fault_around_pages = 0;
  std::uint64_t pages_moved = 0;
  std::uint64_t pages_copied = 0;
  std::uint64_t races_lost = 0;
  std::uint64_t oom_kills = 0;
  std::uint64_t ranges = 0;              // live ranges
  std::uint64_t resident_pages = 0;      // pages mapped in live ranges
  std::uint64_t metadata_bytes = 0;      // page tables and range descriptors
  std::uint64_t fault_latency_p50_ns = 0;  // handler time per fault message
  std::uint64_t fault_latency_p99_ns = 0;
  struct Node {
    NodeId node;
    std::uint64_t total_frames = 0;
    std::uint64_t free_frames = 0;
    std::uint64_t used_frames = 0;       // resident pages of ranges + runtime metadata
    std::uint64_t peak_used_frames = 0;
  };
  std::vector<Node> nodes;
  bool move_used = false;                // MOVE path active (else COPY)
  // The runtime's own slab caches in /proc/slabinfo format (version 2.1; <objsize> is
  // the slot size, with debug redzones when slab_debug is on).
  std::string slabinfo;
  std::string uffd_mode;                 // "full" or "user-mode-only"
  SwapStats swap;
  CloneStats clone;
};

class Runtime;

// A reserved range. Move-only handle; destroying it releases the range.
class Range {
 public:
  Range() = default;
  Range(Range&& other) noexcept;
  Range& operator=(Range&& other) noexcept;
  Range(const Range&) = delete;
  Range& operator=(const Range&) = delete;
  ~Range();

  // First byte of the range (page aligned; 2 MiB aligned when the range is at least
  // 2 MiB) and its length in bytes (a multiple of 4 KiB). Null/0 after Release().
  void* data() const;
  std::size_t size() const;
  bool valid() const { return range_ != nullptr; }

  // Unregisters the range, returns its frames to the pool and its address space to the
  // system. Touching the memory afterwards is a use-after-free (SIGSEGV). Errors:
  // FailedPrecondition when already released; Internal when the kernel refused to
  // unregister it (then the range stays live, served, and held by this handle).
  // REQUIRES: no concurrent call on this Range. The destructor releases and, having no
  // way to return an error, reports a failure on stderr.
  absl::Status Release();

  // This range's counters (a snapshot; O(1)). Empty after Release().
  RangeStats Stats() const;

  // Gives the frames of [offset_bytes, offset_bytes + length_bytes) back to the pool, as
  // MADV_DONTNEED gives pages back to the kernel: the memory stays reserved and
  // registered, and the next touch of a page there is a demand-zero fault again. Both
  // values are multiples of 4 KiB inside the range. Costs one madvise plus O(pages) work
  // on the page table. Errors: InvalidArgument (misaligned or outside the range),
  // FailedPrecondition (released), Internal (the kernel refused the madvise; nothing was
  // given back). Thread-safe with faults and other calls on the range; the caller must
  // not expect the bytes of the stretch to survive (a thread touching it concurrently
  // reads either its old bytes or zeros).
  absl::Status Discard(std::size_t offset_bytes, std::size_t length_bytes);

  // Fills the missing pages of [offset_bytes, offset_bytes + length_bytes) now, from the
  // calling thread, with frames on the node the range's policy names for this CPU — the
  // work a first touch would make a fault thread do, without the round trip (as
  // MADV_POPULATE_WRITE). Present pages are left as they are; a page no frame can be
  // found for stays missing (its first touch then reports the exhaustion). Both values
  // are multiples of 4 KiB inside the range. Errors: InvalidArgument, FailedPrecondition
  // (released). Thread-safe.
  absl::Status Populate(std::size_t offset_bytes, std::size_t length_bytes);

  // A copy-on-write clone: a new range of the same size, NUMA policy and fill windows,
  // whose bytes are this range's bytes at the moment of the call, made in time
  // proportional to the range's page table (its touched pages), not to its bytes. From
  // then on the two ranges are independent: a write on either side is never visible on
  // the other. Any range may be cloned, a clone too (chains), any number of times.
  //
  // How (docs/design.md, "Copy-on-write clones"): this range's resident pages are
  // write-protected (UFFDIO_WRITEPROTECT) and the clone's page table names the same
  // frames, with frame reference counts; swapped-out pages share their swap slot (a slot
  // reference count), so cloning does no I/O and a swapped page is written once however
  // many ranges share it. A write to a shared page by the range that maps it preserves
  // the original for the others first (one 4 KiB copy), then lifts the protection. The
  // clone maps nothing at first: user space cannot map one private page at two
  // addresses, so the clone's first touch of a shared page — a read too — makes its own
  // copy (UFFDIO_COPY), except that the last range sharing a preserved page receives the
  // frame itself by UFFDIO_MOVE. Both kinds of copy work on a window of shared pages
  // around the fault (as fault-around), so a sequential pass pays one fault round trip
  // per window. Shared frames are charged to the budget once.
  //
  // Writes racing the call from other threads land on the side they were made on: a
  // write finished before the call is in both ranges, one made after it returns only in
  // this range, one made during it in both or in this range only (never lost, never in
  // the clone alone; the range is snapshot 128 MiB at a time, so two writes during the
  // call may fall on different sides of it). `name` empty: this range's name + "-clone". Release either range
  // at any time, in any order: frames and slots are freed when no range uses them.
  //
  // Errors: FailedPrecondition (released; this kernel cannot write-protect userfaultfd
  // ranges — Linux 5.7+ for anonymous memory; or the runtime has a budget and not
  // RuntimeOptions::clones_with_budget); ResourceExhausted (no address space, no frame
  // left for page tables, or none for a copy of a page mapped but not by uvmem: what was
  // shared is given back, nothing is cloned); Internal (the kernel
  // refused the registration or the write-protection). Thread-safe; the cost is one
  // page-table walk of this range and one UFFDIO_WRITEPROTECT per 128 MiB of it.
  absl::StatusOr<Range> Clone(std::string_view name = {}) const;

 private:
  friend class Runtime;
  Range(internal::RuntimeImpl* runtime, internal::VmRange* range)
      : runtime_(runtime), range_(range) {}
  internal::RuntimeImpl* runtime_ = nullptr;
  internal::VmRange* range_ = nullptr;
};

class Runtime {
 public:
  // Opens userfaultfd, reserves the frame pool and starts the fault threads. Errors:
  //   Unimplemented      the kernel has no userfaultfd;
  //   PermissionDenied   userfaultfd is forbidden to this process, or only the
  //                      user-mode-only kind is available and allow_user_mode_only is
  //                      false (the message says what that would cost and how to fix it);
  //   InvalidArgument    bad options (sizes, fault_around_pages, thread count);
  //   ResourceExhausted  the pool's address space cannot be reserved, prefault_pool
  //                      cannot back it, or the process is out of file descriptors;
  //   Internal           the kernel refused UFFDIO_API or the registration of an arena.
  static absl::StatusOr<std::unique_ptr<Runtime>> Create(const RuntimeOptions& options);

  // Stops the fault threads and releases the pool. REQUIRES: every Range of this runtime
  // was released or destroyed (fatal otherwise: their memory would stop being served).
  ~Runtime();

  // Reserves `length_bytes` (rounded up to 4 KiB; > 0) of address space, registers it
  // with userfaultfd and returns its handle. No frame is used until a page is touched.
  // Errors: InvalidArgument (zero length, a policy naming a node this machine lacks,
  // an empty interleave set), ResourceExhausted (no address space), Internal (register).
  absl::StatusOr<Range> Reserve(std::size_t length_bytes, const RangeOptions& options = {});

  // A snapshot of every counter: released ranges included, live ranges read racily (each
  // value is exact, the set is not atomic). Latency percentiles are bucket bounds (±25 %)
  // of the handler's time per message, readahead included. Costs O(ranges + CPUs).
  RuntimeStats Stats() const;
  // The fault-around window in pages and whether faults use MOVE (else COPY).
  std::size_t fault_around_pages() const;
  bool uses_move() const;

 private:
  explicit Runtime(std::unique_ptr<internal::RuntimeImpl> impl);
  std::unique_ptr<internal::RuntimeImpl> impl_;
};

}  // namespace uvmem

#endif  // UVMEM_RUNTIME_H_
