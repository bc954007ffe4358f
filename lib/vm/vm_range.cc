#include "vm/vm_range.h"

#include <algorithm>
#include <cstring>

namespace uvmem::internal {

VmRange::VmRange(SlabCache* tables, std::uintptr_t start, std::size_t length_bytes,
                 std::string_view name, const ResolvedPolicy& policy, FillWindow window)
    : start_(start),
      length_bytes_(length_bytes),
      policy_(policy),
      window_(window),
      table_(tables, length_bytes >> kPageShift) {
  std::memcpy(name_, name.data(), std::min(name.size(), kMaxNameBytes));
}

NodeId VmRange::NodeForPage(std::uint64_t page, NodeId local) const {
  switch (policy_.kind) {
    case NumaPolicy::Kind::kLocal:
      return local;
    case NumaPolicy::Kind::kBind:
    case NumaPolicy::Kind::kPreferred:
      return policy_.nodes[0];
    case NumaPolicy::Kind::kInterleave: {
      std::uint64_t absolute = (start_ >> kPageShift) + page;
      if (policy_.interleave_offset_32) absolute = static_cast<std::uint32_t>(absolute);
      return policy_.nodes[absolute % static_cast<std::uint64_t>(policy_.num_nodes)];
    }
  }
  return local;
}

}  // namespace uvmem::internal
