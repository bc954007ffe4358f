#include "vm/runtime_impl.h"

#include <absl/strings/str_cat.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "platform/cpu.h"
#include "platform/kernel_info.h"
#include "platform/memory_map.h"
#include "platform/report.h"

namespace uvmem::internal {
namespace {

constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;
constexpr std::size_t kZeroSourceBytes = DemandZeroFiller::kMaxWindowPages * kPageSize;

absl::Status CheckOptions(const RuntimeOptions& o) {
  const std::size_t far = o.fault_around_pages;
  if (far < 1 || far > DemandZeroFiller::kMaxWindowPages || (far & (far - 1)) != 0) {
    return absl::InvalidArgumentError(
        fmt::format("fault_around_pages is {}; it must be a power of two from 1 to 512", far));
  }
  if (o.fault_threads < 0 || o.fault_threads > 256) {
    return absl::InvalidArgumentError(
        fmt::format("fault_threads is {}; it must be 0 (one per node) to 256", o.fault_threads));
  }
  if (o.readahead_pages > 8192) {
    return absl::InvalidArgumentError(
        fmt::format("readahead_pages is {}; it must be at most 8192", o.readahead_pages));
  }
  if (o.pool_bytes_per_node == 0 && o.pool_bytes_total == 0) {
    return absl::InvalidArgumentError(
        "the frame pool is empty: set pool_bytes_total or pool_bytes_per_node");
  }
  if (o.budget_bytes != 0 && o.budget_bytes < (std::size_t{1} << 20)) {
    return absl::InvalidArgumentError(fmt::format(
        "budget_bytes is {} bytes; a resident budget must be at least 1 MiB (0: none)",
        o.budget_bytes));
  }
  return absl::OkStatus();
}

// InvalidArgument unless [first_page, first_page + pages) lies inside `range`.
absl::Status CheckPages(const char* what, const VmRange& range, std::uint64_t first_page,
                        std::uint64_t pages) {
  if (first_page <= range.pages() && pages <= range.pages() - first_page) return absl::OkStatus();
  return absl::InvalidArgumentError(
      fmt::format("{} of pages [{}, {}) of range '{}': the range has {} pages", what, first_page,
                  first_page + pages, range.name(), range.pages()));
}

}  // namespace

RuntimeImpl::RuntimeImpl(const RuntimeOptions& options, NumaTopology topology)
    : options_(options), topology_(std::move(topology)) {}

absl::StatusOr<std::unique_ptr<RuntimeImpl>> RuntimeImpl::Create(const RuntimeOptions& options) {
  if (absl::Status s = CheckOptions(options); !s.ok()) return s;
  auto probe = ProbeUserfaultfd();
  if (!probe.ok()) return probe.status();
  if (probe->mode == UffdMode::kUserModeOnly && !options.allow_user_mode_only) {
    return absl::PermissionDeniedError(
        "only a user-mode-only userfaultfd is available to this process: system calls that "
        "write into a missing page of a range (read(2) into a fresh buffer, recv) would fail "
        "with EFAULT instead of being served. Run as root (or with CAP_SYS_PTRACE), grant "
        "read-write access to /dev/userfaultfd, set sysctl vm.unprivileged_userfaultfd=1, or "
        "accept the cost with RuntimeOptions::allow_user_mode_only");
  }
  std::uint64_t wanted = kUffdFeatureThreadId;
  if (probe->features.poison()) wanted |= kUffdFeaturePoison;
  const bool use_move = options.use_move && probe->features.move();
  const bool want_swap = options.budget_bytes != 0;
  if (want_swap && !use_move) {
    return absl::FailedPreconditionError(fmt::format(
        "a resident budget needs UFFDIO_MOVE to take pages out of a range while they are "
        "written to swap (Linux 6.8+){}",
        options.use_move ? "; this kernel lacks it" : ", and use_move is false"));
  }
  // Write-protection (UFFD_FEATURE_PAGEFAULT_FLAG_WP, 5.7+): copy-on-write clones trap
  // the first write to a shared page (cow.h), and with a budget reclaim watches pages for
  // writes — PAGEMAP_SCAN's written bit is the missing uffd-wp bit — to find clean pages
  // and referenced ones (reclaim.h, swap_in.h). With a budget and no clones, WP_ASYNC lets
  // the kernel lift that protection itself (no round trip); clones need the fault to stop
  // here, and WP_ASYNC is per userfaultfd, so a budget with clones tracks synchronously.
  const bool have_wp = probe->features.pagefault_flag_wp();
  if (have_wp) wanted |= kUffdFeaturePagefaultFlagWp;
  const bool track_clean = want_swap && have_wp;
  const bool wp_async =
      track_clean && !options.clones_with_budget && probe->features.wp_async();
  if (wp_async) wanted |= kUffdFeatureWpAsync;
  // MOVE also needs the arenas registered (write-protect mode only: nothing in them
  // ever traps) so that frames can move back into them.
  if (use_move) wanted |= kUffdFeatureMove | kUffdFeaturePagefaultFlagWp;
  UffdOpenOptions open_options;
  open_options.nonblocking = true;
  open_options.allow_user_mode_only = options.allow_user_mode_only;
  auto uffd = Userfaultfd::Open(UffdFeatures(wanted) & probe->features, open_options);
  if (!uffd.ok()) return uffd.status();

  std::unique_ptr<RuntimeImpl> rt(new RuntimeImpl(options, NumaTopology::Detect()));
  rt->uffd_ = std::move(*uffd);
  FramePoolOptions pool_options;
  const auto nodes = static_cast<std::size_t>(rt->topology_.num_nodes());
  pool_options.bytes_per_node = options.pool_bytes_per_node != 0
                                    ? options.pool_bytes_per_node
                                    : std::max<std::size_t>(options.pool_bytes_total / nodes, 1);
  pool_options.prefault = options.prefault_pool;
  auto pool = FramePool::Create(pool_options, rt->topology_);
  if (!pool.ok()) return pool.status();
  rt->pool_ = std::move(*pool);
  const std::uint64_t budget_pages = options.budget_bytes >> kPageShift;
  if (budget_pages > rt->pool_->total_frames()) {
    return absl::InvalidArgumentError(fmt::format(
        "budget_bytes ({} MiB) is larger than the frame pool ({} MiB): the budget must fit in "
        "the pool (raise pool_bytes_total or lower the budget)",
        options.budget_bytes >> 20, rt->pool_->total_frames() >> 8));
  }
  rt->budget_ = std::make_unique<MemoryBudget>(budget_pages);
  rt->frames_ = std::make_unique<RangeFrames>(
      rt->pool_.get(), rt->budget_.get(),
      /*place_copies=*/rt->topology_.real() && rt->topology_.num_nodes() > 1);

  if (use_move) {
    for (const FramePool::Arena& arena : rt->pool_->Arenas()) {
      const UffdRegisterResult reg = rt->uffd_.Register(
          arena.base, arena.bytes, UffdRegisterModes{.missing = false, .wp = true});
      if (reg.error != 0 || !reg.ioctls.move()) {
        return absl::InternalError(fmt::format(
            "registering node {}'s frame arena for UFFDIO_MOVE failed ({}); use_move = false "
            "avoids it",
            arena.node.value, std::strerror(reg.error)));
      }
    }
  }

  SlabCacheOptions slab_options;
  slab_options.debug = options.slab_debug;
  auto tables = SlabCache::Create(rt->pool_.get(), "uvmem-pgtable", PageTable::kTableBytes,
                                  PageTable::kTableBytes, slab_options);
  if (!tables.ok()) return tables.status();
  rt->table_cache_ = std::move(*tables);
  auto ranges = SlabCache::Create(rt->pool_.get(), "uvmem-range", sizeof(VmRange), alignof(VmRange),
                                  slab_options);
  if (!ranges.ok()) return ranges.status();
  rt->range_cache_ = std::move(*ranges);

  // Never written: reading it maps the shared zero page, so it costs no memory.
  auto zero = ReserveAnonymous(kZeroSourceBytes, kPageSize);
  if (!zero.ok()) return zero.status();
  rt->zero_source_ = *zero;

  FillConfig fill;
  fill.use_move = use_move;
  fill.fault_around_pages = options.fault_around_pages;
  fill.have_poison = rt->uffd_.features().poison();
  fill.readahead_pages =
      options.readahead_pages / options.fault_around_pages * options.fault_around_pages;
  rt->filler_ =
      std::make_unique<DemandZeroFiller>(rt->frames_.get(), &rt->uffd_, rt->zero_source_, fill);
  rt->cow_ = std::make_unique<CopyOnWrite>(rt->frames_.get(), &rt->uffd_, rt->filler_.get());
  rt->filler_->SetCopyOnWrite(rt->cow_.get());
  rt->register_wp_ = rt->uffd_.features().pagefault_flag_wp();
  rt->clones_ = rt->register_wp_ && !rt->uffd_.features().wp_async();
  rt->space_ = std::make_unique<AddressSpace>();
  rt->fork_source_ = ForkCopySource{rt->space_.get(), nullptr, nullptr, rt->pool_.get(),
                                    &rt->cow_->counters()};
  if (want_swap) {
    if (absl::Status s = rt->StartSwap(track_clean); !s.ok()) return s;
  }
  rt->engine_ = std::make_unique<FaultEngine>(&rt->uffd_, rt->space_.get(), rt->filler_.get(),
                                              rt->cow_.get(), &rt->topology_);
  const int threads =
      options.fault_threads > 0 ? options.fault_threads : std::max(1, rt->topology_.num_nodes());
  if (absl::Status s = rt->engine_->Start(threads); !s.ok()) return s;
  return rt;
}

RuntimeImpl::~RuntimeImpl() {
  if (space_ && space_->size() != 0) {
    ReportFatal(
        "runtime destroyed with {} live ranges: release every Range first (their "
        "memory would stop being served)",
        space_->size());
  }
  engine_.reset();  // joins the fault threads before anything they use goes away
  if (fork_registered_) UnregisterForkCopy(&fork_source_);
  reclaimer_.reset();
  swap_in_.reset();
  space_.reset();
  cow_.reset();
  filler_.reset();
  if (zero_source_) (void)ReleaseMapping(zero_source_, kZeroSourceBytes);
  uffd_ = Userfaultfd();
  range_cache_.reset();
  table_cache_.reset();
  pagemap_.reset();
  swap_.reset();
  frames_.reset();
  pool_.reset();
}

absl::Status RuntimeImpl::StartSwap(bool track_clean) {
  SwapDeviceOptions device;
  device.path = options_.swap_path;
  device.max_bytes = options_.swap_max_bytes;
  // Room for everything the pool could hold (the file is sparse: disk is used only by
  // slots written), and at least 4 × the budget.
  device.default_bytes = std::max<std::uint64_t>(std::uint64_t{4} * options_.budget_bytes,
                                                 pool_->total_frames() << kPageShift);
  auto swap = SwapDevice::Open(device);
  if (!swap.ok()) {
    return absl::Status(swap.status().code(),
                        absl::StrCat("swap device: ", swap.status().message()));
  }
  swap_ = std::move(*swap);
  if (track_clean) {
    auto pagemap = PagemapScanner::Open();
    if (pagemap.ok()) {
      pagemap_ = std::make_unique<PagemapScanner>(std::move(*pagemap));
    } else {
      track_clean = false;  // every evicted page is written
    }
  }
  reclaimer_ = std::make_unique<Reclaimer>(frames_.get(), &uffd_, space_.get(), pagemap_.get());
  reclaimer_->SetCopyOnWrite(cow_.get());
  swap_in_ = std::make_unique<SwapIn>(frames_.get(), &uffd_, filler_.get(), track_clean);
  if (absl::Status s = swap_in_->Init(); !s.ok()) return s;
  frames_->AttachSwap(swap_.get(), reclaimer_.get());
  filler_->SetSwapIn(swap_in_.get());
  cow_->SetSwapIn(swap_in_.get());
  if (absl::Status s = reclaimer_->Start(); !s.ok()) return s;
  fork_source_.swap = swap_.get();
  fork_source_.reclaimer = reclaimer_.get();
  fork_registered_ = RegisterForkCopy(&fork_source_);
  return absl::OkStatus();
}

std::uint64_t RuntimeImpl::DropEntry(Pte pte) {
  if (PteHasFrame(pte)) {
    frames_->Free(PteFrame(pte));
    return 1;
  }
  if (PteIsSwapped(pte)) swap_->Unref(SwapSlot{PteSlot(pte)});
  return 0;
}

absl::StatusOr<ResolvedPolicy> RuntimeImpl::Resolve(const NumaPolicy& policy) const {
  ResolvedPolicy out;
  out.kind = policy.kind;
  const std::size_t want = policy.nodes.size();
  switch (policy.kind) {
    case NumaPolicy::Kind::kLocal:
      if (want != 0) return absl::InvalidArgumentError("the local NUMA policy takes no nodes");
      return out;
    case NumaPolicy::Kind::kBind:
    case NumaPolicy::Kind::kPreferred:
      if (want != 1) {
        return absl::InvalidArgumentError(
            fmt::format("bind and preferred NUMA policies take one node; got {}", want));
      }
      break;
    case NumaPolicy::Kind::kInterleave:
      if (want == 0 || want > ResolvedPolicy::kMaxNodes) {
        return absl::InvalidArgumentError(
            fmt::format("an interleave NUMA policy takes 1 to {} nodes; got {}",
                        ResolvedPolicy::kMaxNodes, want));
      }
      break;
  }
  std::vector<NodeId> nodes = policy.nodes;
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  for (NodeId node : nodes) {
    if (!topology_.has_node(node)) {
      return absl::InvalidArgumentError(
          fmt::format("NUMA node {} does not exist here; this machine has {} node(s):\n{}",
                      node.value, topology_.num_nodes(), topology_.ToString()));
    }
    out.nodes[out.num_nodes++] = node;
  }
  out.interleave_offset_32 = KernelInterleaveUses32BitOffset();
  return out;
}

absl::StatusOr<FillWindow> RuntimeImpl::ResolveWindow(const RangeOptions& options) const {
  FillWindow window;
  const std::size_t far =
      options.fault_around_pages != 0 ? options.fault_around_pages : options_.fault_around_pages;
  if (far > DemandZeroFiller::kMaxWindowPages || (far & (far - 1)) != 0) {
    return absl::InvalidArgumentError(fmt::format(
        "RangeOptions::fault_around_pages is {}; it must be 0 (the runtime's) or a power of "
        "two from 1 to 512",
        far));
  }
  const std::size_t readahead = options.readahead_pages == RangeOptions::kRuntimeDefault
                                    ? options_.readahead_pages
                                    : options.readahead_pages;
  if (readahead > 8192) {
    return absl::InvalidArgumentError(
        fmt::format("RangeOptions::readahead_pages is {}; it must be at most 8192", readahead));
  }
  window.fault_around_pages = static_cast<std::uint32_t>(far);
  window.readahead_pages = static_cast<std::uint32_t>(readahead / far * far);
  return window;
}

absl::Status RuntimeImpl::ApplyMempolicy(void* start, std::size_t length_bytes,
                                         const ResolvedPolicy& policy) const {
  if (!topology_.real()) return absl::OkStatus();
  switch (policy.kind) {
    case NumaPolicy::Kind::kLocal:
      return absl::OkStatus();
    case NumaPolicy::Kind::kBind:
      return BindToNode(start, length_bytes, policy.nodes[0]);
    case NumaPolicy::Kind::kPreferred:
      return PreferNode(start, length_bytes, policy.nodes[0]);
    case NumaPolicy::Kind::kInterleave:
      return InterleaveOverNodes(start, length_bytes,
                                 absl::MakeConstSpan(policy.nodes, policy.num_nodes));
  }
  return absl::OkStatus();
}

absl::StatusOr<VmRange*> RuntimeImpl::Reserve(std::size_t length_bytes,
                                              const RangeOptions& options) {
  if (length_bytes == 0) return absl::InvalidArgumentError("Reserve: length is 0 bytes");
  if (length_bytes > (std::size_t{1} << 48)) {
    return absl::InvalidArgumentError(
        fmt::format("Reserve: {} bytes is more than the 256 TiB a range may span", length_bytes));
  }
  auto policy = Resolve(options.numa);
  if (!policy.ok()) return policy.status();
  auto window = ResolveWindow(options);
  if (!window.ok()) return window.status();
  return ReserveResolved(PagesForBytes(length_bytes).bytes(), options.name, *policy, *window);
}

absl::StatusOr<VmRange*> RuntimeImpl::ReserveResolved(std::size_t length, std::string_view name,
                                                      const ResolvedPolicy& policy,
                                                      FillWindow window) {
  auto memory = ReserveAnonymous(length, length >= kHugePageBytes ? kHugePageBytes : kPageSize);
  if (!memory.ok()) {
    return absl::Status(memory.status().code(),
                        absl::StrCat("Reserve of ", length, " bytes: ", memory.status().message(),
                                     " (check `ulimit -v`, vm.max_map_count and "
                                     "vm.overcommit_memory)"));
  }
  void* start = *memory;
  auto fail = [&](absl::Status status) {
    (void)ReleaseMapping(start, length);
    return status;
  };
  // The VMA carries the range's policy (bind, preferred, interleave; none for local):
  // pages the kernel makes for UFFDIO_COPY follow it, and the kernel's automatic NUMA
  // balancing leaves the range alone as it does any mbind'ed memory (copy_placement.h).
  if (absl::Status s = ApplyMempolicy(start, length, policy); !s.ok()) return fail(s);
  // uvmem maps 4 KiB frames. With THP "always", khugepaged would collapse a range's full
  // 2 MiB stretches into huge pages of its own, on the node it picks (the 4-node guest saw
  // interleaved ranges gather on node 0), behind the pool's back: placement and per-node
  // statistics would no longer hold. (A kernel without THP refuses; nothing to keep away.)
  (void)AdviseHugePages(start, length, /*enable=*/false);
  const UffdRegisterResult reg =
      uffd_.Register(start, length, UffdRegisterModes{.missing = true, .wp = register_wp_});
  if (reg.error != 0) {
    return fail(absl::InternalError(fmt::format(
        "UFFDIO_REGISTER of {} bytes failed: {}{}", length, std::strerror(reg.error),
        reg.error == ENOMEM ? " (the process is near vm.max_map_count: release ranges or raise it)"
                            : "")));
  }
  void* slot = range_cache_->Allocate();
  if (slot == nullptr) {
    (void)uffd_.Unregister(start, length);
    return fail(absl::ResourceExhaustedError(
        "Reserve: the frame pool has no frame left for the range descriptor; raise "
        "RuntimeOptions::pool_bytes_total (or pool_bytes_per_node)"));
  }
  auto* range = new (slot) VmRange(table_cache_.get(), reinterpret_cast<std::uintptr_t>(start),
                                   length, name, policy, window);
  if (absl::Status s = space_->Add(range); !s.ok()) {
    (void)uffd_.Unregister(start, length);
    range->~VmRange();
    range_cache_->Free(range);
    return fail(s);
  }
  return range;
}

absl::StatusOr<VmRange*> RuntimeImpl::Clone(VmRange& source, std::string_view name) {
  if (!register_wp_) {
    return absl::FailedPreconditionError(
        "Clone: this kernel cannot write-protect userfaultfd ranges "
        "(UFFD_FEATURE_PAGEFAULT_FLAG_WP for anonymous memory, Linux 5.7+), so a write could "
        "not be kept from the clone");
  }
  if (!clones_) {
    return absl::FailedPreconditionError(
        "Clone: this runtime has a budget and tracks dirty pages with WP_ASYNC, under which "
        "the kernel would let a write reach a clone; create it with "
        "RuntimeOptions::clones_with_budget = true to clone ranges under a budget (swap's "
        "dirty tracking then costs a fault round trip per watched page written)");
  }
  const std::string clone_name =
      name.empty() ? fmt::format("{}-clone", source.name()) : std::string(name);
  auto clone = ReserveResolved(source.length_bytes(), clone_name, source.policy(),
                               FillWindow{static_cast<std::uint32_t>(source.fault_around_pages()),
                                          static_cast<std::uint32_t>(source.readahead_pages())});
  if (!clone.ok()) return clone.status();
  if (absl::Status s = cow_->Clone(source, **clone); !s.ok()) {
    (void)Release(*clone);  // gives back what was shared so far
    return s;
  }
  // A forked child must see a clone's pages that live in other ranges (fork_copy.h).
  if (!fork_registered_.exchange(true)) {
    if (!RegisterForkCopy(&fork_source_)) fork_registered_ = false;
  }
  return *clone;
}

void RuntimeImpl::DropSharedEntries(VmRange& range) {
  PageTable& table = range.page_table();
  table.ForEach([&](std::uint64_t page, Pte pte) {
    if (!PteIsSharedHolder(pte) && !PteIsCow(pte)) return;
    table.Lookup(page)->store(cow_->DropShared(range, page, pte), std::memory_order_release);
  });
}

absl::Status RuntimeImpl::Release(VmRange* range) {
  void* start = nullptr;
  {
    // Held from removal until the range's counters are in released_, so Stats() never
    // sees the range in neither place (totals never go backwards).
    MutexLock lock(&released_mu_);
    if (range == nullptr || !space_->Remove(range)) {
      return absl::FailedPreconditionError("Release: the range is not live (released twice?)");
    }
    start = reinterpret_cast<void*>(range->start());
    // Unregistering wakes threads blocked in faults; they fault again on plain memory.
    if (const int err = uffd_.Unregister(start, range->length_bytes()); err != 0) {
      // Still registered (e.g. ENOMEM splitting a VMA near vm.max_map_count): keep the
      // range live and served rather than leave its pages unserved.
      (void)space_->Add(range);
      return absl::InternalError(
          fmt::format("Release of range '{}': UFFDIO_UNREGISTER failed ({}); the range stays live",
                      range->name(), std::strerror(err)));
    }
    while (range->inflight.load(std::memory_order_acquire) != 0) YieldCpu();
    AddCounters(StatsOf(*range), &released_);
  }
  // Pages other ranges still share are preserved for them (or handed back) while this
  // range's memory is still mapped.
  DropSharedEntries(*range);
  if (filler_->config().use_move) MoveFramesBack(*range);
  if (absl::Status s = ReleaseMapping(start, range->length_bytes()); !s.ok()) {
    ReportWarning("Release of range '{}': munmap failed ({}); its address space leaks",
                  range->name(), std::string(s.message()));
  }
  range->page_table().ForEach([&](std::uint64_t, Pte pte) { (void)DropEntry(pte); });
  range->~VmRange();
  range_cache_->Free(range);
  return absl::OkStatus();
}

absl::StatusOr<std::uint64_t> RuntimeImpl::Discard(VmRange& range, std::uint64_t first_page,
                                                   std::uint64_t pages) {
  if (absl::Status s = CheckPages("Discard", range, first_page, pages); !s.ok()) return s;
  if (pages == 0) return 0;
  // 1. Claim every resident page (present → claimed|discarded, the frame kept in the
  //    entry) so that no fault thread refills one between the madvise and the entry update
  //    (a stale fault message would otherwise map a zero page the table does not know:
  //    "untracked", which later moves and swaps would miss). Swapped pages let their slot
  //    go; pages being read back or written out are marked for their owner to drop.
  // 2. madvise(MADV_DONTNEED) the stretch.
  // 3. Free the claimed frames, empty their entries, and wake threads that touched them.
  // A page a fault thread fills meanwhile from empty fills zeros: never stale bytes.
  constexpr Pte kDiscarding = kPteClaimed | kPteDiscarded;
  constexpr Pte kStateBits = (Pte{1} << kPteFrameShift) - 1;
  PageTable& table = range.page_table();
  VmRangeCounters& c = range.counters();
  const std::uint64_t end = first_page + pages;
  auto for_each_entry = [&](auto&& fn) {
    for (std::uint64_t page = first_page; page < end;) {
      // One leaf table (512 entries) at a time; a missing table means no page was touched.
      const std::uint64_t leaf_end =
          std::min(end, (page | (PageTable::kEntriesPerTable - 1)) + 1);
      std::atomic<Pte>* entry = table.Lookup(page);
      if (entry == nullptr) {
        page = leaf_end;
        continue;
      }
      for (; page < leaf_end; ++page, ++entry) fn(page, *entry);
    }
  };
  for_each_entry([&](std::uint64_t page, std::atomic<Pte>& entry) {
    for (;;) {
      Pte pte = entry.load(std::memory_order_acquire);
      Pte next;
      if (pte == 0 || (pte & kPteDiscarded) != 0) return;
      if (PteIsSharedHolder(pte) || PteIsCow(pte)) {
        // Shared with a clone: the others keep the bytes (preserved before the madvise);
        // a frame this range alone names now is discarded as any page.
        if (!entry.compare_exchange_weak(pte, kPteClaimed, std::memory_order_acq_rel)) continue;
        const Pte left = cow_->DropShared(range, page, pte);
        entry.store(left != 0 ? kDiscarding | (left & ~kStateBits) : 0, std::memory_order_release);
        return;
      }
      if (PteIsClaimed(pte)) {
        if (!(pte & kPteSwapped)) {
          // A fill (it fills zeros), or a page in a copy-on-write step or a clone call,
          // whose owner restores it: wait for it to settle.
          YieldCpu();
          continue;
        }
        next = pte | kPteDiscarded;        // a swap-in: the reader drops it (swap_in.h)
      } else if (PteInWriteback(pte) && (pte & kPteShared) != 0) {
        YieldCpu();  // a shared page being evicted: its bytes must reach the others first
        continue;
      } else if (PteInWriteback(pte)) {
        next = pte | kPteDiscarded;  // reclaim owns it until its write ends; then drops it
      } else if (PteHasFrame(pte)) {
        next = kDiscarding | (pte & ~kStateBits);
      } else {
        next = 0;  // swapped (its slot goes below), foreign or poisoned
      }
      if (!entry.compare_exchange_weak(pte, next, std::memory_order_acq_rel)) continue;
      if (PteIsSwapped(pte)) {
        swap_->Unref(SwapSlot{PteSlot(pte)});
        c.swapped_pages.fetch_sub(1, std::memory_order_relaxed);
      }
      return;
    }
  });
  const int err = DiscardPages(range.PageAddress(first_page), pages << kPageShift);
  std::uint64_t freed = 0;
  for_each_entry([&](std::uint64_t, std::atomic<Pte>& entry) {
    Pte pte = entry.load(std::memory_order_acquire);
    if ((pte & kStateBits) != kDiscarding) return;  // not claimed by a discard
    const FrameNumber frame = PteFrame(pte);
    // Compare-and-swap: of two discards over one page, one frees its frame.
    const Pte next = err != 0 ? MakePresentPte(frame) : 0;  // madvise failed: page stays
    if (!entry.compare_exchange_strong(pte, next, std::memory_order_acq_rel) || err != 0) return;
    FrameDescriptor& d = pool_->Descriptor(frame);
    // A moved-in frame's page was the one just dropped: the slot is a hole now. A copied
    // page was the kernel's own; the frame's slot is as it was.
    if (d.flags & kFrameInRange) d.flags = kFrameHole;
    frames_->Free(frame);
    ++freed;
  });
  (void)uffd_.Wake(range.PageAddress(first_page), pages << kPageShift);
  if (err != 0) {
    return absl::InternalError(fmt::format("Discard in range '{}': madvise failed ({})",
                                           range.name(), std::strerror(err)));
  }
  c.resident_pages.fetch_sub(freed, std::memory_order_relaxed);
  c.pages_discarded.fetch_add(freed, std::memory_order_relaxed);
  return freed;
}

absl::StatusOr<std::uint64_t> RuntimeImpl::Populate(VmRange& range, std::uint64_t first_page,
                                                    std::uint64_t pages) {
  if (absl::Status s = CheckPages("Populate", range, first_page, pages); !s.ok()) return s;
  const NodeId local = topology_.node_id(topology_.node_index_of_cpu(CurrentCpu()));
  return filler_->Populate(range, first_page, first_page + pages, local);
}

bool RuntimeImpl::MovePages(VmRange& range, std::uint64_t src_page, std::uint64_t dst_page,
                            std::uint64_t pages, std::uint64_t* moved_prefix_pages) {
  *moved_prefix_pages = 0;
  if (!filler_->config().use_move || src_page > range.pages() || dst_page > range.pages() ||
      pages > range.pages() - src_page || pages > range.pages() - dst_page ||
      (src_page < dst_page + pages && dst_page < src_page + pages)) {
    return false;
  }
  PageTable& table = range.page_table();
  // Runs of filled source pages, each moved with one ioctl; `run_ptes` holds their
  // entries (the destination entries are claimed meanwhile, so no fault thread fills them).
  constexpr std::uint64_t kMaxRun = 64;
  Pte run_ptes[kMaxRun];
  std::atomic<Pte>* run_to[kMaxRun];
  std::atomic<Pte>* run_from[kMaxRun];
  std::uint64_t run_start = 0, run_length = 0;
  auto flush = [&]() -> bool {
    if (run_length == 0) return true;
    const UffdResult r =
        uffd_.Move(range.PageAddress(dst_page + run_start), range.PageAddress(src_page + run_start),
                   run_length << kPageShift, UffdMoveMode{.dontwake = true});
    const std::uint64_t done = std::min<std::uint64_t>(r.bytes_done >> kPageShift, run_length);
    for (std::uint64_t k = 0; k < run_length; ++k) {
      if (k < done) {
        run_to[k]->store(run_ptes[k], std::memory_order_release);
        run_from[k]->store(0, std::memory_order_release);
      } else {
        run_to[k]->store(0, std::memory_order_release);  // not moved: the caller copies
        run_from[k]->store(run_ptes[k], std::memory_order_release);
      }
    }
    const bool all = done == run_length;
    *moved_prefix_pages = run_start + done;
    run_length = 0;
    return all;
  };
  for (std::uint64_t i = 0; i < pages; ++i) {
    std::atomic<Pte>* from = table.Lookup(src_page + i);
    Pte pte = from != nullptr ? from->load(std::memory_order_acquire) : 0;
    if (pte == 0) {
      // Never filled (or discarded): it reads zero, and so does an empty destination
      // page. A destination page in use (a reused block) must be overwritten: the
      // caller copies from here.
      std::atomic<Pte>* to = table.Lookup(dst_page + i);
      if (to != nullptr && to->load(std::memory_order_acquire) != 0) {
        (void)flush();
        return false;
      }
      if (!flush()) return false;
      *moved_prefix_pages = i + 1;
      continue;
    }
    // Only resident pages move (a swapped one is copied by the caller, which reads it
    // back); the source entry is claimed so reclaim cannot take the page meanwhile.
    std::atomic<Pte>* to = table.LookupOrCreate(dst_page + i);
    Pte empty = 0;
    if (!PteHasFrame(pte) || (pte & kPteShared) != 0 || to == nullptr ||
        !from->compare_exchange_strong(pte, kPteClaimed, std::memory_order_acq_rel)) {
      (void)flush();
      return false;
    }
    if (!to->compare_exchange_strong(empty, kPteClaimed, std::memory_order_acq_rel)) {
      from->store(pte, std::memory_order_release);
      (void)flush();
      return false;
    }
    if (run_length == 0) run_start = i;
    run_ptes[run_length] = pte;
    run_to[run_length] = to;
    run_from[run_length] = from;
    if (++run_length == kMaxRun && !flush()) return false;
  }
  return flush();
}

void RuntimeImpl::MoveFramesBack(VmRange& range) {
  // The range's pages move into their frames' arena slots, in runs of consecutive pages
  // on consecutive frames: pages that were moved in go home, and pages the kernel made for
  // a COPY become the token frame's page. The pool keeps the memory on its node, and the
  // next fill of those frames is a move instead of a copy. A page the program discarded
  // is a hole in the range (ALLOW_SRC_HOLES); its frame comes back unknown and is zeroed
  // on reuse. A frame whose slot is backed already (EEXIST) keeps that page.
  //
  // With several nodes a page goes home only if it is on its frame's node: NUMA balancing
  // may have migrated a local range's page, and a forked parent's CoW copy lands where the
  // kernel chose. Moved into the arena it would hand another range — a bind range, say —
  // a page on the wrong node; left out, it is unmapped with the range and its frame
  // becomes a hole.
  const bool check_nodes = topology_.real() && topology_.num_nodes() > 1;
  constexpr std::uint64_t kMaxMoveBackRun = 512;  // pages asked about per move_pages call
  std::uint64_t run_page = 0, run_length = 0;
  FrameNumber run_frame;
  auto move_run = [&](std::uint64_t page, FrameNumber frame, std::uint64_t length) {
    while (length != 0) {
      const UffdResult result = uffd_.Move(pool_->FrameAddress(frame), range.PageAddress(page),
                                           length << kPageShift,
                                           UffdMoveMode{.dontwake = true, .allow_src_holes = true});
      std::uint64_t done = result.bytes_done >> kPageShift;
      for (std::uint64_t k = 0; k < done; ++k) pool_->Descriptor(frame + k).flags = 0;
      if (result.ok()) break;
      if (result.error == EEXIST && done < length) {
        pool_->Descriptor(frame + done).flags = 0;  // its own page is in the slot
        ++done;
      } else if ((result.error == EINVAL || result.error == ENOENT) && length - done > 1) {
        // The run crosses a VMA boundary inside the range (a program's mprotect, uvmem's
        // own per-page policy after a fallback): page by page, each in one VMA.
        for (std::uint64_t k = done; k < length; ++k) {
          const UffdResult one = uffd_.Move(pool_->FrameAddress(frame + k),
                                            range.PageAddress(page + k), kPageSize,
                                            UffdMoveMode{.dontwake = true, .allow_src_holes = true});
          pool_->Descriptor(frame + k).flags = one.ok() || one.error == EEXIST ? 0 : kFrameHole;
        }
        break;
      } else {
        // Not moved (EBUSY: shared after fork, ...): unmapped with the range.
        for (std::uint64_t k = done; k < length; ++k) pool_->Descriptor(frame + k).flags = kFrameHole;
        break;
      }
      page += done;
      frame = frame + done;
      length -= done;
    }
  };
  auto flush = [&] {
    if (run_length == 0) return;
    if (!check_nodes) {
      move_run(run_page, run_frame, run_length);
      run_length = 0;
      return;
    }
    void* pages[kMaxMoveBackRun];
    int nodes[kMaxMoveBackRun];
    for (std::uint64_t k = 0; k < run_length; ++k) pages[k] = range.PageAddress(run_page + k);
    if (!QueryPageNodes(absl::MakeConstSpan(pages, run_length), absl::MakeSpan(nodes, run_length))
             .ok()) {
      for (std::uint64_t k = 0; k < run_length; ++k) nodes[k] = -1;
    }
    const int home = pool_->NodeOf(run_frame).value;  // a run's frames are one node's
    std::uint64_t k = 0;
    while (k < run_length) {
      std::uint64_t j = k;
      // A hole (-ENOENT: discarded) moves as ALLOW_SRC_HOLES allows; a page elsewhere not.
      auto goes_home = [&](std::uint64_t q) { return nodes[q] == home || nodes[q] == -ENOENT; };
      const bool home_run = goes_home(k);
      while (j < run_length && goes_home(j) == home_run) ++j;
      if (home_run) {
        move_run(run_page + k, run_frame + k, j - k);
      } else {
        for (std::uint64_t q = k; q < j; ++q) pool_->Descriptor(run_frame + q).flags = kFrameHole;
      }
      k = j;
    }
    run_length = 0;
  };
  range.page_table().ForEach([&](std::uint64_t page, Pte pte) {
    if (!PteHasFrame(pte)) return;
    const FrameNumber frame = PteFrame(pte);
    if (!(pool_->Descriptor(frame).flags & (kFrameInRange | kFrameHole))) {
      flush();  // the frame's slot is backed: nowhere to move the page
      return;
    }
    const bool extends =
        run_length != 0 && page == run_page + run_length && frame == run_frame + run_length &&
        static_cast<char*>(pool_->FrameAddress(run_frame)) + (run_length << kPageShift) ==
            pool_->FrameAddress(frame);
    if (!extends || run_length == kMaxMoveBackRun) {
      flush();
      run_page = page;
      run_frame = frame;
    }
    ++run_length;
  });
  flush();
}

RangeStats RuntimeImpl::StatsOf(const VmRange& range) const {
  const VmRangeCounters& c = range.counters();
  auto get = [](const std::atomic<std::uint64_t>& v) { return v.load(std::memory_order_relaxed); };
  RangeStats s;
  s.name = std::string(range.name());
  s.start = range.start();
  s.length_bytes = range.length_bytes();
  s.faults = get(c.faults);
  s.pages_filled = get(c.pages_filled);
  s.fault_around_pages = get(c.fault_around_pages);
  s.pages_moved = get(c.pages_moved);
  s.pages_copied = get(c.pages_copied);
  s.races_lost = get(c.races_lost);
  s.resident_pages = get(c.resident_pages);
  s.peak_resident_pages = get(c.peak_resident_pages);
  s.oom_kills = get(c.oom_kills);
  s.discarded_refills = get(c.discarded_refills);
  s.pages_discarded = get(c.pages_discarded);
  s.pages_populated = get(c.pages_populated);
  s.swapped_pages = get(c.swapped_pages);
  s.pages_swapped_out = get(c.pages_swapped_out);
  s.pages_swapped_in = get(c.pages_swapped_in);
  s.shared_pages = get(c.shared_pages);
  s.cow_copies = get(c.cow_copies);
  s.cow_moves = get(c.cow_moves);
  s.page_table_bytes = const_cast<VmRange&>(range).page_table().table_bytes();
  return s;
}

void RuntimeImpl::AddCounters(const RangeStats& range, RuntimeStats* total) {
  total->faults += range.faults;
  total->pages_filled += range.pages_filled;
  total->fault_around_pages += range.fault_around_pages;
  total->pages_moved += range.pages_moved;
  total->pages_copied += range.pages_copied;
  total->races_lost += range.races_lost;
  total->oom_kills += range.oom_kills;
}

RuntimeStats RuntimeImpl::Stats() const {
  RuntimeStats s;
  std::vector<VmRange*> live;
  {
    // One consistent cut: a range is either live here or in released_ (Release moves
    // it under the same lock).
    MutexLock lock(&released_mu_);
    s = released_;
    live = space_->Snapshot();  // pinned: Release waits for us
  }
  for (VmRange* range : live) {
    const RangeStats r = StatsOf(*range);
    AddressSpace::Unpin(range);
    AddCounters(r, &s);
    s.resident_pages += r.resident_pages;
    s.metadata_bytes += r.page_table_bytes + sizeof(VmRange);
    ++s.ranges;
  }
  s.fault_latency_p50_ns = engine_->latency().Percentile(0.50);
  s.fault_latency_p99_ns = engine_->latency().Percentile(0.99);
  for (const NodeFrameStats& n : pool_->Stats()) {
    RuntimeStats::Node node;
    node.node = n.node;
    node.total_frames = n.total_frames;
    node.free_frames = n.free_frames + n.percpu_frames;
    node.used_frames = n.total_frames - node.free_frames;
    node.peak_used_frames = n.total_frames - n.min_free_frames;
    s.nodes.push_back(node);
  }
  s.move_used = filler_->config().use_move;
  const SlabCacheStats caches[] = {table_cache_->Stats(), range_cache_->Stats()};
  s.slabinfo = FormatSlabInfo(caches);
  s.uffd_mode = std::string(UffdModeName(uffd_.mode()));
  s.swap = SwapStatsNow();
  if (swap_) s.metadata_bytes += swap_->metadata_bytes();
  const CowCounters& cow = cow_->counters();
  auto get = [](const std::atomic<std::uint64_t>& v) { return v.load(std::memory_order_relaxed); };
  s.clone.clones = get(cow.clones);
  s.clone.shared_frames = get(cow.shared_frames);
  s.clone.shared_pages = get(cow.shared_pages);
  s.clone.cow_copies_source_side = get(cow.copies_source_side);
  s.clone.cow_copies_clone_side = get(cow.copies_clone_side);
  s.clone.cow_moves = get(cow.moves);
  s.clone.shared_swap_slots = swap_ ? swap_->Stats().slots_shared : 0;
  s.clone.bytes_saved = (s.clone.shared_pages - s.clone.shared_frames) << kPageShift;
  return s;
}

SwapStats RuntimeImpl::SwapStatsNow() const {
  SwapStats s;
  if (!swap_) return s;
  auto get = [](const std::atomic<std::uint64_t>& v) { return v.load(std::memory_order_relaxed); };
  const SwapDeviceStats device = swap_->Stats();
  const ReclaimCounters& rc = reclaimer_->counters();
  const SwapInCounters& in = swap_in_->counters();
  s.enabled = true;
  s.device = swap_->description();
  s.budget_pages = budget_->budget_pages();
  s.low_watermark_pages = budget_->low_pages();
  s.high_watermark_pages = budget_->high_pages();
  s.slots_total = device.slots_total;
  s.slots_used = device.slots_used;
  s.pages_swapped_out = get(rc.pages_swapped_out);
  s.pages_swapped_in = get(in.pages_swapped_in);
  s.bytes_written = device.bytes_written;
  s.bytes_read = device.bytes_read;
  s.clean_pages_dropped = get(rc.clean_pages_dropped);
  s.refaults = get(in.refaults);
  s.readahead_pages = get(in.readahead_pages);
  s.readahead_hits = get(rc.readahead_hits);
  s.write_errors = device.write_errors;
  s.read_errors = device.read_errors;
  s.checksum_errors = device.checksum_errors;
  s.busy_pages = get(rc.busy_pages);
  s.swap_full = get(rc.swap_full);
  s.reclaim_passes = get(rc.reclaim_passes);
  s.direct_reclaims = get(rc.direct_reclaims);
  s.budget_exhausted = get(rc.budget_exhausted);
  s.swapin_latency_p50_ns = swap_in_->latency().Percentile(0.50);
  s.swapin_latency_p99_ns = swap_in_->latency().Percentile(0.99);
  return s;
}

}  // namespace uvmem::internal
