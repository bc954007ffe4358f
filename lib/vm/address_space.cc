#include "vm/address_space.h"

#include <cstring>

#include "platform/memory_map.h"
#include "platform/report.h"

namespace uvmem::internal {
namespace {
constexpr std::size_t kEntriesBytes = AddressSpace::kMaxRanges * 3 * sizeof(std::uintptr_t);
}

AddressSpace::AddressSpace() {
  auto memory = ReserveAnonymous(kEntriesBytes, kPageSize);
  if (!memory.ok()) ReportFatal("address space: cannot map the range index ({} bytes)", kEntriesBytes);
  WriterLock lock(&mu_);
  entries_ = static_cast<Entry*>(*memory);
}

AddressSpace::~AddressSpace() {
  WriterLock lock(&mu_);
  (void)ReleaseMapping(entries_, kEntriesBytes);
}

std::size_t AddressSpace::LowerBound(std::uintptr_t address) const {
  std::size_t lo = 0, hi = count_;
  while (lo < hi) {
    const std::size_t mid = (lo + hi) / 2;
    if (entries_[mid].end <= address) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

absl::Status AddressSpace::Add(VmRange* range) {
  WriterLock lock(&mu_);
  if (count_ == kMaxRanges) {
    return absl::ResourceExhaustedError("address space: 65536 ranges are live; release some");
  }
  const std::size_t at = LowerBound(range->start());
  if (at < count_ && entries_[at].start < range->end()) {
    return absl::AlreadyExistsError("address space: the range overlaps a live range");
  }
  std::memmove(&entries_[at + 1], &entries_[at], (count_ - at) * sizeof(Entry));
  entries_[at] = {range->start(), range->end(), range};
  ++count_;
  return absl::OkStatus();
}

bool AddressSpace::Remove(VmRange* range) {
  WriterLock lock(&mu_);
  const std::size_t at = LowerBound(range->start());
  if (at == count_ || entries_[at].range != range) return false;
  std::memmove(&entries_[at], &entries_[at + 1], (count_ - at - 1) * sizeof(Entry));
  --count_;
  return true;
}

VmRange* AddressSpace::Acquire(std::uintptr_t address) const {
  ReaderLock lock(&mu_);
  const std::size_t at = LowerBound(address);
  if (at == count_ || entries_[at].start > address) return nullptr;
  VmRange* range = entries_[at].range;
  range->inflight.fetch_add(1, std::memory_order_acquire);
  return range;
}

std::size_t AddressSpace::size() const {
  ReaderLock lock(&mu_);
  return count_;
}

std::size_t AddressSpace::SnapshotInto(VmRange** out, std::size_t capacity) const {
  ReaderLock lock(&mu_);
  const std::size_t n = std::min(count_, capacity);
  for (std::size_t i = 0; i < n; ++i) {
    entries_[i].range->inflight.fetch_add(1, std::memory_order_acquire);
    out[i] = entries_[i].range;
  }
  return n;
}

std::vector<VmRange*> AddressSpace::Snapshot() const {
  ReaderLock lock(&mu_);
  std::vector<VmRange*> out;
  out.reserve(count_);
  for (std::size_t i = 0; i < count_; ++i) {
    entries_[i].range->inflight.fetch_add(1, std::memory_order_acquire);
    out.push_back(entries_[i].range);
  }
  return out;
}

}  // namespace uvmem::internal
