#include "slab/slab_layout.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>

#include "platform/cpu.h"

namespace uvmem::internal {
namespace {

constexpr std::size_t RoundUp(std::size_t value, std::size_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// Smallest order whose block holds `bytes` (the kernel's get_order()); may exceed
// kMaxOrder, callers check.
int OrderForBytes(std::size_t bytes) {
  int order = 0;
  while (Order{order}.bytes() < bytes) ++order;
  return order;
}

std::size_t SlotsIn(int order, std::size_t slot_bytes) { return Order{order}.bytes() / slot_bytes; }

// First order in [min_order, max_order] whose waste is at most slab_bytes / fraction
// (calc_slab_order() in mm/slub.c), or -1.
int FirstOrderWithin(std::size_t slot_bytes, int min_order, int max_order, std::size_t fraction) {
  for (int order = min_order; order <= max_order; ++order) {
    const std::size_t slab_bytes = Order{order}.bytes();
    if (slab_bytes < slot_bytes) continue;
    if (slab_bytes % slot_bytes <= slab_bytes / fraction) return order;
  }
  return -1;
}

}  // namespace

unsigned DefaultMinObjects(int cpus) {
  const unsigned n = static_cast<unsigned>(std::max(cpus, 1));
  const unsigned fls = static_cast<unsigned>(std::bit_width(n));  // fls(1) = 1, fls(2) = 2
  return 4 * (fls + 1);
}

int DefaultMinPartial(std::size_t slot_bytes) {
  const int ilog2 = static_cast<int>(std::bit_width(std::max<std::size_t>(slot_bytes, 1))) - 1;
  return std::clamp(ilog2 / 2, 5, 10);
}

std::optional<Order> CalculateSlabOrder(std::size_t slot_bytes, unsigned min_objects) {
  if (slot_bytes == 0 || slot_bytes > Order{kMaxOrder}.bytes()) return std::nullopt;
  const std::size_t max_objects =
      std::max<std::size_t>(SlotsIn(kSlabMaxPreferredOrder, slot_bytes), 1);
  const std::size_t objects = std::clamp<std::size_t>(min_objects, 1, max_objects);
  const int min_order = std::min(OrderForBytes(objects * slot_bytes), kMaxOrder);
  // 1/16, then 1/8, within the preferred orders; then 1/8 up to the largest order.
  for (std::size_t fraction : {16u, 8u}) {
    const int order = FirstOrderWithin(slot_bytes, min_order, kSlabMaxPreferredOrder, fraction);
    if (order >= 0) return Order{order};
  }
  const int order = FirstOrderWithin(slot_bytes, std::max(min_order, kSlabMaxPreferredOrder + 1),
                                     kMaxOrder, 8);
  if (order >= 0) return Order{order};
  return Order{OrderForBytes(slot_bytes)};
}

absl::StatusOr<SlabLayout> ComputeSlabLayout(std::size_t object_size_bytes,
                                             std::size_t alignment_bytes, bool debug,
                                             bool has_constructor, unsigned min_objects) {
  if (object_size_bytes == 0) {
    return absl::InvalidArgumentError("slab: object size must be at least 1 byte");
  }
  if (alignment_bytes != 0 &&
      (!std::has_single_bit(alignment_bytes) || alignment_bytes > kSlabMaxAlignBytes)) {
    return absl::InvalidArgumentError(fmt::format(
        "slab: alignment {} must be 0 (default 8) or a power of two no larger than {} bytes",
        alignment_bytes, kSlabMaxAlignBytes));
  }
  const std::size_t max_object_bytes = Order{kMaxOrder}.bytes();
  if (object_size_bytes > max_object_bytes) {
    return absl::InvalidArgumentError(fmt::format(
        "slab: object size {} bytes does not fit in a slab (at most {} bytes, one order-{} "
        "block); use whole frames from the frame pool instead",
        object_size_bytes, max_object_bytes, kMaxOrder));
  }
  SlabLayout l;
  l.object_size_bytes = object_size_bytes;
  l.alignment_bytes = std::max(alignment_bytes, kSlabMinAlignBytes);
  l.debug = debug;
  l.poison = debug && !has_constructor;
  const std::size_t align = l.alignment_bytes;
  const std::size_t size_words = RoundUp(object_size_bytes, kSlabMinAlignBytes);
  if (debug) {
    l.object_offset_bytes = RoundUp(kRedzoneBytes, align);
    l.red_right_bytes = size_words + kRedzoneBytes - object_size_bytes;
    l.free_pointer_offset_bytes = object_size_bytes + l.red_right_bytes;
    l.tag_offset_bytes = l.free_pointer_offset_bytes + sizeof(void*);
    l.slot_bytes =
        RoundUp(l.object_offset_bytes + l.tag_offset_bytes + sizeof(std::uint64_t), align);
  } else if (has_constructor) {
    l.free_pointer_offset_bytes = size_words;
    l.slot_bytes = RoundUp(size_words + sizeof(void*), align);
  } else {
    l.slot_bytes = RoundUp(size_words, align);
  }
  if (min_objects == 0) min_objects = DefaultMinObjects(ConfiguredCpuCount());
  const std::optional<Order> order = CalculateSlabOrder(l.slot_bytes, min_objects);
  if (!order) {
    return absl::InvalidArgumentError(fmt::format(
        "slab: object size {} bytes needs a {}-byte slot{}, larger than one order-{} block",
        object_size_bytes, l.slot_bytes, debug ? " with debug redzones" : "", kMaxOrder));
  }
  l.order = *order;
  l.objects_per_slab = static_cast<std::uint32_t>(l.order.bytes() / l.slot_bytes);
  l.waste_bytes = l.order.bytes() - std::size_t{l.objects_per_slab} * l.slot_bytes;
  return l;
}

}  // namespace uvmem::internal
