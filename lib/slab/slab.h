// slab.h — Slab: the descriptor of one slab (SLUB's struct slab), and its states.
//
// A slab is a buddy block of 2^order frames holding objects of one SlabCache. Its
// descriptor lives off-slab, in descriptor frames the cache takes from the pool on the
// slab's node (63 per 4 KiB frame; the first 64 bytes link the frames), so slab
// geometry is not bent by metadata. Descriptor frames are kept until the cache is
// destroyed (at most one per 63 slabs the cache ever had at once). Every frame of the
// slab block points back at it: FrameDescriptor::owner = the SlabCache*, private_data
// = the Slab* (set on head and tail frames alike), which is how SlabCache::Free finds
// the slab of any object pointer without a size.
//
// States (SLUB's frozen / partial / full, without cmpxchg_double: a node mutex):
//   kFrozen   a thread's active slab; its free objects are split between the thread's
//             private freelist (ThreadSlab) and `freelist` here (frees by others).
//   kPartial  on its node's partial list; has free objects on `freelist`.
//   kFull     on no list; no free object on `freelist`. A free moves it to kPartial.
//   kUnused   descriptor on the node's free descriptor list.
//
// `inuse` counts objects that are not on `freelist`: allocated ones, those on the
// owning thread's private freelist while the slab is frozen, and those parked on any
// thread's spare list. A slab is freed only when `inuse` is 0.
//
// Thread-safety: `freelist`, `next`, `prev`, `inuse` and `state` are guarded by the mutex
// of the node the slab lives on (SlabCache's per-node SlabNode). `base`, `head` and
// `node_index` are set before the slab is published and constant until it is freed.
#ifndef UVMEM_SLAB_SLAB_H_
#define UVMEM_SLAB_SLAB_H_

#include <cstdint>

#include "uvmem/types.h"

namespace uvmem::internal {

enum class SlabState : std::uint8_t { kUnused = 0, kFrozen, kPartial, kFull };

struct alignas(64) Slab {
  void* freelist = nullptr;  // free objects, linked through their free pointers
  Slab* next = nullptr;      // partial list (or free descriptor list) links
  Slab* prev = nullptr;
  char* base = nullptr;      // first byte of the block
  FrameNumber head;          // first frame of the block
  std::uint32_t inuse = 0;
  SlabState state = SlabState::kUnused;
  std::uint8_t node_index = 0;  // dense node index of the block
};
static_assert(sizeof(Slab) == 64, "64 descriptor slots per descriptor frame");

}  // namespace uvmem::internal

#endif  // UVMEM_SLAB_SLAB_H_
