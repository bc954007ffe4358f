// slab_debug.h — debug-mode object checks (SLUB's slub_debug=FZP): redzones, poison and
// an allocated/free tag around every object of a debug cache.
//
// Layout is in slab_layout.h. Byte values are the kernel's (include/linux/poison.h):
//   0x6b  POISON_FREE     fills a free object; its last byte is 0xa5 (POISON_END)
//   0x5a  POISON_INUSE    fills a newly allocated object (no constructor)
//   0xbb  SLUB_RED_INACTIVE  redzones of a free object
//   0xcc  SLUB_RED_ACTIVE    redzones of an allocated object
// With a constructor, objects are not poisoned (that would undo it), as in SLUB.
//
// What the checks find, and when:
//   on free:  double free (tag says free), a write past the end or before the start
//             (right / left redzone not 0xcc), a clobbered tag;
//   on alloc: a write to a free object (poison changed: use after free), redzones or tag
//             of a free object changed.
// Each finding is reported through ReportFatal with the cache name, the object address
// and what is wrong, and aborts. Pointer validity (is it an object of this cache at
// all) is checked by SlabCache before these run.
//
// Thread-safety: the caller holds the lock of the slab's node.
#ifndef UVMEM_SLAB_SLAB_DEBUG_H_
#define UVMEM_SLAB_SLAB_DEBUG_H_

#include <cstdint>
#include <string_view>

#include "slab/slab_layout.h"

namespace uvmem::internal {

inline constexpr std::uint8_t kPoisonFree = 0x6b;
inline constexpr std::uint8_t kPoisonEnd = 0xa5;
inline constexpr std::uint8_t kPoisonInUse = 0x5a;
inline constexpr std::uint8_t kRedInactive = 0xbb;
inline constexpr std::uint8_t kRedActive = 0xcc;
// Tags in the word after the free pointer.
inline constexpr std::uint64_t kTagFree = 0xf4eef4eef4eef4eeULL;
inline constexpr std::uint64_t kTagAllocated = 0xa110ca7eda110ca7ULL;

// Prepares a slot of a new slab as free: redzones 0xbb, poison, tag free. `object` is
// the object's first byte (slot + layout.object_offset_bytes).
void DebugInitFreeObject(const SlabLayout& layout, char* object);

// Checks a free object about to be handed out, then marks it allocated (redzones 0xcc,
// tag allocated, object filled with 0x5a when poisoning). Fatal on corruption.
void DebugCheckAllocate(const SlabLayout& layout, std::string_view cache_name, char* object);

// Checks an object being freed, then marks it free (poison, redzones 0xbb, tag free).
// Fatal on a double free, an overwritten redzone or a clobbered tag.
void DebugCheckFree(const SlabLayout& layout, std::string_view cache_name, char* object);

}  // namespace uvmem::internal

#endif  // UVMEM_SLAB_SLAB_DEBUG_H_
