#include "vm/range_frames.h"

#include <time.h>

#include "vm/reclaim.h"

namespace uvmem::internal {
namespace {

// A direct reclaim that frees nothing may be racing pages under writeback elsewhere; it
// retries for at most kDirectAttempts × kDirectBackoff before the fault is told no.
constexpr int kDirectAttempts = 100;
constexpr long kDirectBackoffNs = 2'000'000;  // 2 ms

}  // namespace

std::optional<FrameNumber> RangeFrames::Allocate(VmRange& range, int order, NodeId node,
                                                 unsigned flags, bool may_reclaim,
                                                 Shortage* why) {
  const std::uint64_t n = std::uint64_t{1} << order;
  if (!budget_->TryCharge(n)) {
    if (!may_reclaim || reclaimer_ == nullptr) {
      *why = Shortage::kBudget;
      return std::nullopt;
    }
    bool charged = false;
    for (int attempt = 0; attempt < kDirectAttempts && !charged; ++attempt) {
      if (reclaimer_->ReclaimDirect(n, attempt == 0) == 0) {
        const timespec pause{0, kDirectBackoffNs};
        nanosleep(&pause, nullptr);
      }
      charged = budget_->TryCharge(n);
    }
    if (!charged) {
      *why = Shortage::kBudget;
      return std::nullopt;
    }
  }
  if (reclaimer_ != nullptr && budget_->BelowLow()) reclaimer_->Wake();
  const std::optional<FrameNumber> frame = pool_->Allocate(Order{order}, node, flags);
  if (!frame) {
    budget_->Uncharge(n);
    *why = Shortage::kPool;
    return std::nullopt;
  }
  if (order > 0) pool_->SplitAllocated(*frame, Order{order});
  for (std::uint64_t k = 0; k < n; ++k) {
    FrameDescriptor& d = pool_->Descriptor(*frame + k);
    d.owner = reinterpret_cast<std::uintptr_t>(&range);
    d.private_data = 0;
  }
  *why = Shortage::kNone;
  return frame;
}

void RangeFrames::DropCleanSlot(FrameNumber frame) {
  if (const std::optional<SwapSlot> slot = CleanSlot(frame)) {
    SetCleanSlot(frame, std::nullopt);
    swap_->Unref(*slot);
  }
}

void RangeFrames::Free(FrameNumber frame) {
  FreeEvicted(frame);
  budget_->Uncharge(1);
}

void RangeFrames::FreeEvicted(FrameNumber frame) {
  DropCleanSlot(frame);
  pool_->Descriptor(frame).flags &= ~kFrameEvicted;
  pool_->Free(frame, Order{0});
}

}  // namespace uvmem::internal
