#include "slab/kmalloc.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>

#include "platform/report.h"

namespace uvmem::internal {
namespace {

constexpr std::array<std::size_t, KmallocCaches::kNumClasses> kClassBytes = {
    8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192};

constexpr const char* kClassNames[KmallocCaches::kNumClasses] = {
    "kmalloc-8",   "kmalloc-16",  "kmalloc-32", "kmalloc-64", "kmalloc-96",
    "kmalloc-128", "kmalloc-192", "kmalloc-256", "kmalloc-512", "kmalloc-1k",
    "kmalloc-2k",  "kmalloc-4k",  "kmalloc-8k"};

constexpr std::int8_t ClassFor(std::size_t size) {
  std::int8_t index = 0;
  while (kClassBytes[index] < size) ++index;
  return index;
}

// Class index for sizes 1..192 by (size - 1) / 8, as the kernel's size_index[] table.
constexpr std::array<std::int8_t, 24> kSmallIndex = [] {
  std::array<std::int8_t, 24> table{};
  for (std::size_t slot = 0; slot < table.size(); ++slot) table[slot] = ClassFor((slot + 1) * 8);
  return table;
}();

// Class index for sizes 193..8192 by (size - 1) / 256: every class there is a multiple
// of 256. (A table, not bit_width: bsr carries a false dependency on its destination
// that chains back-to-back calls together, measurably on AMD Zen.)
constexpr std::array<std::int8_t, 32> kLargeIndex = [] {
  std::array<std::int8_t, 32> table{};
  for (std::size_t slot = 0; slot < table.size(); ++slot) {
    table[slot] = ClassFor((slot + 1) * 256);
  }
  return table;
}();

}  // namespace

int KmallocCaches::SizeClass(std::size_t size_bytes) {
  if (size_bytes <= 192) return size_bytes == 0 ? 0 : kSmallIndex[(size_bytes - 1) / 8];
  if (size_bytes > kMaxSizeBytes) return -1;
  return kLargeIndex[(size_bytes - 1) / 256];
}

std::size_t KmallocCaches::ClassSize(int size_class) {
  UVMEM_CHECK(size_class >= 0 && size_class < kNumClasses);
  return kClassBytes[size_class];
}

absl::StatusOr<std::unique_ptr<KmallocCaches>> KmallocCaches::Create(
    FramePool* pool, const KmallocOptions& options) {
  if (pool == nullptr) return absl::InvalidArgumentError("kmalloc caches: no frame pool");
  std::unique_ptr<KmallocCaches> k(new KmallocCaches(pool));
  SlabCacheOptions cache_options;
  cache_options.debug = options.debug;
  for (int i = 0; i < kNumClasses; ++i) {
    const std::size_t size = kClassBytes[i];
    const std::size_t align = std::has_single_bit(size) ? std::min(size, kPageSize) : 8;
    absl::StatusOr<std::unique_ptr<SlabCache>> cache =
        SlabCache::Create(pool, kClassNames[i], size, align, cache_options);
    if (!cache.ok()) return cache.status();
    k->caches_[i] = std::move(*cache);
  }
  UVMEM_CHECK(k->BuildOwnerTable());
  return k;
}

void* KmallocCaches::Allocate(std::size_t size_bytes) {
  const int index = SizeClass(size_bytes);
  if (index < 0) return nullptr;
  return caches_[index]->Allocate();
}

void* KmallocCaches::Allocate(std::size_t size_bytes, NodeId node) {
  const int index = SizeClass(size_bytes);
  if (index < 0) return nullptr;
  return caches_[index]->Allocate(node);
}

bool KmallocCaches::BuildOwnerTable() {
  // Odd multipliers from a fixed sequence until the thirteen owners land in distinct
  // slots (64 slots: a handful of tries at most).
  std::uint64_t multiplier = 0x9e3779b97f4a7c15ULL;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    owner_multiplier_ = multiplier | 1;
    owner_slots_ = {};
    bool clash = false;
    for (const auto& cache : caches_) {
      OwnerSlot& slot = owner_slots_[OwnerSlotOf(cache->frame_owner())];
      if (slot.cache != nullptr) {
        clash = true;
        break;
      }
      slot = {cache->frame_owner(), cache.get()};
    }
    if (!clash) return true;
    multiplier = multiplier * 6364136223846793005ULL + 1442695040888963407ULL;
  }
  return false;
}

void KmallocCaches::ReportForeign(const void* object, const char* what) const {
  const std::optional<FrameNumber> frame = pool_->FrameOf(object);
  if (!frame) {
    ReportFatal("{} of {}: not a kmalloc object (outside the frame pool)", what, object);
  }
  const std::uintptr_t owner = pool_->Descriptor(*frame).owner;
  const std::string_view other = LiveSlabCacheName(owner);
  if (!other.empty()) {
    ReportFatal("{} of {}: not a kmalloc object (it belongs to slab cache '{}')", what, object,
                other);
  }
  ReportFatal("{} of {}: not a kmalloc object (frame {} is not part of a slab)", what, object,
              frame->value);
}

void KmallocCaches::Free(void* object) {
  if (object == nullptr) return;
  SlabCache* cache = CacheOf(object);
  if (cache == nullptr) [[unlikely]] ReportForeign(object, "kfree");
  cache->Free(object);
}

std::size_t KmallocCaches::UsableSize(const void* object) const {
  const SlabCache* cache = CacheOf(object);
  if (cache == nullptr) ReportForeign(object, "ksize");
  return cache->object_size_bytes();
}

std::vector<SlabCacheStats> KmallocCaches::Stats() const {
  std::vector<SlabCacheStats> out;
  out.reserve(kNumClasses);
  for (const auto& cache : caches_) out.push_back(cache->Stats());
  return out;
}

std::string KmallocCaches::SlabInfo() const { return FormatSlabInfo(Stats()); }

}  // namespace uvmem::internal
