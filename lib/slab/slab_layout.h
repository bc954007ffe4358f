// slab_layout.h — SlabLayout: where objects sit inside a slab, and how big a slab is.
//
// A slab is one buddy block of 2^order frames cut into equal slots. This header holds
// the pure arithmetic, kept apart from SlabCache so it can be tested exhaustively:
//
//   CalculateSlabOrder   the block order, as SLUB's calculate_order() in mm/slub.c
//   DefaultMinObjects    SLUB's min_objects = 4 * (fls(nr_cpus) + 1)
//   DefaultMinPartial    SLUB's min_partial = clamp(ilog2(size) / 2, 5, 10)
//   ComputeSlabLayout    slot geometry, normal or debug (redzones, poison, tag)
//
// Slot geometry. All offsets are bytes; a slot is a multiple of its alignment, which is
// at least 8 (SLUB's word alignment, calculate_alignment()):
//
//   normal:            | object (the free pointer overlays its first 8 bytes)  |
//   with constructor:  | object | free pointer |       (constructed state survives)
//   debug:             | left redzone | object | right redzone | free ptr | tag | pad |
//
// In a debug slot the left redzone is 16 bytes rounded up to the alignment, so the
// object stays aligned; the right redzone runs from the object's end to the next
// 8-byte boundary plus 16 bytes; the free pointer and an allocated/free tag follow it,
// outside the object, so poison covers the whole object (SLUB puts its free pointer
// and tracking words after the redzone the same way, calculate_sizes()).
//
// Thread-safety: pure functions on values; thread-safe.
#ifndef UVMEM_SLAB_SLAB_LAYOUT_H_
#define UVMEM_SLAB_SLAB_LAYOUT_H_

#include <absl/status/statusor.h>

#include <cstddef>
#include <cstdint>
#include <optional>

#include "uvmem/types.h"

namespace uvmem::internal {

// slub_max_order: orders above PAGE_ALLOC_COSTLY_ORDER (3) are only used when no
// order <= 3 keeps the tail waste under 1/8 (SLUB would accept more waste instead).
inline constexpr int kSlabMaxPreferredOrder = 3;
// Smallest alignment and slot granule: a free pointer must fit (8 bytes).
inline constexpr std::size_t kSlabMinAlignBytes = 8;
// Largest alignment a cache may ask for.
inline constexpr std::size_t kSlabMaxAlignBytes = kPageSize;
// Debug mode: minimum redzone on each side of an object.
inline constexpr std::size_t kRedzoneBytes = 16;

// The geometry of one cache's slabs. Offsets are in bytes.
struct SlabLayout {
  std::size_t object_size_bytes = 0;     // as asked for at creation
  std::size_t alignment_bytes = 0;       // effective: >= 8, power of two
  std::size_t slot_bytes = 0;            // stride between objects
  std::size_t object_offset_bytes = 0;   // slot start -> object start (left redzone)
  std::size_t free_pointer_offset_bytes = 0;  // object start -> free pointer
  std::size_t tag_offset_bytes = 0;      // object start -> debug tag (debug only)
  std::size_t red_right_bytes = 0;       // object end -> free pointer (debug only)
  Order order;                           // each slab is a block of 2^order frames
  std::uint32_t objects_per_slab = 0;
  std::size_t waste_bytes = 0;           // slab bytes - objects * slot bytes
  bool debug = false;
  bool poison = false;                   // debug and no constructor (as SLUB's
                                         // __OBJECT_POISON: poison would undo a ctor)

  std::size_t slab_bytes() const { return order.bytes(); }
  std::uint64_t frames_per_slab() const { return order.frames(); }
};

// SLUB's default minimum number of objects per slab for `cpus` CPUs:
// 4 * (fls(cpus) + 1) (mm/slub.c calculate_order). `cpus` < 1 counts as 1.
unsigned DefaultMinObjects(int cpus);

// SLUB's default number of partial slabs a node keeps before it frees empty ones:
// clamp(ilog2(slot_bytes) / 2, MIN_PARTIAL = 5, MAX_PARTIAL = 10) (set_min_partial).
int DefaultMinPartial(std::size_t slot_bytes);

// The order of a slab for slots of `slot_bytes` (> 0), as SLUB's calculate_order():
// start at the smallest order that holds `min_objects` slots (capped at what an order-3
// block holds, and at least one), then take the first order up to 3 whose tail waste
// (slab bytes mod slot bytes) is at most 1/16 of the slab, then at most 1/8. When no
// order <= 3 qualifies, the search continues up to kMaxOrder with the 1/8 bound (where
// SLUB would accept 1/4 or 1/2). Returns nullopt when even one slot does not fit in an
// order-kMaxOrder block; when a slot fits but no order keeps the waste <= 1/8 (slots
// above 1/8 of 4 MiB), returns the smallest order that holds one slot.
std::optional<Order> CalculateSlabOrder(std::size_t slot_bytes, unsigned min_objects);

// The full geometry for objects of `object_size_bytes` (> 0) aligned to
// `alignment_bytes` (0 = 8; else a power of two <= 4096, raised to at least 8).
// `min_objects` 0 means DefaultMinObjects(ConfiguredCpuCount()).
// Errors: InvalidArgument for a zero size, a bad alignment, or a slot that does not
// fit in a max-order (4 MiB) block.
absl::StatusOr<SlabLayout> ComputeSlabLayout(std::size_t object_size_bytes,
                                             std::size_t alignment_bytes, bool debug,
                                             bool has_constructor, unsigned min_objects);

}  // namespace uvmem::internal

#endif  // UVMEM_SLAB_SLAB_LAYOUT_H_
