#include "vm/fork_copy.h"

#include <pthread.h>

#include <atomic>
#include <csignal>
#include <cstring>

#include "platform/memory_map.h"
#include "platform/report.h"
#include "platform/spin_lock.h"
#include "platform/thread.h"

namespace uvmem::internal {
namespace {

constexpr int kMaxRuntimes = 8;

struct ForkState {
  SpinLock registry_lock;
  std::atomic<const ForkCopySource*> sources[kMaxRuntimes] = {};
  std::atomic<bool> handlers_installed{false};
  // Set by prepare, used by the parent/child handlers of the same fork.
  SpinLock fork_lock;  // one fork at a time through these handlers
  ForkHandshake handshake;
  bool held[kMaxRuntimes] = {};
  bool copy[kMaxRuntimes] = {};  // the child copies this runtime's non-resident pages
  bool active = false;
  // The ranges the parent walks after a fork. The parent handler may run before the
  // heap's handlers have released its locks: it must not allocate (guarded by fork_lock).
  VmRange* ranges[AddressSpace::kMaxRanges] = {};
};
ForkState& State() {
  static ForkState state;  // constant-initialised members only: no allocation
  return state;
}

void Prepare() {
  ForkState& st = State();
  st.fork_lock.Lock();
  st.active = false;
  for (int i = 0; i < kMaxRuntimes; ++i) {
    const ForkCopySource* s = st.sources[i].load(std::memory_order_acquire);
    st.held[i] = s != nullptr && s->swap != nullptr && s->swap->Stats().slots_used != 0 &&
                 s->swap->HoldFrees();
    st.copy[i] = st.held[i] ||
                 (s != nullptr && s->cow->clones.load(std::memory_order_relaxed) != 0);
    st.active |= st.held[i];
  }
  if (st.active && !st.handshake.Open()) {
    ReportWarning("fork: no pipe for the child's swap copy; the parent will not wait for it");
  }
}

void ReleaseHeld(ForkState& st) {
  for (int i = 0; i < kMaxRuntimes; ++i) {
    if (!st.held[i]) continue;
    if (const ForkCopySource* s = st.sources[i].load(std::memory_order_acquire)) {
      s->swap->ReleaseHeldFrees();
    }
    st.held[i] = false;
  }
}

// After fork() every resident page is shared with the child and no longer exclusive, and
// the kernel refuses to move a non-exclusive page (UFFDIO_MOVE: EBUSY) — until the parent
// writes it. Writing a zero-sum atomic add into each resident page breaks the sharing now
// (the kernel's CoW fault), so reclaim can evict the parent's pages again. O(resident
// pages); runs in the forking thread, which faults like any program thread.
void MakeResidentPagesExclusive(ForkState& st, const ForkCopySource& s) {
  const std::size_t n = s.space->SnapshotInto(st.ranges, AddressSpace::kMaxRanges);
  for (std::size_t i = 0; i < n; ++i) {
    VmRange* range = st.ranges[i];
    range->page_table().ForEach([&](std::uint64_t page, Pte pte) {
      // Pages shared with a clone stay write-protected: a write would copy them.
      if (!PteHasFrame(pte) || (pte & kPteShared) != 0) return;
      __atomic_fetch_add(static_cast<std::uint64_t*>(range->PageAddress(page)), 0,
                         __ATOMIC_RELAXED);
    });
    AddressSpace::Unpin(range);
  }
}

void Parent() {
  ForkState& st = State();
  if (st.active) {
    st.handshake.ParentWait();  // the child copies its pages; then the slots may go
    ReleaseHeld(st);
  }
  for (int i = 0; i < kMaxRuntimes; ++i) {
    const ForkCopySource* s = st.sources[i].load(std::memory_order_acquire);
    if (s != nullptr && s->swap != nullptr) MakeResidentPagesExclusive(st, *s);
  }
  st.fork_lock.Unlock();
}

// Reads swap slot `slot` into `address` of `range` (in the child), or dies with SIGBUS.
void ReadSlot(const ForkCopySource& s, const VmRange& range, void* address, SwapSlot slot) {
  int error = 0;
  void* buffers[1] = {address};
  (void)s.swap->Read(&slot, buffers, 1, &error);
  if (error != 0) {
    ReportWarning(
        "fork: the child cannot read page {} of range '{}' back from swap slot {} ({}); "
        "the child gets SIGBUS rather than wrong data",
        address, range.name(), slot.value,
        error == EBADMSG ? "checksum mismatch" : std::strerror(error));
    raise(SIGBUS);
  }
}

// Copies a CoW entry's page (its bytes live elsewhere: cow.h) into place, in the child.
void CopyShared(const ForkCopySource& s, VmRange& range, std::uint64_t page, Pte pte) {
  void* address = range.PageAddress(page);
  const FrameNumber frame = PteFrame(pte);
  const FrameDescriptor& d = s.pool->Descriptor(frame);
  if (d.flags & kFrameEvicted) {
    if (s.swap != nullptr) ReadSlot(s, range, address, SwapSlot{d.private_data - 1});
    return;
  }
  auto* holder = reinterpret_cast<VmRange*>(d.owner);
  if (holder == nullptr) {
    std::memcpy(address, s.pool->FrameAddress(frame), kPageSize);
    return;
  }
  const std::atomic<Pte>* h = holder->page_table().Lookup(page);
  const Pte hp = h != nullptr ? h->load(std::memory_order_relaxed) : 0;
  if (PteInWriteback(hp) && s.reclaimer != nullptr) {
    std::memcpy(address, s.reclaimer->staging() + (PteStagingPage(hp) << kPageShift), kPageSize);
  } else {
    std::memcpy(address, holder->PageAddress(page), kPageSize);
  }
}

// Copies one range's pages that are not resident in it (swapped out, caught in
// writeback, or shared with a clone) into this (child) process's memory.
void CopyRange(const ForkCopySource& s, VmRange& range) {
  range.page_table().ForEach([&](std::uint64_t page, Pte pte) {
    void* address = range.PageAddress(page);
    if (PteIsCow(pte)) {
      CopyShared(s, range, page, pte);
    } else if ((pte & kPteSwapped) != 0 && s.swap != nullptr) {
      // Swapped, or being read back by a parent thread.
      if (IsPageResident(address)) return;  // the read-back finished before the fork
      ReadSlot(s, range, address, SwapSlot{PteSlot(pte)});
    } else if (s.reclaimer != nullptr && PteInWriteback(pte) && !IsPageResident(address)) {
      // The parent's reclaim had unmapped the page into its staging area: the child's
      // copy of that area holds the bytes.
      std::memcpy(address, s.reclaimer->staging() + (PteStagingPage(pte) << kPageShift),
                  kPageSize);
    }
  });
}

void Child() {
  ForkState& st = State();
  for (int i = 0; i < kMaxRuntimes; ++i) {
    const ForkCopySource* s = st.sources[i].load(std::memory_order_acquire);
    if (s == nullptr || !st.copy[i]) continue;
    s->space->ForEachInForkedChild([&](VmRange& range) { CopyRange(*s, range); });
    st.held[i] = false;  // the parent releases them
  }
  if (st.active) st.handshake.ChildSignal();
  st.fork_lock.Unlock();
}

}  // namespace

bool RegisterForkCopy(const ForkCopySource* source) {
  ForkState& st = State();
  st.registry_lock.Lock();
  bool added = false;
  for (int i = 0; i < kMaxRuntimes && !added; ++i) {
    const ForkCopySource* expected = nullptr;
    added = st.sources[i].compare_exchange_strong(expected, source, std::memory_order_acq_rel);
  }
  if (added && !st.handlers_installed.exchange(true)) {
    pthread_atfork(&Prepare, &Parent, &Child);
  }
  st.registry_lock.Unlock();
  if (!added) {
    ReportWarning("more than {} runtimes with swap: forked children of this one would read its "
                  "swapped pages as zeros",
                  kMaxRuntimes);
  }
  return added;
}

void UnregisterForkCopy(const ForkCopySource* source) {
  ForkState& st = State();
  st.fork_lock.Lock();  // not during a fork
  for (auto& slot : st.sources) {
    const ForkCopySource* expected = source;
    slot.compare_exchange_strong(expected, nullptr, std::memory_order_acq_rel);
  }
  st.fork_lock.Unlock();
}

}  // namespace uvmem::internal
