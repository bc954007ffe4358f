#include "slab/slab_stats.h"

#include <fmt/format.h>

namespace uvmem::internal {

std::string FormatSlabInfo(absl::Span<const SlabCacheStats> caches) {
  std::string out =
      "slabinfo - version: 2.1\n"
      "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : "
      "tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> "
      "<sharedavail>\n";
  for (const SlabCacheStats& s : caches) {
    std::uint64_t empty = 0;
    for (const NodeSlabStats& n : s.nodes) empty += n.empty_slabs;
    out += fmt::format("{:<17} {:6} {:6} {:6} {:4} {:4} : tunables {:4} {:4} {:4} : slabdata "
                       "{:6} {:6} {:6}\n",
                       s.name, s.active_objects, s.total_objects, s.slot_bytes,
                       s.objects_per_slab, s.frames_per_slab, 0, 0, 0, s.total_slabs - empty,
                       s.total_slabs, 0);
  }
  return out;
}

}  // namespace uvmem::internal
