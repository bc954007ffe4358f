#include "vm/copy_placement.h"

#include <atomic>

#include "platform/report.h"
#include "platform/thread.h"

namespace uvmem::internal {
namespace {
// The node this runtime thread's policy prefers now; -1: its policy is untouched.
thread_local int tls_preferred_node = -1;
// One message per process when the kernel refuses (placement then follows the kernel's
// choice: the VMA's policy, or the copying thread's node).
std::atomic<bool> warned{false};

void Warn(const char* call, int error, NodeId node) {
  if (!warned.exchange(true, std::memory_order_relaxed)) {
    ReportWarning("{} (node {}) failed (errno {}): pages copied in may not land on their "
                  "frame's node",
                  call, node.value, error);
  }
}
}  // namespace

CopyPlacement::Scope::Scope(const CopyPlacement& placement, VmRange& range, std::uint64_t page,
                            std::uint64_t count, FrameNumber frame) {
  if (!placement.enabled_) return;
  const NodeId node = placement.pool_->NodeOf(frame);
  switch (range.policy().kind) {
    case NumaPolicy::Kind::kBind:        // the pool never falls back: the VMA is right
    case NumaPolicy::Kind::kInterleave:  // the kernel's rule (see the header's gap)
      return;
    case NumaPolicy::Kind::kPreferred: {
      const NodeId preferred = range.policy().nodes[0];
      if (node == preferred && !range.policy_split.load(std::memory_order_relaxed)) return;
      range.policy_split.store(true, std::memory_order_relaxed);
      // The fallback node's policy for these pages, or the range's own again.
      if (const int error =
              PreferPagesOnNode(range.PageAddress(page), count << kPageShift, node);
          error != 0) {
        Warn("mbind(MPOL_PREFERRED)", error, node);
      }
      return;
    }
    case NumaPolicy::Kind::kLocal:
      break;
  }
  if (IsRuntimeThread()) {
    if (tls_preferred_node == node.value) return;
    if (const int error = PreferNodeForThisThread(node); error != 0) {
      Warn("set_mempolicy(MPOL_PREFERRED)", error, node);
      return;
    }
    tls_preferred_node = node.value;
    return;
  }
  if (GetThisThreadMempolicy(&saved_) != 0) return;  // cannot restore: leave it alone
  if (const int error = PreferNodeForThisThread(node); error != 0) {
    Warn("set_mempolicy(MPOL_PREFERRED)", error, node);
    return;
  }
  restore_ = true;
}

CopyPlacement::Scope::~Scope() {
  if (restore_ && SetThisThreadMempolicy(saved_) != 0) {
    // Never leave the caller preferring a node it did not choose: the default at least.
    (void)SetThisThreadMempolicy(ThreadMempolicy{});
  }
}

}  // namespace uvmem::internal
