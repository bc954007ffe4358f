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
  if (range.policy().kind != NumaPolicy::Kind::kLocal) {
    // The VMA's policy decides. Where it names the frame's node, nothing to do.
    bool agrees = !range.policy_split.load(std::memory_order_relaxed);
    for (std::uint64_t q = page; agrees && q < page + count; ++q) {
      agrees = range.NodeForPage(q, node) == node;
    }
    if (agrees) return;
    range.policy_split.store(true, std::memory_order_relaxed);
    if (const int error = BindPagesToNode(range.PageAddress(page), count << kPageShift, node);
        error != 0) {
      Warn("mbind(MPOL_BIND)", error, node);
    }
    return;
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
  if (restore_) (void)SetThisThreadMempolicy(saved_);
}

}  // namespace uvmem::internal
