#include "malloc/internal_alloc.h"

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "platform/memory_map.h"
#include "platform/report.h"
#include "platform/spin_lock.h"
#include "uvmem/types.h"

namespace uvmem::internal {
namespace {

constexpr std::size_t kChunkBytes = std::size_t{4} << 20;
constexpr int kMaxChunks = 1024;  // 4 GiB of small blocks
constexpr int kMaxLarge = 4096;   // large blocks (own mappings) live at once
constexpr int kMinShift = 4;      // 16-byte blocks
constexpr int kMaxShift = 16;     // 64 KiB blocks
constexpr int kNumClasses = kMaxShift - kMinShift + 1;
constexpr std::uint32_t kMagic = 0x75766d6d;  // "uvmm"

// Precedes every block: the block's size class (or 0xff: large) and how far the caller's
// pointer is past the block start (aligned requests).
struct Header {
  std::uint32_t magic;
  std::uint8_t size_class;
  std::uint8_t pad[3];
  std::uint64_t offset_or_size;  // small: offset of the user pointer from the block start;
                                 // large: mapping bytes (the user pointer is at +4 KiB)
};
static_assert(sizeof(Header) == 16);
constexpr std::uint8_t kLargeClass = 0xff;

struct FreeBlock {
  FreeBlock* next;
};

struct State {
  SpinLock lock;
  FreeBlock* free_lists[kNumClasses] = {};
  char* bump = nullptr;
  char* bump_end = nullptr;
  int chunks = 0;
  char* chunk_base[kMaxChunks] = {};
  void* large[kMaxLarge] = {};
  std::size_t large_bytes[kMaxLarge] = {};
  std::size_t held_bytes = 0;
};

alignas(4096) constinit char bootstrap_chunk[kChunkBytes];
constinit State state;

int ClassFor(std::size_t total) {
  int shift = kMinShift;
  while ((std::size_t{1} << shift) < total) ++shift;
  return shift - kMinShift;
}

// REQUIRES: lock held.
char* CarveBlock(int size_class) {
  const std::size_t bytes = std::size_t{1} << (size_class + kMinShift);
  if (FreeBlock* b = state.free_lists[size_class]) {
    state.free_lists[size_class] = b->next;
    return reinterpret_cast<char*>(b);
  }
  if (state.bump == nullptr) {
    state.bump = bootstrap_chunk;
    state.bump_end = bootstrap_chunk + kChunkBytes;
    state.chunk_base[state.chunks++] = bootstrap_chunk;
    state.held_bytes += kChunkBytes;
  }
  // Blocks are aligned to their size (power of two), up to 4 KiB.
  const std::size_t align = bytes < kPageSize ? bytes : kPageSize;
  auto at = (reinterpret_cast<std::uintptr_t>(state.bump) + align - 1) & ~(align - 1);
  if (at + bytes > reinterpret_cast<std::uintptr_t>(state.bump_end)) {
    if (state.chunks == kMaxChunks) return nullptr;
    void* chunk = ReserveAnonymousNoAlloc(kChunkBytes, kPageSize);
    if (chunk == nullptr) return nullptr;
    state.chunk_base[state.chunks++] = static_cast<char*>(chunk);
    state.held_bytes += kChunkBytes;
    state.bump = static_cast<char*>(chunk);
    state.bump_end = state.bump + kChunkBytes;
    at = reinterpret_cast<std::uintptr_t>(state.bump);
  }
  state.bump = reinterpret_cast<char*>(at + bytes);
  return reinterpret_cast<char*>(at);
}

Header* HeaderOf(const void* p) {
  return reinterpret_cast<Header*>(reinterpret_cast<std::uintptr_t>(p) - sizeof(Header));
}

}  // namespace

void* InternalAllocator::Allocate(std::size_t bytes, std::size_t alignment) {
  if (alignment < 16) alignment = 16;
  UVMEM_CHECK(alignment <= kPageSize && (alignment & (alignment - 1)) == 0);
  if (bytes == 0) bytes = 1;
  if (bytes > (std::size_t{1} << 47)) {
    errno = ENOMEM;
    return nullptr;
  }
  // Room for the header before an aligned user pointer.
  const std::size_t total = bytes + sizeof(Header) + (alignment > 16 ? alignment : 0);
  if (total <= (std::size_t{1} << kMaxShift)) {
    const int c = ClassFor(total);
    char* block;
    {
      SpinLockHolder hold(&state.lock);
      block = CarveBlock(c);
    }
    if (block == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    const auto start = reinterpret_cast<std::uintptr_t>(block);
    const std::uintptr_t user = (start + sizeof(Header) + alignment - 1) & ~(alignment - 1);
    Header* h = HeaderOf(reinterpret_cast<void*>(user));
    h->magic = kMagic;
    h->size_class = static_cast<std::uint8_t>(c);
    h->offset_or_size = user - start;
    return reinterpret_cast<void*>(user);
  }
  // Large: a mapping of its own, the user pointer one page in (page aligned).
  const std::size_t map_bytes = (bytes + kPageSize + kPageSize - 1) & ~(kPageSize - 1);
  void* map = ReserveAnonymousNoAlloc(map_bytes, kPageSize);
  if (map == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  {
    SpinLockHolder hold(&state.lock);
    int slot = 0;
    while (slot < kMaxLarge && state.large[slot] != nullptr) ++slot;
    if (slot == kMaxLarge) {
      (void)ReleaseMapping(map, map_bytes);
      errno = ENOMEM;
      return nullptr;
    }
    state.large[slot] = map;
    state.large_bytes[slot] = map_bytes;
    state.held_bytes += map_bytes;
  }
  char* user = static_cast<char*>(map) + kPageSize;
  Header* h = HeaderOf(user);
  h->magic = kMagic;
  h->size_class = kLargeClass;
  h->offset_or_size = map_bytes;
  return user;
}

void InternalAllocator::Free(void* p) {
  Header* h = HeaderOf(p);
  if (h->magic != kMagic) ReportFatal("free(): invalid pointer {} (pinned memory)", p);
  if (h->size_class == kLargeClass) {
    void* map = static_cast<char*>(p) - kPageSize;
    const std::size_t map_bytes = h->offset_or_size;
    {
      SpinLockHolder hold(&state.lock);
      for (int i = 0; i < kMaxLarge; ++i) {
        if (state.large[i] == map) {
          state.large[i] = nullptr;
          state.held_bytes -= map_bytes;
          break;
        }
      }
    }
    (void)ReleaseMapping(map, map_bytes);
    return;
  }
  h->magic = 0;  // a second free of the same pointer is caught above
  auto* block = reinterpret_cast<FreeBlock*>(static_cast<char*>(p) - h->offset_or_size);
  SpinLockHolder hold(&state.lock);
  block->next = state.free_lists[h->size_class];
  state.free_lists[h->size_class] = block;
}

bool InternalAllocator::Owns(const void* p) {
  const auto* c = static_cast<const char*>(p);
  SpinLockHolder hold(&state.lock);
  for (int i = 0; i < state.chunks; ++i) {
    if (c >= state.chunk_base[i] && c < state.chunk_base[i] + kChunkBytes) return true;
  }
  for (int i = 0; i < kMaxLarge; ++i) {
    const auto* map = static_cast<const char*>(state.large[i]);
    if (map != nullptr && c >= map && c < map + state.large_bytes[i]) return true;
  }
  return false;
}

std::size_t InternalAllocator::UsableSize(const void* p) {
  const Header* h = HeaderOf(p);
  if (h->size_class == kLargeClass) return h->offset_or_size - kPageSize;
  return (std::size_t{1} << (h->size_class + kMinShift)) - h->offset_or_size;
}

std::size_t InternalAllocator::HeldBytes() {
  SpinLockHolder hold(&state.lock);
  return state.held_bytes;
}

void InternalAllocator::LockForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { state.lock.Lock(); }
void InternalAllocator::UnlockAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { state.lock.Unlock(); }

}  // namespace uvmem::internal
