// uvmem/types.h — strong unit types shared by every layer.
//
// A FrameNumber is not a byte count and a page count is not an order: each unit gets
// its own type, as tcmalloc does with Length/PageId. Byte ranges are half-open
// [begin, end) everywhere in uvmem; this is said once, here.
//
//   kPageSize            4096 bytes: the size of a frame and of a virtual page.
//   FrameNumber          index of a 4 KiB frame in the runtime's frame pool (a PFN).
//   Order                log2 of a block's length in frames, 0..kMaxOrder.
//   NodeId               a NUMA node number as the kernel numbers them.
//   PageCount            a number of 4 KiB pages (or frames).
//
// All types are trivially copyable value types; thread-safe as values.
#ifndef UVMEM_TYPES_H_
#define UVMEM_TYPES_H_

#include <compare>
#include <cstddef>
#include <cstdint>

namespace uvmem {

inline constexpr std::size_t kPageShift = 12;
inline constexpr std::size_t kPageSize = std::size_t{1} << kPageShift;  // bytes

// Largest buddy order: 2^10 frames = 4 MiB, as Linux's default MAX_ORDER (mm/page_alloc.c).
inline constexpr int kMaxOrder = 10;
inline constexpr int kNumOrders = kMaxOrder + 1;

// Index of a frame in the pool. Global across nodes; frames of one node are contiguous.
struct FrameNumber {
  std::uint64_t value = 0;
  constexpr auto operator<=>(const FrameNumber&) const = default;
  constexpr FrameNumber operator+(std::uint64_t n) const { return {value + n}; }
};

// log2 of a block's length in frames. Valid values are 0..kMaxOrder.
struct Order {
  int value = 0;
  constexpr auto operator<=>(const Order&) const = default;
  constexpr std::uint64_t frames() const { return std::uint64_t{1} << value; }
  constexpr std::size_t bytes() const { return std::size_t{kPageSize} << value; }
  constexpr bool valid() const { return value >= 0 && value <= kMaxOrder; }
};

// A NUMA node. Node numbers may be sparse on real machines (e.g. 0 and 2).
struct NodeId {
  int value = 0;
  constexpr auto operator<=>(const NodeId&) const = default;
};

// A number of 4 KiB pages or frames.
struct PageCount {
  std::uint64_t value = 0;
  constexpr auto operator<=>(const PageCount&) const = default;
  constexpr std::size_t bytes() const { return value << kPageShift; }
};

// Bytes rounded up to whole pages.
constexpr PageCount PagesForBytes(std::size_t bytes) {
  return {(bytes + kPageSize - 1) >> kPageShift};
}

}  // namespace uvmem

#endif  // UVMEM_TYPES_H_
