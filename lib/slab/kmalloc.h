// kmalloc.h — KmallocCaches: the generic size-class caches kmalloc-8 ... kmalloc-8k, the
// runtime's internal kmalloc/kfree for metadata that has no cache of its own.
//
// Thirteen SlabCaches on one FramePool, sized as Linux's kmalloc caches
// (mm/slab_common.c kmalloc_info): 8, 16, 32, 64, 96, 128, 192, 256, 512, 1k, 2k, 4k,
// 8k bytes. A request goes to the smallest class that holds it (kmalloc_index(): the
// 96- and 192-byte classes catch 65..96 and 129..192). Free needs no size: the frame
// descriptor of the pointer names its cache (owner), as kfree() uses virt_to_slab().
//
// Alignment: every object is 8-byte aligned; power-of-two classes up to 4 KiB are
// naturally aligned (their size), in debug mode too (as create_kmalloc_cache asks).
//
// There is no global instance: whoever needs one owns one per pool. (The vm layer's own
// metadata uses dedicated caches today; the malloc front end is the intended user.)
//
// Thread-safety: Allocate, Free, UsableSize and Stats are thread-safe. Destruction
// requires that no thread uses it, and is fatal while objects are allocated.
#ifndef UVMEM_SLAB_KMALLOC_H_
#define UVMEM_SLAB_KMALLOC_H_

#include <absl/status/statusor.h>

#include <array>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "frames/frame_pool.h"
#include "slab/frame_lookup.h"
#include "slab/slab_cache.h"
#include "slab/slab_stats.h"
#include "uvmem/types.h"

namespace uvmem::internal {

struct KmallocOptions {
  bool debug = false;  // every class cache in debug mode (redzones, poison, checks)
};

class KmallocCaches {
 public:
  static constexpr int kNumClasses = 13;
  static constexpr std::size_t kMaxSizeBytes = 8192;  // KMALLOC_MAX_CACHE_SIZE here

  // Creates the thirteen caches on `pool` (which must outlive them). Errors are those of
  // SlabCache::Create (InvalidArgument for a null pool, ResourceExhausted when the
  // process has too many caches).
  static absl::StatusOr<std::unique_ptr<KmallocCaches>> Create(FramePool* pool,
                                                               const KmallocOptions& options = {});
  KmallocCaches(const KmallocCaches&) = delete;
  KmallocCaches& operator=(const KmallocCaches&) = delete;

  // An object of at least `size_bytes`, from the smallest class that fits, on the
  // calling CPU's node / on `node`. size_bytes 0 gets a unique 8-byte object (as
  // malloc(0)). Returns nullptr for size_bytes > kMaxSizeBytes (callers take whole
  // frames from the pool instead) and when the pool is out of frames.
  [[nodiscard]] void* Allocate(std::size_t size_bytes);
  [[nodiscard]] void* Allocate(std::size_t size_bytes, NodeId node);

  // Returns an object from Allocate. nullptr is ignored. Fatal when `object` is not a
  // kmalloc object of this instance (the report names what it is instead), and on the
  // misuse SlabCache::Free reports.
  void Free(void* object);

  // The class size of `object`'s cache: how many bytes the caller may use (ksize()).
  // Fatal as Free for a foreign pointer.
  std::size_t UsableSize(const void* object) const;

  // The class index for a request of `size_bytes` (0..kNumClasses-1), or -1 when
  // size_bytes > kMaxSizeBytes. Constant time.
  static int SizeClass(std::size_t size_bytes);
  // Object size of class `size_class`. REQUIRES: 0 <= size_class < kNumClasses.
  static std::size_t ClassSize(int size_class);

  SlabCache& cache(int size_class) const { return *caches_[size_class]; }
  std::vector<SlabCacheStats> Stats() const;
  // /proc/slabinfo text for the thirteen caches.
  std::string SlabInfo() const;

 private:
  // owner -> class: a collision-free multiplicative hash into kOwnerSlots slots, found
  // at creation (frees look their cache up here, not by scanning thirteen owners).
  static constexpr int kOwnerSlotBits = 6;
  struct OwnerSlot {
    std::uintptr_t owner = 0;
    SlabCache* cache = nullptr;
  };

  explicit KmallocCaches(FramePool* pool) : pool_(pool), lookup_(*pool) {}
  bool BuildOwnerTable();
  std::size_t OwnerSlotOf(std::uintptr_t owner) const {
    return static_cast<std::size_t>((owner * owner_multiplier_) >> (64 - kOwnerSlotBits));
  }
  SlabCache* CacheOf(const void* object) const {
    int node_index;
    const FrameDescriptor* d = lookup_.Find(object, &node_index);
    if (d == nullptr) return nullptr;
    const OwnerSlot& slot = owner_slots_[OwnerSlotOf(d->owner)];
    return slot.owner == d->owner ? slot.cache : nullptr;
  }
  [[noreturn, gnu::cold, gnu::noinline]] void ReportForeign(const void* object,
                                                            const char* what) const;

  FramePool* const pool_;
  const FrameLookup lookup_;
  std::uint64_t owner_multiplier_ = 0;
  std::array<OwnerSlot, std::size_t{1} << kOwnerSlotBits> owner_slots_{};
  std::array<std::unique_ptr<SlabCache>, kNumClasses> caches_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_SLAB_KMALLOC_H_
