// size_class.h — the heap's size classes: which block size serves a request.
//
// 48 classes, every block a multiple of 16 bytes (so every block is 16-byte aligned, as
// glibc guarantees for max_align_t): 16..128 in steps of 16, then four classes per
// doubling up to 128 KiB (160, 192, 224, 256, 320, ...), which bounds internal
// fragmentation at 25 % — the spacing of jemalloc's and mimalloc's bins. Blocks up to
// 16 KiB live in 64 KiB class spans (one slice); larger ones in 512 KiB spans (8 slices),
// so a span always holds at least 4 blocks. Requests above kMaxSmallBytes get spans of
// their own (large allocations).
//
// Thread-safety: constant tables; everything here is pure.
#ifndef UVMEM_MALLOC_SIZE_CLASS_H_
#define UVMEM_MALLOC_SIZE_CLASS_H_

#include <bit>
#include <cstddef>
#include <cstdint>

namespace uvmem::internal {

inline constexpr std::size_t kSliceShift = 16;  // heap slices are 64 KiB
inline constexpr std::size_t kSliceBytes = std::size_t{1} << kSliceShift;
inline constexpr int kNumSizeClasses = 48;
inline constexpr std::size_t kMaxSmallBytes = 128 * 1024;  // largest class

// Block size of class `c` (0 ≤ c < kNumSizeClasses).
constexpr std::uint32_t ClassBlockBytes(int c) {
  if (c < 8) return static_cast<std::uint32_t>((c + 1) * 16);
  const int shift = 7 + (c - 8) / 4;
  const int quarter = (c - 8) % 4;
  return (1u << shift) + static_cast<std::uint32_t>(quarter + 1) * (1u << (shift - 2));
}

// Slices in a span of class `c`.
constexpr std::uint32_t ClassSpanSlices(int c) { return ClassBlockBytes(c) <= 16384 ? 1 : 8; }

// Class of a request of `bytes` (1 ≤ bytes ≤ kMaxSmallBytes; 0 is served as 1), computed.
constexpr int ComputeSizeClass(std::size_t bytes) {
  if (bytes <= 128) return bytes == 0 ? 0 : static_cast<int>((bytes + 15) >> 4) - 1;
  const std::size_t s = bytes - 1;
  const int b = std::bit_width(s) - 1;  // floor(log2(s)), ≥ 7
  return 8 + (b - 7) * 4 + static_cast<int>((s >> (b - 2)) & 3);
}

// Classes of sizes up to 1 KiB, by (bytes + 15) / 16: the common case is one load.
struct SmallClassTable {
  std::uint8_t by_granule[65];
  constexpr SmallClassTable() : by_granule() {
    for (int g = 0; g <= 64; ++g)
      by_granule[g] = static_cast<std::uint8_t>(ComputeSizeClass(g * 16));
  }
};
inline constexpr SmallClassTable kSmallClassTable;

constexpr int SizeClassOf(std::size_t bytes) {
  if (bytes <= 1024) return kSmallClassTable.by_granule[(bytes + 15) >> 4];
  return ComputeSizeClass(bytes);
}

// q = offset / block for offset < 2^20 by multiply and shift (Granlund–Montgomery style
// reciprocal, as mimalloc and snmalloc divide by a size class): exact for every class
// here and every offset inside a span (checked by a test).
constexpr std::uint64_t ClassReciprocal(int c) {
  return ((std::uint64_t{1} << 40) + ClassBlockBytes(c) - 1) / ClassBlockBytes(c);
}
constexpr std::uint32_t DivideByClass(std::uint64_t offset, std::uint64_t reciprocal) {
  return static_cast<std::uint32_t>((offset * reciprocal) >> 40);
}

static_assert(ClassBlockBytes(kNumSizeClasses - 1) == kMaxSmallBytes);
static_assert(SizeClassOf(kMaxSmallBytes) == kNumSizeClasses - 1);
static_assert(SizeClassOf(129) == 8 && ClassBlockBytes(8) == 160);
static_assert(SizeClassOf(257) == 12 && ClassBlockBytes(12) == 320);

}  // namespace uvmem::internal

#endif  // UVMEM_MALLOC_SIZE_CLASS_H_
