// address_space.h — AddressSpace: the runtime's ranges, found by address.
//
// A sorted array of [start, end) → VmRange*, in memory mapped for it (never the heap, so
// a fault thread never touches memory that can fault). Lookup is a binary search under a
// reader lock; adding and removing take the writer lock. Capacity: 65536 ranges (the
// kernel's vm.max_map_count is 65530, and every range is at least one VMA).
//
// Acquire() pins a range for a fault thread (VmRange::inflight); Remove() makes it
// unfindable, after which the caller waits for inflight to reach zero before freeing it.
//
// Thread-safety: all methods are thread-safe.
#ifndef UVMEM_VM_ADDRESS_SPACE_H_
#define UVMEM_VM_ADDRESS_SPACE_H_

#include <absl/base/thread_annotations.h>
#include <absl/status/status.h>

#include <cstdint>
#include <vector>

#include "platform/mutex.h"
#include "vm/vm_range.h"

namespace uvmem::internal {

class AddressSpace {
 public:
  static constexpr std::size_t kMaxRanges = 65536;

  AddressSpace();
  ~AddressSpace();
  AddressSpace(const AddressSpace&) = delete;
  AddressSpace& operator=(const AddressSpace&) = delete;

  // Errors: ResourceExhausted at kMaxRanges; AlreadyExists when it overlaps a range.
  absl::Status Add(VmRange* range) ABSL_LOCKS_EXCLUDED(mu_);
  // Makes `range` unfindable. Returns false when it was not present.
  bool Remove(VmRange* range) ABSL_LOCKS_EXCLUDED(mu_);

  // The range holding `address` with its inflight count raised, or nullptr. The caller
  // lowers it (Unpin) when done.
  VmRange* Acquire(std::uintptr_t address) const ABSL_LOCKS_EXCLUDED(mu_);
  static void Unpin(VmRange* range) { range->inflight.fetch_sub(1, std::memory_order_release); }

  std::size_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  // The live ranges, each pinned as by Acquire (the caller Unpins each).
  std::vector<VmRange*> Snapshot() const ABSL_LOCKS_EXCLUDED(mu_);
  // As Snapshot, into out[0..n) without allocating (at most `capacity`); returns n.
  std::size_t SnapshotInto(VmRange** out, std::size_t capacity) const ABSL_LOCKS_EXCLUDED(mu_);
  // Calls fn(VmRange&) for every range without the lock or an allocation: only in a
  // forked child, where no other thread exists (the lock may have been copied held).
  template <typename Fn>
  void ForEachInForkedChild(Fn&& fn) const ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (std::size_t i = 0; i < count_; ++i) fn(*entries_[i].range);
  }

 private:
  struct Entry {
    std::uintptr_t start;
    std::uintptr_t end;
    VmRange* range;
  };
  // Index of the first entry whose end > address.
  std::size_t LowerBound(std::uintptr_t address) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable SharedMutex mu_;
  Entry* entries_ ABSL_GUARDED_BY(mu_) = nullptr;  // kMaxRanges slots, mapped
  std::size_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_ADDRESS_SPACE_H_
