// frame_lookup.h — FrameLookup: address -> (frame descriptor, node) in a few instructions.
//
// FramePool::FrameOf + Descriptor answer the same question for any caller, walking the
// node list twice. The slab free paths ask it on every free that misses the active slab
// (to find the object's cache, slab and node), so they keep this flat copy of the pool's
// arena map: per node, the arena's first byte, its length, and its descriptor array.
// It relies on two properties frame_pool.h documents: node i's frames are the contiguous
// range [first_i, first_i + frames_i) in dense node order, and each node's descriptors
// are one array; the constructor checks both.
//
// Thread-safety: immutable after construction; Find is thread-safe.
#ifndef UVMEM_SLAB_FRAME_LOOKUP_H_
#define UVMEM_SLAB_FRAME_LOOKUP_H_

#include <cstddef>
#include <cstdint>

#include "frames/frame.h"
#include "frames/frame_pool.h"
#include "uvmem/types.h"

namespace uvmem::internal {

class FrameLookup {
 public:
  // Reads the arena map of `pool` (which must outlive this object).
  explicit FrameLookup(const FramePool& pool);

  // The descriptor of the frame holding `address`, with the dense index of its node in
  // `*node_index`; nullptr (and *node_index untouched) when the address is outside the
  // pool. Never allocates.
  FrameDescriptor* Find(const void* address, int* node_index) const {
    const auto p = reinterpret_cast<std::uintptr_t>(address);
    for (int i = 0; i < num_arenas_; ++i) {
      const Arena& a = arenas_[i];
      const std::uintptr_t offset = p - a.begin;
      if (offset < a.bytes) {
        *node_index = i;
        return a.descriptors + (offset >> kPageShift);
      }
    }
    return nullptr;
  }

 private:
  struct Arena {
    std::uintptr_t begin = 0;
    std::size_t bytes = 0;
    FrameDescriptor* descriptors = nullptr;
  };
  // Nodes are few (NumaTopology); kept inline so a lookup reads no other memory.
  static constexpr int kMaxArenas = 64;
  int num_arenas_ = 0;
  Arena arenas_[kMaxArenas];
};

}  // namespace uvmem::internal

#endif  // UVMEM_SLAB_FRAME_LOOKUP_H_
