// Tests of the malloc front end's C API (uvmem/uvmem.h: uvmem_malloc ... uvmem_malloc_stats_get)
// linked into this process: the heap starts on the first call and runs on the real runtime
// (userfaultfd). Contents are checked over every byte a block may be used for; misuse dies
// with a message naming the address; threads, fork() and spawn work; memory goes back.
#include "uvmem/uvmem.h"

#include <gtest/gtest.h>
#include <numaif.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "malloc/size_class.h"
#include "uvmem/malloc.h"

extern char** environ;

// The tests misuse the API on purpose (double frees, foreign pointers, huge sizes).
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="

namespace {

using uvmem::internal::ClassBlockBytes;
using uvmem::internal::kMaxSmallBytes;
using uvmem::internal::kNumSizeClasses;

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = 1024 * 1024;
constexpr std::size_t kPage = 4096;

uvmem_malloc_stats Stats() {
  uvmem_malloc_stats s;
  EXPECT_EQ(uvmem_malloc_stats_get(&s), 0);
  return s;
}

// A pattern no two (seed, offset) pairs share cheaply: 8-byte words, then the tail.
std::uint64_t WordAt(std::uint64_t seed, std::size_t index) {
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ULL + index * 0xbf58476d1ce4e5b9ULL + 1;
  x ^= x >> 31;
  return x;
}

void Fill(void* p, std::size_t bytes, std::uint64_t seed) {
  auto* c = static_cast<unsigned char*>(p);
  const std::size_t words = bytes / 8;
  for (std::size_t i = 0; i < words; ++i) {
    const std::uint64_t w = WordAt(seed, i);
    std::memcpy(c + i * 8, &w, 8);
  }
  const std::uint64_t last = WordAt(seed, words);
  std::memcpy(c + words * 8, &last, bytes % 8);
}

// Offset of the first byte that differs from Fill(p, bytes, seed), or SIZE_MAX.
std::size_t FirstMismatch(const void* p, std::size_t bytes, std::uint64_t seed) {
  const auto* c = static_cast<const unsigned char*>(p);
  const std::size_t words = bytes / 8;
  for (std::size_t i = 0; i < words; ++i) {
    const std::uint64_t w = WordAt(seed, i);
    if (std::memcmp(c + i * 8, &w, 8) != 0) return i * 8;
  }
  const std::uint64_t last = WordAt(seed, words);
  if (std::memcmp(c + words * 8, &last, bytes % 8) != 0) return words * 8;
  return SIZE_MAX;
}

bool Check(const void* p, std::size_t bytes, std::uint64_t seed) {
  return FirstMismatch(p, bytes, seed) == SIZE_MAX;
}

bool AllZero(const void* p, std::size_t bytes) {
  const auto* c = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < bytes; ++i) {
    if (c[i] != 0) return false;
  }
  return true;
}

bool AlignedTo(const void* p, std::size_t alignment) {
  return reinterpret_cast<std::uintptr_t>(p) % alignment == 0;
}

// Every class boundary (block - 1, block, block + 1), 0 and 1, and large sizes up to 64 MiB.
std::vector<std::size_t> BoundarySizes() {
  std::vector<std::size_t> sizes = {0, 1, 2, 7, 8, 9, 15};
  for (int c = 0; c < kNumSizeClasses; ++c) {
    const std::size_t block = ClassBlockBytes(c);
    sizes.push_back(block - 1);
    sizes.push_back(block);
    sizes.push_back(block + 1);
  }
  for (std::size_t large : {kMaxSmallBytes + 16, 192 * kKiB, 256 * kKiB - 1, 256 * kKiB,
                            kMiB - 1, kMiB, kMiB + 1, 3 * kMiB + 5, 4 * kMiB, 16 * kMiB + 1,
                            64 * kMiB}) {
    sizes.push_back(large);
  }
  return sizes;
}

// ---- the heap runs on the runtime ---------------------------------------------------------

TEST(MallocApiTest, HeapIsPagedByTheRuntime) {
  void* p = uvmem_malloc(1);
  ASSERT_NE(p, nullptr);
  const uvmem_malloc_stats s = Stats();
  EXPECT_EQ(s.paged, 1) << "mode: " << uvmem::GetMallocStats().mode;
  EXPECT_EQ(uvmem::GetMallocStats().mode, "paged");
  EXPECT_GT(s.heap_reserved_bytes, 0u);
  EXPECT_GE(s.thread_heaps, 1u);
  EXPECT_GT(s.spans_bytes_now, 0u);
  uvmem_free(p);
}

TEST(MallocApiTest, ResidentPagesGrowWhenFreshMemoryIsTouched) {
  constexpr std::size_t kBytes = 16 * kMiB;
  (void)uvmem_malloc_trim();  // nothing dirty left for the purger to take meanwhile
  char* p = static_cast<char*>(uvmem_malloc(kBytes));
  ASSERT_NE(p, nullptr);
  const uvmem_malloc_stats before = Stats();
  for (std::size_t i = 0; i < kBytes; i += kPage) p[i] = static_cast<char>(i >> 12);
  const uvmem_malloc_stats after = Stats();
  EXPECT_GE(after.heap_resident_pages, before.heap_resident_pages + kBytes / kPage * 9 / 10)
      << "before " << before.heap_resident_pages << " after " << after.heap_resident_pages;
  EXPECT_GE(after.heap_peak_resident_pages, after.heap_resident_pages);
  const uvmem::MallocStats full = uvmem::GetMallocStats();
  EXPECT_GT(full.runtime.faults, 0u);
  for (std::size_t i = 0; i < kBytes; i += kPage) ASSERT_EQ(p[i], static_cast<char>(i >> 12));
  uvmem_free(p);
}

// ---- malloc / free / usable size ------------------------------------------------------------

TEST(MallocApiTest, EveryClassBoundaryAndLargeSizesOneAtATime) {
  std::uint64_t seed = 1;
  for (std::size_t size : BoundarySizes()) {
    void* p = uvmem_malloc(size);
    ASSERT_NE(p, nullptr) << "size " << size;
    EXPECT_TRUE(AlignedTo(p, 16)) << "size " << size << " at " << p;
    const std::size_t usable = uvmem_malloc_usable_size(p);
    ASSERT_GE(usable, size) << "size " << size;
    Fill(p, usable, seed);
    ASSERT_EQ(FirstMismatch(p, usable, seed), SIZE_MAX) << "size " << size;
    uvmem_free(p);
    ++seed;
  }
}

TEST(MallocApiTest, EveryClassBoundaryAndLargeSizesAllLiveAtOnce) {
  // All live together: a block whose usable size overlapped another would break its pattern.
  struct Block {
    void* p;
    std::size_t size;
    std::size_t usable;
  };
  std::vector<Block> blocks;
  for (int round = 0; round < 3; ++round) {
    for (std::size_t size : BoundarySizes()) {
      if (size > 16 * kMiB + 1 && round > 0) continue;  // one 64 MiB block is enough
      void* p = uvmem_malloc(size);
      ASSERT_NE(p, nullptr) << "size " << size;
      ASSERT_TRUE(AlignedTo(p, 16)) << "size " << size;
      const std::size_t usable = uvmem_malloc_usable_size(p);
      ASSERT_GE(usable, size);
      blocks.push_back({p, size, usable});
    }
  }
  for (std::size_t i = 0; i < blocks.size(); ++i) Fill(blocks[i].p, blocks[i].usable, i + 100);
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    EXPECT_EQ(FirstMismatch(blocks[i].p, blocks[i].usable, i + 100), SIZE_MAX)
        << "block " << i << " size " << blocks[i].size << " usable " << blocks[i].usable;
  }
  // Free every other one, refill the rest, then free them too.
  for (std::size_t i = 0; i < blocks.size(); i += 2) uvmem_free(blocks[i].p);
  for (std::size_t i = 1; i < blocks.size(); i += 2) {
    EXPECT_TRUE(Check(blocks[i].p, blocks[i].usable, i + 100)) << "block " << i;
    uvmem_free(blocks[i].p);
  }
}

TEST(MallocApiTest, ManySmallBlocksAreDistinctAndKeepTheirContents) {
  constexpr int kBlocks = 20000;
  std::vector<void*> blocks(kBlocks);
  for (int i = 0; i < kBlocks; ++i) {
    const std::size_t size = 1 + (static_cast<std::size_t>(i) * 37) % 700;
    blocks[i] = uvmem_malloc(size);
    ASSERT_NE(blocks[i], nullptr);
    Fill(blocks[i], size, static_cast<std::uint64_t>(i));
  }
  for (int i = 0; i < kBlocks; ++i) {
    const std::size_t size = 1 + (static_cast<std::size_t>(i) * 37) % 700;
    ASSERT_TRUE(Check(blocks[i], size, static_cast<std::uint64_t>(i))) << "block " << i;
    uvmem_free(blocks[i]);
  }
}

TEST(MallocApiTest, FreeNullAndUsableSizeOfNull) {
  const uvmem_malloc_stats before = Stats();
  uvmem_free(nullptr);
  EXPECT_EQ(uvmem_malloc_usable_size(nullptr), 0u);
  EXPECT_EQ(Stats().free_calls, before.free_calls);  // frees of non-null pointers only
}

TEST(MallocApiTest, HugeSizesFailWithEnomem) {
  for (std::size_t size : {std::size_t{1} << 62, std::size_t{1} << 48, std::size_t{1} << 40,
                           std::size_t{1} << 63, SIZE_MAX / 2}) {
    errno = 0;
    void* p = uvmem_malloc(size);
    EXPECT_EQ(p, nullptr) << "size " << size;
    EXPECT_EQ(errno, ENOMEM) << "size " << size;
  }
}

// Sizes near SIZE_MAX, where `bytes + alignment` or `bytes + 15` would wrap around. Each call
// runs in a child of its own (a crash there must not hide the other cases): the child exits
// 0 when the call failed cleanly with ENOMEM.
#define EXPECT_FAILS_WITH_ENOMEM(call)                                       \
  EXPECT_EXIT(                                                               \
      {                                                                      \
        void* warm = uvmem_malloc(16); /* this thread has a heap */          \
        errno = 0;                                                           \
        void* result = (call);                                               \
        const int error = errno;                                             \
        std::fprintf(stderr, "%s = %p, errno %d\n", #call, result, error);  \
        uvmem_free(warm);                                                    \
        _exit(result == nullptr && error == ENOMEM ? 0 : 1);                 \
      },                                                                     \
      testing::ExitedWithCode(0), "")

TEST(MallocApiSizeMaxTest, SizesNearSizeMaxFailWithEnomem) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_FAILS_WITH_ENOMEM(uvmem_malloc(SIZE_MAX));
  EXPECT_FAILS_WITH_ENOMEM(uvmem_malloc(SIZE_MAX - 1));
  EXPECT_FAILS_WITH_ENOMEM(uvmem_malloc(SIZE_MAX - 15));
  EXPECT_FAILS_WITH_ENOMEM(uvmem_malloc(SIZE_MAX - 16));
  EXPECT_FAILS_WITH_ENOMEM(uvmem_calloc(1, SIZE_MAX));
  EXPECT_FAILS_WITH_ENOMEM(uvmem_valloc(SIZE_MAX - 100));
  EXPECT_FAILS_WITH_ENOMEM(uvmem_aligned_alloc(64, SIZE_MAX - 32));
  EXPECT_FAILS_WITH_ENOMEM(uvmem_memalign(4096, SIZE_MAX));
  EXPECT_FAILS_WITH_ENOMEM(uvmem_malloc_onnode(SIZE_MAX, 0));
  EXPECT_FAILS_WITH_ENOMEM(uvmem_realloc(uvmem_malloc(100), SIZE_MAX));
}

TEST(MallocApiSizeMaxTest, PosixMemalignNearSizeMaxReturnsEnomem) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        void* out = nullptr;
        const int rc = uvmem_posix_memalign(&out, 256, SIZE_MAX - 100);
        _exit(rc == ENOMEM && out == nullptr ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
}

TEST(MallocApiSizeMaxTest, ReallocToSizeMaxKeepsTheBlock) {
  void* p = uvmem_malloc(100);
  ASSERT_NE(p, nullptr);
  Fill(p, 100, 5);
  EXPECT_EXIT(
      {
        errno = 0;
        void* q = uvmem_realloc(p, SIZE_MAX);
        _exit(q == nullptr && errno == ENOMEM && Check(p, 100, 5) ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
  uvmem_free(p);
}

// ---- calloc ------------------------------------------------------------------------------------

TEST(MallocApiTest, CallocReturnsZerosEvenInReusedDirtyBlocks) {
  for (std::size_t size : {std::size_t{1}, std::size_t{16}, std::size_t{100}, std::size_t{1000},
                           std::size_t{4096}, std::size_t{20000}, std::size_t{100000},
                           kMaxSmallBytes, kMaxSmallBytes + 1, 300 * kKiB, 2 * kMiB,
                           9 * kMiB + 7}) {
    for (int round = 0; round < 30; ++round) {
      void* dirty = uvmem_malloc(size);
      ASSERT_NE(dirty, nullptr);
      std::memset(dirty, 0xff, uvmem_malloc_usable_size(dirty));
      uvmem_free(dirty);
      void* z = uvmem_calloc(1, size);
      ASSERT_NE(z, nullptr) << "size " << size;
      ASSERT_TRUE(AllZero(z, size)) << "size " << size << " round " << round;
      std::memset(z, 0xee, size);
      uvmem_free(z);
    }
  }
}

TEST(MallocApiTest, CallocZerosManyLiveBlocksAfterDirtyFrees) {
  // Dirty a lot of memory of several sizes, free it, then calloc it back.
  std::vector<std::pair<void*, std::size_t>> blocks;
  for (int i = 0; i < 2000; ++i) {
    const std::size_t size = i % 50 == 0 ? 200 * kKiB + i : 24 + (i * 13) % 3000;
    void* p = uvmem_malloc(size);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xa5, size);
    blocks.push_back({p, size});
  }
  for (auto& [p, size] : blocks) uvmem_free(p);
  for (auto& [p, size] : blocks) {
    p = uvmem_calloc(size, 1);
    ASSERT_NE(p, nullptr);
    ASSERT_TRUE(AllZero(p, size)) << "size " << size;
  }
  for (auto& [p, size] : blocks) uvmem_free(p);
}

TEST(MallocApiTest, CallocAfterTrimReturnsZeros) {
  for (std::size_t size : {300 * kKiB, 4 * kMiB}) {
    void* dirty = uvmem_malloc(size);
    ASSERT_NE(dirty, nullptr);
    std::memset(dirty, 0x5a, size);
    uvmem_free(dirty);
    (void)uvmem_malloc_trim();
    void* z = uvmem_calloc(size, 1);
    ASSERT_NE(z, nullptr);
    EXPECT_TRUE(AllZero(z, size)) << "size " << size;
    uvmem_free(z);
  }
}

TEST(MallocApiTest, CallocOverflowFailsWithEnomem) {
  errno = 0;
  EXPECT_EQ(uvmem_calloc(SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(uvmem_calloc(std::size_t{1} << 32, std::size_t{1} << 32), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  void* z = uvmem_calloc(0, 100);  // zero bytes is not an error
  EXPECT_NE(z, nullptr);
  uvmem_free(z);
}

TEST(MallocApiTest, ReallocarrayOverflowFailsAndKeepsTheBlock) {
  void* p = uvmem_malloc(300);
  ASSERT_NE(p, nullptr);
  Fill(p, 300, 77);
  errno = 0;
  EXPECT_EQ(uvmem_reallocarray(p, SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(Check(p, 300, 77));
  void* q = uvmem_reallocarray(p, 100, 30);
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(Check(q, 300, 77));
  EXPECT_GE(uvmem_malloc_usable_size(q), 3000u);
  uvmem_free(q);
}

// ---- realloc -----------------------------------------------------------------------------------

TEST(MallocApiTest, ReallocOfNullIsMalloc) {
  void* p = uvmem_realloc(nullptr, 1000);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(uvmem_malloc_usable_size(p), 1000u);
  Fill(p, 1000, 3);
  EXPECT_TRUE(Check(p, 1000, 3));
  uvmem_free(p);
}

TEST(MallocApiTest, ReallocKeepsThePrefixAcrossSmallLargeSmall) {
  const std::size_t steps[] = {1,           10,       100,        1000,    5000,  16 * kKiB,
                               kMaxSmallBytes, kMaxSmallBytes + 1, 200 * kKiB, 5 * kMiB,
                               40 * kMiB,   3 * kMiB, 300 * kKiB, 100 * kKiB, 2000, 24, 8, 1};
  void* p = uvmem_realloc(nullptr, steps[0]);
  ASSERT_NE(p, nullptr);
  Fill(p, steps[0], 0);
  std::size_t old = steps[0];
  std::uint64_t seed = 0;
  for (std::size_t i = 1; i < std::size(steps); ++i) {
    const std::size_t size = steps[i];
    void* q = uvmem_realloc(p, size);
    ASSERT_NE(q, nullptr) << "to " << size;
    ASSERT_TRUE(AlignedTo(q, 16));
    ASSERT_GE(uvmem_malloc_usable_size(q), size);
    const std::size_t kept = std::min(old, size);
    ASSERT_EQ(FirstMismatch(q, kept, seed), SIZE_MAX) << old << " -> " << size;
    seed = i;
    Fill(q, size, seed);
    p = q;
    old = size;
  }
  uvmem_free(p);
}

// Large blocks grow in place when the slices after them are free: the neighbours' bytes,
// the block's prefix and later allocations must all stay apart.
TEST(MallocApiTest, LargeReallocGrowsWithoutTouchingNeighbours) {
  for (int round = 0; round < 4; ++round) {
    char* a = static_cast<char*>(uvmem_malloc(256 * kKiB));
    char* b = static_cast<char*>(uvmem_malloc(256 * kKiB));
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    Fill(a, 256 * kKiB, 1);
    Fill(b, 256 * kKiB, 2);
    std::size_t a_size = 256 * kKiB;
    std::uint64_t a_seed = 1;
    auto grow = [&](std::size_t size) {
      char* q = static_cast<char*>(uvmem_realloc(a, size));
      ASSERT_NE(q, nullptr) << "to " << size;
      ASSERT_EQ(FirstMismatch(q, std::min(a_size, size), a_seed), SIZE_MAX) << "to " << size;
      ASSERT_GE(uvmem_malloc_usable_size(q), size);
      a = q;
      a_size = size;
      a_seed += 10;
      Fill(a, a_size, a_seed);
    };
    grow(2 * kMiB);
    ASSERT_TRUE(Check(b, 256 * kKiB, 2));
    uvmem_free(b);
    grow(3 * kMiB);
    grow(3 * kMiB + 100 * kKiB);
    grow(7 * kMiB + 5);
    // New blocks must not land inside the grown block.
    std::vector<std::pair<char*, std::size_t>> others;
    for (std::size_t size : {256 * kKiB, 512 * kKiB, 3 * kMiB, 100 * kKiB, 70 * kKiB}) {
      char* c = static_cast<char*>(uvmem_malloc(size));
      ASSERT_NE(c, nullptr);
      EXPECT_TRUE(c + size <= a || c >= a + a_size) << "block " << static_cast<void*>(c)
                                                    << " inside the grown block";
      std::memset(c, 0xee, size);
      others.push_back({c, size});
    }
    EXPECT_EQ(FirstMismatch(a, a_size, a_seed), SIZE_MAX);
    for (auto& [c, size] : others) uvmem_free(c);
    grow(20 * kMiB + round);
    uvmem_free(a);
  }
}

// A large block touched only here and there (the rest never written: missing pages in the
// heap's range) keeps every written byte across growing reallocs.
TEST(MallocApiTest, ReallocOfASparselyWrittenLargeBlock) {
  std::size_t size = 8 * kMiB;
  char* p = static_cast<char*>(uvmem_malloc(size));
  ASSERT_NE(p, nullptr);
  std::vector<std::size_t> written;
  for (std::size_t off = 0; off < size; off += 37 * kPage + 123) {
    p[off] = static_cast<char>(off * 7 + 1);
    written.push_back(off);
  }
  p[size - 1] = 0x5c;
  for (std::size_t next : {9 * kMiB, 17 * kMiB + 3, 40 * kMiB}) {
    char* q = static_cast<char*>(uvmem_realloc(p, next));
    ASSERT_NE(q, nullptr);
    for (std::size_t off : written) {
      ASSERT_EQ(q[off], static_cast<char>(off * 7 + 1)) << "offset " << off << " -> " << next;
    }
    ASSERT_EQ(q[8 * kMiB - 1], 0x5c);
    q[next - 1] = 0x11;  // the new tail is usable
    p = q;
    size = next;
  }
  uvmem_free(p);
}

// Threads grow their own large buffers by realloc while others allocate and free large
// blocks in the same area: no buffer sees another's bytes.
TEST(MallocApiThreadsTest, ConcurrentLargeReallocs) {
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 6; ++round) {
        std::size_t size = 200 * kKiB + static_cast<std::size_t>(t) * kPage;
        const std::uint64_t seed = static_cast<std::uint64_t>(t) * 100 + round;
        char* p = static_cast<char*>(uvmem_malloc(size));
        if (p == nullptr) {
          bad.fetch_add(1);
          return;
        }
        Fill(p, size, seed);
        while (size < 12 * kMiB) {
          const std::size_t next = size * 2 + 4096 * t + 17;
          char* other = static_cast<char*>(uvmem_malloc(size / 2));  // a neighbour
          if (other != nullptr) std::memset(other, 0x33, size / 2);
          char* q = static_cast<char*>(uvmem_realloc(p, next));
          if (q == nullptr) {
            bad.fetch_add(1);
            uvmem_free(other);
            break;
          }
          if (!Check(q, size, seed)) bad.fetch_add(1);
          Fill(q + size, next - size, seed + 1000 + size);  // then extend the pattern check
          if (!Check(q + size, next - size, seed + 1000 + size)) bad.fetch_add(1);
          // Re-fill the whole so the next round can check it as one pattern.
          Fill(q, next, seed);
          uvmem_free(other);
          p = q;
          size = next;
        }
        if (!Check(p, size, seed)) bad.fetch_add(1);
        uvmem_free(p);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(MallocApiTest, ReallocToZeroFreesAndReturnsNull) {
  for (std::size_t size : {std::size_t{64}, 2 * kMiB}) {
    void* p = uvmem_malloc(size);
    ASSERT_NE(p, nullptr);
    const uvmem_malloc_stats before = Stats();
    EXPECT_EQ(uvmem_realloc(p, 0), nullptr);
    const uvmem_malloc_stats after = Stats();
    EXPECT_EQ(after.free_calls, before.free_calls + 1) << "size " << size;
    if (size > kMaxSmallBytes) {
      EXPECT_EQ(after.large_spans_now + 1, before.large_spans_now);
    }
  }
}

TEST(MallocApiTest, ReallocToAHugeSizeFailsAndKeepsTheBlock) {
  for (std::size_t start : {std::size_t{200}, 3 * kMiB}) {
    void* p = uvmem_malloc(start);
    ASSERT_NE(p, nullptr);
    Fill(p, start, 11);
    for (std::size_t huge : {std::size_t{1} << 62, std::size_t{1} << 50}) {
      errno = 0;
      EXPECT_EQ(uvmem_realloc(p, huge), nullptr);
      EXPECT_EQ(errno, ENOMEM);
      ASSERT_TRUE(Check(p, start, 11));
    }
    uvmem_free(p);
  }
}

// ---- aligned allocation --------------------------------------------------------------------

std::vector<std::size_t> SizesAround(std::size_t alignment) {
  std::vector<std::size_t> sizes = {1, 8, 24, 100, 5000, 70000, 200 * kKiB};
  for (std::size_t s : {alignment / 2, alignment - 1, alignment, alignment + 1, 3 * alignment}) {
    if (s != 0) sizes.push_back(s);
  }
  return sizes;
}

enum class AlignFn { kAlignedAlloc, kPosixMemalign, kMemalign };

void* AllocAligned(AlignFn fn, std::size_t alignment, std::size_t size) {
  switch (fn) {
    case AlignFn::kAlignedAlloc:
      return uvmem_aligned_alloc(alignment, size);
    case AlignFn::kPosixMemalign: {
      void* p = nullptr;
      const int rc = uvmem_posix_memalign(&p, alignment, size);
      EXPECT_EQ(rc, 0) << "alignment " << alignment << " size " << size;
      return rc == 0 ? p : nullptr;
    }
    case AlignFn::kMemalign:
      return uvmem_memalign(alignment, size);
  }
  return nullptr;
}

class AlignedAllocTest : public testing::TestWithParam<AlignFn> {};

TEST_P(AlignedAllocTest, EveryPowerOfTwoAlignmentFrom8To1MiB) {
  std::uint64_t seed = 1000;
  for (std::size_t alignment = 8; alignment <= kMiB; alignment *= 2) {
    struct Block {
      void* p;
      std::size_t size, usable;
      std::uint64_t seed;
    };
    std::vector<Block> live;
    for (int copy = 0; copy < 2; ++copy) {
      for (std::size_t size : SizesAround(alignment)) {
        void* p = AllocAligned(GetParam(), alignment, size);
        ASSERT_NE(p, nullptr) << "alignment " << alignment << " size " << size;
        ASSERT_TRUE(AlignedTo(p, std::max<std::size_t>(alignment, 16)))
            << "alignment " << alignment << " size " << size << " at " << p;
        const std::size_t usable = uvmem_malloc_usable_size(p);
        ASSERT_GE(usable, size) << "alignment " << alignment << " size " << size;
        Fill(p, usable, ++seed);
        live.push_back({p, size, usable, seed});
      }
    }
    // Interleave plain blocks in the same classes: aligned blocks must not overlap them.
    std::vector<void*> plain;
    for (const Block& b : live) {
      void* q = uvmem_malloc(b.size);
      ASSERT_NE(q, nullptr);
      std::memset(q, 0xcc, uvmem_malloc_usable_size(q));
      plain.push_back(q);
    }
    for (const Block& b : live) {
      ASSERT_EQ(FirstMismatch(b.p, b.usable, b.seed), SIZE_MAX)
          << "alignment " << alignment << " size " << b.size << " usable " << b.usable;
      uvmem_free(b.p);
    }
    for (void* q : plain) uvmem_free(q);
  }
}

INSTANTIATE_TEST_SUITE_P(Fns, AlignedAllocTest,
                         testing::Values(AlignFn::kAlignedAlloc, AlignFn::kPosixMemalign,
                                         AlignFn::kMemalign),
                         [](const testing::TestParamInfo<AlignFn>& info) {
                           switch (info.param) {
                             case AlignFn::kAlignedAlloc:
                               return std::string("aligned_alloc");
                             case AlignFn::kPosixMemalign:
                               return std::string("posix_memalign");
                             case AlignFn::kMemalign:
                               return std::string("memalign");
                           }
                           return std::string("unknown");
                         });

TEST(MallocApiTest, AlignedAllocRejectsNonPowerOfTwo) {
  for (std::size_t alignment : {std::size_t{3}, std::size_t{0}, std::size_t{24},
                                std::size_t{4097}}) {
    errno = 0;
    EXPECT_EQ(uvmem_aligned_alloc(alignment, 10), nullptr) << "alignment " << alignment;
    EXPECT_EQ(errno, EINVAL) << "alignment " << alignment;
  }
}

TEST(MallocApiTest, PosixMemalignRejectsBadAlignmentWithoutTouchingOutOrErrno) {
  void* const sentinel = reinterpret_cast<void*>(0x1234);
  for (std::size_t alignment : {std::size_t{24}, std::size_t{0}, std::size_t{4},
                                std::size_t{2}, std::size_t{1}, std::size_t{48}}) {
    void* out = sentinel;
    errno = 4242;
    EXPECT_EQ(uvmem_posix_memalign(&out, alignment, 10), EINVAL) << "alignment " << alignment;
    EXPECT_EQ(out, sentinel);
    EXPECT_EQ(errno, 4242);
  }
  void* out = sentinel;
  errno = 4242;
  EXPECT_EQ(uvmem_posix_memalign(&out, 64, std::size_t{1} << 62), ENOMEM);
  EXPECT_EQ(out, sentinel);
  EXPECT_EQ(errno, 4242);
}

TEST(MallocApiTest, MemalignRoundsOddAlignmentsUp) {
  for (std::size_t alignment : {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{24},
                                std::size_t{48}, std::size_t{100}, std::size_t{3000}}) {
    std::size_t want = 16;
    while (want < alignment) want *= 2;
    void* p = uvmem_memalign(alignment, 100);
    ASSERT_NE(p, nullptr) << "alignment " << alignment;
    EXPECT_TRUE(AlignedTo(p, want)) << "alignment " << alignment << " at " << p;
    EXPECT_GE(uvmem_malloc_usable_size(p), 100u);
    std::memset(p, 1, 100);
    uvmem_free(p);
  }
}

TEST(MallocApiTest, VallocAndPvallocArePageAligned) {
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{4095}, std::size_t{4096},
                           std::size_t{4097}, std::size_t{10000}, 300 * kKiB + 1}) {
    void* v = uvmem_valloc(size);
    ASSERT_NE(v, nullptr) << "size " << size;
    EXPECT_TRUE(AlignedTo(v, kPage));
    EXPECT_GE(uvmem_malloc_usable_size(v), size);
    Fill(v, size, size);
    void* pv = uvmem_pvalloc(size);
    ASSERT_NE(pv, nullptr) << "size " << size;
    EXPECT_TRUE(AlignedTo(pv, kPage));
    const std::size_t rounded = size == 0 ? kPage : (size + kPage - 1) / kPage * kPage;
    EXPECT_GE(uvmem_malloc_usable_size(pv), rounded) << "size " << size;
    Fill(pv, rounded, size + 1);  // the whole rounded size is the caller's
    EXPECT_TRUE(Check(v, size, size));
    EXPECT_TRUE(Check(pv, rounded, size + 1));
    uvmem_free(v);
    uvmem_free(pv);
  }
  errno = 0;
  EXPECT_EQ(uvmem_pvalloc(SIZE_MAX - 10), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

// ---- misuse dies, naming the address ---------------------------------------------------------

// Death tests re-execute this binary (the heap runs threads), so an address is only known
// inside the child. The child arms CheckAbortMessage before the misuse: it captures
// stderr, and on SIGABRT copies the report out and exits kNamedTheAddress when the report
// names the address, kDidNotName otherwise. The parent checks the code and the message.
constexpr int kNamedTheAddress = 77;
constexpr int kDidNotName = 78;
int g_real_stderr = -1;
int g_capture = -1;
char g_expect[64];

void CheckAbortMessage(int) {
  char text[4096];
  ssize_t n = pread(g_capture, text, sizeof(text) - 1, 0);
  if (n < 0) n = 0;
  text[n] = '\0';
  (void)!write(g_real_stderr, text, static_cast<std::size_t>(n));
  _exit(std::strstr(text, g_expect) != nullptr ? kNamedTheAddress : kDidNotName);
}

// The next fatal report must name `p` (as " 0x... ", printf's %p and fmt's {}).
void ExpectReportNaming(const void* p) {
  std::snprintf(g_expect, sizeof(g_expect), " %p ", p);
  g_capture = memfd_create("uvmem-stderr", 0);
  g_real_stderr = dup(STDERR_FILENO);
  dup2(g_capture, STDERR_FILENO);
  signal(SIGABRT, &CheckAbortMessage);
}

class MallocDeathTest : public testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

const auto kNamed = testing::ExitedWithCode(kNamedTheAddress);

TEST_F(MallocDeathTest, DoubleFreeOfASmallBlock) {
  void* keep = uvmem_malloc(48);  // the span stays in use after the first free
  void* p = uvmem_malloc(48);
  uvmem_free(p);
  EXPECT_EXIT(
      {
        ExpectReportNaming(p);
        uvmem_free(p);
      },
      kNamed, "free\\(\\): double free detected at 0x[0-9a-f]+");
  uvmem_free(keep);
}

TEST_F(MallocDeathTest, DoubleFreeOfTheOnlyBlockOfAClass) {
  void* p = uvmem_malloc(12345);
  uvmem_free(p);
  EXPECT_EXIT(
      {
        ExpectReportNaming(p);
        uvmem_free(p);
      },
      kNamed, "free\\(\\): double free.* 0x[0-9a-f]+");
}

TEST_F(MallocDeathTest, DoubleFreeOfALargeBlock) {
  void* p = uvmem_malloc(3 * kMiB);
  uvmem_free(p);
  EXPECT_EXIT(
      {
        ExpectReportNaming(p);
        uvmem_free(p);
      },
      kNamed, "free\\(\\): double free.* 0x[0-9a-f]+");
}

TEST_F(MallocDeathTest, DoubleFreeOfALargeBlockThatCoalescedWithItsNeighbours) {
  void* a = uvmem_malloc(2 * kMiB);
  void* p = uvmem_malloc(2 * kMiB);
  void* c = uvmem_malloc(2 * kMiB);
  uvmem_free(a);
  uvmem_free(c);
  uvmem_free(p);  // merges with both neighbours
  EXPECT_EXIT(
      {
        ExpectReportNaming(p);
        uvmem_free(p);
      },
      kNamed, "free\\(\\): .*(double free|invalid pointer).* 0x[0-9a-f]+");
}

TEST_F(MallocDeathTest, FreeOfAPointerIntoTheMiddleOfASmallBlock) {
  char* p = static_cast<char*>(uvmem_malloc(200));
  EXPECT_EXIT(
      {
        ExpectReportNaming(p + 32);
        uvmem_free(p + 32);
      },
      kNamed, "free\\(\\): invalid pointer.* 0x[0-9a-f]+");
  uvmem_free(p);
}

TEST_F(MallocDeathTest, FreeOfAPointerIntoTheMiddleOfALargeBlock) {
  char* p = static_cast<char*>(uvmem_malloc(2 * kMiB));
  EXPECT_EXIT(
      {
        ExpectReportNaming(p + kPage);
        uvmem_free(p + kPage);
      },
      kNamed, "free\\(\\): invalid pointer.* 0x[0-9a-f]+");
  uvmem_free(p);
}

// An interior pointer into a plain block of a span that also holds an over-aligned block
// (whose pointer is inside its block) must still be refused.
TEST_F(MallocDeathTest, FreeOfAPointerIntoABlockBesideAnAlignedOne) {
  // aligned_alloc(64, 140) is served from the 224-byte class (the 160-byte class is not a
  // multiple of 64: 140 + 63 bytes are taken), the pointer inside the block unless the block
  // happens to be 64-byte aligned (then the usable size is the whole 224).
  std::vector<void*> aligned;
  for (int i = 0; i < 8; ++i) {
    aligned.push_back(uvmem_aligned_alloc(64, 140));
    ASSERT_NE(aligned.back(), nullptr);
    if (uvmem_malloc_usable_size(aligned.back()) < 224) break;  // inside its block
  }
  ASSERT_LT(uvmem_malloc_usable_size(aligned.back()), 224u);
  // malloc(200) comes from the same class span.
  char* p = static_cast<char*>(uvmem_malloc(200));
  ASSERT_NE(p, nullptr);
  EXPECT_EXIT(
      {
        ExpectReportNaming(p + 16);
        uvmem_free(p + 16);
      },
      kNamed, "free\\(\\): invalid pointer.* 0x[0-9a-f]+");
  uvmem_free(p);
  for (void* a : aligned) uvmem_free(a);
}

// free() of an aligned pointer once its block was freed and handed out again as a plain
// block: the pointer is now inside someone else's block and must be refused, not taken
// for the aligned allocation it used to be (the word before it still holds the old tag).
TEST_F(MallocDeathTest, FreeOfAStaleAlignedPointerAfterItsBlockWasReused) {
  // An aligned_alloc(64, 140) pointer inside its 224-byte block (see above).
  std::vector<void*> others;
  std::uintptr_t aligned = 0;
  for (int i = 0; i < 8 && aligned == 0; ++i) {
    void* a = uvmem_aligned_alloc(64, 140);
    ASSERT_NE(a, nullptr);
    if (uvmem_malloc_usable_size(a) < 224) {
      aligned = reinterpret_cast<std::uintptr_t>(a);
    } else {
      others.push_back(a);
    }
  }
  ASSERT_NE(aligned, 0u);
  // Its block: 224-byte classes live in one-slice (64 KiB aligned) spans.
  const std::uintptr_t span = aligned & ~std::uintptr_t{0xffff};
  const std::uintptr_t block = span + (aligned - span) / 224 * 224;
  ASSERT_NE(block, aligned);
  uvmem_free(reinterpret_cast<void*>(aligned));
  // Plain blocks of the same class until the freed block comes back.
  std::vector<void*> plain;
  bool reused = false;
  for (int i = 0; i < 1000 && !reused; ++i) {
    void* q = uvmem_malloc(200);
    ASSERT_NE(q, nullptr);
    plain.push_back(q);
    reused = reinterpret_cast<std::uintptr_t>(q) == block;
  }
  ASSERT_TRUE(reused);
  void* stale = reinterpret_cast<void*>(aligned);
  EXPECT_EXIT(
      {
        ExpectReportNaming(stale);
        uvmem_free(stale);
      },
      kNamed, "free\\(\\): .*(invalid pointer|double free).* 0x[0-9a-f]+");
  for (void* q : plain) uvmem_free(q);
  for (void* a : others) uvmem_free(a);
}

// The same for a large block with a large alignment.
TEST_F(MallocDeathTest, FreeOfAPointerIntoAnOverAlignedLargeBlock) {
  // A 1 MiB-aligned 1 MiB block gets a 2 MiB span; its usable size is below 2 MiB exactly
  // when the pointer is not the span's start.
  std::vector<void*> blocks;
  char* p = nullptr;
  for (int i = 0; i < 8 && p == nullptr; ++i) {
    blocks.push_back(uvmem_malloc(192 * kKiB));  // shifts the next span by 3 slices
    void* a = uvmem_aligned_alloc(kMiB, kMiB);
    ASSERT_NE(a, nullptr);
    ASSERT_TRUE(AlignedTo(a, kMiB));
    if (uvmem_malloc_usable_size(a) < 2 * kMiB) {
      p = static_cast<char*>(a);
    } else {
      blocks.push_back(a);
    }
  }
  ASSERT_NE(p, nullptr);
  EXPECT_EXIT(
      {
        ExpectReportNaming(p + kPage);
        uvmem_free(p + kPage);
      },
      kNamed, "free\\(\\): invalid pointer.* 0x[0-9a-f]+");
  uvmem_free(p);
  for (void* b : blocks) uvmem_free(b);
}

TEST_F(MallocDeathTest, FreeOfAStackAddress) {
  char on_stack[64];
  std::memset(on_stack, 0, sizeof(on_stack));
  EXPECT_EXIT(
      {
        ExpectReportNaming(on_stack + 16);
        uvmem_free(on_stack + 16);
      },
      kNamed, "free\\(\\): invalid pointer.* 0x[0-9a-f]+");
}

alignas(64) char g_static_array[4096];

TEST_F(MallocDeathTest, FreeOfAForeignPointer) {
  // Memory uvmem never handed out: a static array, and a page from mmap (what a glibc
  // pointer looks like to uvmem).
  EXPECT_EXIT(
      {
        ExpectReportNaming(g_static_array + 32);
        uvmem_free(g_static_array + 32);
      },
      kNamed, "free\\(\\): invalid pointer.* 0x[0-9a-f]+");
  void* page =
      mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  char* p = static_cast<char*>(page) + 16;
  EXPECT_EXIT(
      {
        ExpectReportNaming(p);
        uvmem_free(p);
      },
      kNamed, "free\\(\\): invalid pointer.* 0x[0-9a-f]+");
  munmap(page, kPage);
}

TEST_F(MallocDeathTest, FreeOfAnUnusedAddressInsideTheHeap) {
  char* p = static_cast<char*>(uvmem_malloc(64));
  char* far = p + (std::size_t{1} << 30);  // inside the heap's reservation, never used
  EXPECT_EXIT(
      {
        ExpectReportNaming(far);
        uvmem_free(far);
      },
      kNamed, "free\\(\\): .*invalid pointer.* 0x[0-9a-f]+");
  uvmem_free(p);
}

TEST_F(MallocDeathTest, UsableSizeOfAFreedLargeBlock) {
  void* p = uvmem_malloc(2 * kMiB);
  uvmem_free(p);
  EXPECT_EXIT(
      {
        ExpectReportNaming(p);
        (void)uvmem_malloc_usable_size(p);
      },
      kNamed, "malloc_usable_size\\(\\): .* 0x[0-9a-f]+");
}

// Reports are "uvmem: <message>" (platform/report.h adds the prefix once).
TEST_F(MallocDeathTest, TheReportIsPrefixedOnce) {
  char on_stack[64];
  std::memset(on_stack, 0, sizeof(on_stack));
  EXPECT_DEATH(uvmem_free(on_stack + 16), "(^|\n)uvmem: free\\(\\): invalid pointer");
}

// ---- threads ---------------------------------------------------------------------------------

struct Item {
  void* p;
  std::size_t size;
  std::uint64_t seed;
};

class BlockQueue {
 public:
  void Push(Item item) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      items_.push_back(item);
    }
    cv_.notify_one();
  }
  void Close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }
  bool Pop(Item* out) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !items_.empty() || closed_; });
    if (items_.empty()) return false;
    *out = items_.front();
    items_.pop_front();
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> items_;
  bool closed_ = false;
};

std::size_t SizeFor(int i) {
  static constexpr std::size_t kSizes[] = {8, 24, 48, 100, 256, 500, 1000, 3000, 9000, 20000, 70000};
  if (i % 997 == 0) return 300 * kKiB;  // a large one now and then
  return kSizes[i % std::size(kSizes)];
}

TEST(MallocApiThreadsTest, ProducersAllocateConsumersFree) {
  constexpr int kProducers = 2;
  constexpr int kConsumers = 2;
  constexpr int kPerProducer = 15000;
  const uvmem_malloc_stats before = Stats();
  BlockQueue queue;
  std::atomic<int> bad{0};
  std::atomic<int> freed{0};
  std::atomic<int> ready{0};
  std::vector<std::thread> producers, consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&] {
      ready.fetch_add(1);
      Item item;
      while (queue.Pop(&item)) {
        if (!Check(item.p, item.size, item.seed)) bad.fetch_add(1);
        uvmem_free(item.p);
        freed.fetch_add(1);
      }
    });
  }
  for (int t = 0; t < kProducers; ++t) {
    producers.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < kProducers + kConsumers) std::this_thread::yield();
      for (int i = 0; i < kPerProducer; ++i) {
        const std::size_t size = SizeFor(i + t);
        void* p = uvmem_malloc(size);
        if (p == nullptr) {
          bad.fetch_add(1);
          continue;
        }
        const std::uint64_t seed = (static_cast<std::uint64_t>(t) << 32) | i;
        Fill(p, size, seed);
        queue.Push({p, size, seed});
      }
    });
  }
  for (auto& t : producers) t.join();
  queue.Close();
  for (auto& t : consumers) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(freed.load(), kProducers * kPerProducer);
  const uvmem_malloc_stats after = Stats();
  EXPECT_GE(after.malloc_calls - before.malloc_calls,
            static_cast<std::uint64_t>(kProducers * kPerProducer));
  EXPECT_GE(after.thread_heaps, before.thread_heaps);
}

// free_calls counts "frees of non-null pointers" (uvmem/malloc.h), whoever frees.
TEST(MallocApiThreadsTest, FreesByAThreadThatNeverAllocatedAreCounted) {
  constexpr int kBlocks = 1000;
  std::vector<void*> blocks;
  for (int i = 0; i < kBlocks; ++i) {
    blocks.push_back(uvmem_malloc(i % 10 == 0 ? 200 * kKiB : 64));
    ASSERT_NE(blocks.back(), nullptr);
  }
  const uvmem_malloc_stats before = Stats();
  std::thread([&] {
    for (void* p : blocks) uvmem_free(p);
  }).join();
  const uvmem_malloc_stats after = Stats();
  EXPECT_EQ(after.free_calls - before.free_calls, static_cast<std::uint64_t>(kBlocks));
}

// malloc_calls counts "successful allocations" (uvmem/malloc.h).
TEST(MallocApiTest, FailedAllocationsAreNotCounted) {
  void* warm = uvmem_malloc(16);  // this thread has a heap
  const uvmem_malloc_stats before = Stats();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(uvmem_malloc(std::size_t{1} << 62), nullptr);
  void* ok = uvmem_malloc(32);
  const uvmem_malloc_stats after = Stats();
  EXPECT_EQ(after.malloc_calls - before.malloc_calls, 1u);
  uvmem_free(ok);
  uvmem_free(warm);
}

TEST(MallocApiThreadsTest, BlocksOfAnExitedThreadAreFreedAndItsHeapIsAdopted) {
  constexpr int kBlocks = 6000;
  std::vector<Item> items(kBlocks);
  std::thread([&] {
    for (int i = 0; i < kBlocks; ++i) {
      const std::size_t size = SizeFor(i);
      items[i] = {uvmem_malloc(size), size, static_cast<std::uint64_t>(i) + 7};
      if (items[i].p != nullptr) Fill(items[i].p, size, items[i].seed);
    }
  }).join();
  for (const Item& item : items) {
    ASSERT_NE(item.p, nullptr);
    ASSERT_TRUE(Check(item.p, item.size, item.seed));
  }
  // Free half here, half from another thread, while the owner is gone.
  for (int i = 0; i < kBlocks; i += 2) uvmem_free(items[i].p);
  std::thread([&] {
    for (int i = 1; i < kBlocks; i += 2) uvmem_free(items[i].p);
  }).join();

  const uvmem_malloc_stats before = Stats();
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Item> mine;
      for (int i = 0; i < kBlocks; ++i) {
        const std::size_t size = SizeFor(i);
        void* p = uvmem_malloc(size);
        if (p == nullptr) {
          bad.fetch_add(1);
          continue;
        }
        mine.push_back({p, size, static_cast<std::uint64_t>(i) * 3 + t});
        Fill(p, size, mine.back().seed);
      }
      for (const Item& item : mine) {
        if (!Check(item.p, item.size, item.seed)) bad.fetch_add(1);
        uvmem_free(item.p);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  const uvmem_malloc_stats after = Stats();
  // The new threads adopted abandoned heaps rather than making new ones (at least the
  // exited allocator's and the exited freer's... the freer never allocated, so one).
  EXPECT_LE(after.thread_heaps - before.thread_heaps, 1u)
      << "before " << before.thread_heaps << " after " << after.thread_heaps;
  EXPECT_GT(after.malloc_calls, before.malloc_calls);
  EXPECT_GT(after.free_calls, before.free_calls);
}

TEST(MallocApiThreadsTest, ManyShortLivedThreadsDoNotGrowTheHeapCount) {
  // Each thread allocates, hands half its blocks to the main thread, and exits.
  std::vector<Item> handed;
  std::mutex mu;
  const uvmem_malloc_stats before = Stats();
  for (int round = 0; round < 40; ++round) {
    std::thread([&, round] {
      std::vector<Item> mine;
      for (int i = 0; i < 300; ++i) {
        const std::size_t size = SizeFor(i + round);
        void* p = uvmem_malloc(size);
        ASSERT_NE(p, nullptr);
        mine.push_back({p, size, static_cast<std::uint64_t>(round) * 1000 + i});
        Fill(p, size, mine.back().seed);
      }
      std::lock_guard<std::mutex> lock(mu);
      for (std::size_t i = 0; i < mine.size(); ++i) {
        if (i % 2 == 0) {
          handed.push_back(mine[i]);
        } else {
          uvmem_free(mine[i].p);
        }
      }
    }).join();
  }
  const uvmem_malloc_stats after = Stats();
  EXPECT_LE(after.thread_heaps - before.thread_heaps, 1u);
  for (const Item& item : handed) {
    ASSERT_TRUE(Check(item.p, item.size, item.seed));
    uvmem_free(item.p);
  }
}

// ---- NUMA placement ----------------------------------------------------------------------------

TEST(MallocApiTest, MallocOnNodeZeroPlacesPagesOnNodeZero) {
  for (std::size_t size : {std::size_t{100}, std::size_t{5000}, 2 * kMiB}) {
    char* p = static_cast<char*>(uvmem_malloc_onnode(size, 0));
    ASSERT_NE(p, nullptr) << "size " << size;
    EXPECT_TRUE(AlignedTo(p, 16));
    EXPECT_GE(uvmem_malloc_usable_size(p), size);
    Fill(p, size, size);
    std::vector<void*> pages;
    const auto first = reinterpret_cast<std::uintptr_t>(p) & ~(kPage - 1);
    for (std::uintptr_t a = first; a < reinterpret_cast<std::uintptr_t>(p) + size; a += kPage) {
      pages.push_back(reinterpret_cast<void*>(a));
    }
    std::vector<int> status(pages.size(), -1);
    ASSERT_EQ(move_pages(0, pages.size(), pages.data(), nullptr, status.data(), 0), 0)
        << std::strerror(errno);
    for (std::size_t i = 0; i < status.size(); ++i) {
      EXPECT_EQ(status[i], 0) << "page " << i << " of a " << size << "-byte block";
    }
    EXPECT_TRUE(Check(p, size, size));
    uvmem_free(p);
  }
}

TEST(MallocApiTest, MallocOnAMissingNodeFailsWithEinval) {
  for (int node : {99, 1023, -1}) {
    errno = 0;
    EXPECT_EQ(uvmem_malloc_onnode(100, node), nullptr) << "node " << node;
    EXPECT_EQ(errno, EINVAL) << "node " << node;
  }
}

// ---- memory goes back ---------------------------------------------------------------------------

TEST(MallocApiTest, TrimGivesBackTheFramesOfFreedLargeBlocks) {
  constexpr std::size_t kBlock = 4 * kMiB;
  constexpr int kBlocks = 16;  // 64 MiB
  constexpr std::uint64_t kExpectPages = 60 * kMiB / kPage;
  (void)uvmem_malloc_trim();
  std::vector<char*> blocks;
  for (int i = 0; i < kBlocks; ++i) {
    blocks.push_back(static_cast<char*>(uvmem_malloc(kBlock)));
    ASSERT_NE(blocks.back(), nullptr);
    std::memset(blocks.back(), i + 1, kBlock);
  }
  const uvmem_malloc_stats touched = Stats();
  for (char* b : blocks) uvmem_free(b);
  const uvmem_malloc_stats freed = Stats();
  const std::size_t trimmed = uvmem_malloc_trim();
  const uvmem_malloc_stats after = Stats();
  // The purger (every ~25 ms) may have taken some of them first: together they gave back
  // the 64 MiB; trim gave back whatever was left (all of it, unless the purger was quick).
  EXPECT_GE(after.purged_pages - touched.purged_pages, kExpectPages);
  if (freed.purged_pages == touched.purged_pages) {
    EXPECT_GT(trimmed, 0u);
  }
  EXPECT_LE(after.heap_resident_pages + kExpectPages, touched.heap_resident_pages)
      << "resident before free " << touched.heap_resident_pages << " after trim "
      << after.heap_resident_pages << " trimmed " << trimmed;
  EXPECT_EQ(uvmem_malloc_trim(), 0u);  // nothing left to give back
}

TEST(MallocApiTest, ThePurgerGivesBackFreedMemoryWithoutTrim) {
  constexpr std::size_t kBlock = 4 * kMiB;
  constexpr int kBlocks = 16;
  constexpr std::uint64_t kExpectPages = 60 * kMiB / kPage;
  (void)uvmem_malloc_trim();
  std::vector<char*> blocks;
  for (int i = 0; i < kBlocks; ++i) {
    blocks.push_back(static_cast<char*>(uvmem_malloc(kBlock)));
    ASSERT_NE(blocks.back(), nullptr);
    std::memset(blocks.back(), i + 1, kBlock);
  }
  const uvmem_malloc_stats touched = Stats();
  for (char* b : blocks) uvmem_free(b);
  uvmem_malloc_stats now = Stats();
  for (int i = 0; i < 200; ++i) {  // up to ~10 s
    now = Stats();
    if (now.heap_resident_pages + kExpectPages <= touched.heap_resident_pages) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_LE(now.heap_resident_pages + kExpectPages, touched.heap_resident_pages)
      << "resident before free " << touched.heap_resident_pages << " now "
      << now.heap_resident_pages;
  EXPECT_GE(now.purged_pages - touched.purged_pages, kExpectPages);
}

TEST(MallocApiTest, ReusedPurgedMemoryReadsZeroThenKeepsWhatIsWritten) {
  constexpr std::size_t kBytes = 8 * kMiB;
  char* p = static_cast<char*>(uvmem_malloc(kBytes));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0x77, kBytes);
  uvmem_free(p);
  ASSERT_GT(uvmem_malloc_trim(), 0u);
  char* q = static_cast<char*>(uvmem_calloc(1, kBytes));
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(AllZero(q, kBytes));
  Fill(q, kBytes, 99);
  EXPECT_TRUE(Check(q, kBytes, 99));
  uvmem_free(q);
}

// ---- fork, vfork, posix_spawn -------------------------------------------------------------------

// Runs in a child: allocates and frees a lot and checks it; returns an exit code.
int ChildChurn(int seed) {
  std::vector<Item> live;
  for (int i = 0; i < 20000; ++i) {
    const std::size_t size = SizeFor(i + seed);
    void* p = uvmem_malloc(size);
    if (p == nullptr) return 20;
    live.push_back({p, size, static_cast<std::uint64_t>(i) ^ 0xabcdef});
    Fill(p, size, live.back().seed);
    if (i % 3 == 0) {
      const Item& victim = live[live.size() / 2];
      if (!Check(victim.p, victim.size, victim.seed)) return 21;
      uvmem_free(victim.p);
      live[live.size() / 2] = live.back();
      live.pop_back();
    }
  }
  for (int i = 0; i < 12; ++i) {  // tens of MiB of large blocks
    const std::size_t size = 3 * kMiB + static_cast<std::size_t>(i) * kPage;
    void* p = uvmem_malloc(size);
    if (p == nullptr) return 22;
    Fill(p, size, 500 + i);
    live.push_back({p, size, static_cast<std::uint64_t>(500 + i)});
  }
  for (const Item& item : live) {
    if (!Check(item.p, item.size, item.seed)) return 23;
    uvmem_free(item.p);
  }
  void* z = uvmem_calloc(1, 5 * kMiB);
  if (z == nullptr || !AllZero(z, 5 * kMiB)) return 24;
  uvmem_free(z);
  (void)uvmem_malloc_trim();
  return 0;
}

TEST(MallocForkTest, ChildSeesTheParentsBlocksAndHasAWorkingHeap) {
  std::vector<Item> blocks;
  for (int i = 0; i < 3000; ++i) {
    const std::size_t size = SizeFor(i);
    void* p = uvmem_malloc(size);
    ASSERT_NE(p, nullptr);
    blocks.push_back({p, size, static_cast<std::uint64_t>(i) + 31});
    Fill(p, size, blocks.back().seed);
  }
  for (int i = 0; i < 3; ++i) {
    void* p = uvmem_malloc(kMiB + 100);
    ASSERT_NE(p, nullptr);
    blocks.push_back({p, kMiB + 100, static_cast<std::uint64_t>(i) + 9000});
    Fill(p, kMiB + 100, blocks.back().seed);
  }
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(120);
    for (const Item& item : blocks) {
      if (!Check(item.p, item.size, item.seed)) _exit(10);
    }
    uvmem_malloc_stats s;
    uvmem_malloc_stats_get(&s);
    if (s.paged != 0) _exit(11);  // detached after fork
    if (const int rc = ChildChurn(1); rc != 0) _exit(rc);
    for (const Item& item : blocks) {
      if (!Check(item.p, item.size, item.seed)) _exit(12);
    }
    // The child may realloc and free the parent's blocks (its own copy of them).
    for (Item& item : blocks) {
      if (item.size < kMiB) continue;
      void* q = uvmem_realloc(item.p, item.size * 3);
      if (q == nullptr) _exit(13);
      if (!Check(q, item.size, item.seed)) _exit(14);
      item.p = q;
    }
    for (const Item& item : blocks) uvmem_free(item.p);
    if (const int rc = ChildChurn(2); rc != 0) _exit(rc + 10);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal "
                                 << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (const Item& item : blocks) {
    ASSERT_TRUE(Check(item.p, item.size, item.seed));
  }
  EXPECT_EQ(Stats().paged, 1);
  EXPECT_EQ(ChildChurn(3), 0);  // and the parent's heap still works
  for (const Item& item : blocks) uvmem_free(item.p);
}

TEST(MallocForkTest, ChildOfAChildWorks) {
  void* p = uvmem_malloc(1000);
  ASSERT_NE(p, nullptr);
  Fill(p, 1000, 1);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(120);
    const pid_t grandchild = fork();
    if (grandchild < 0) _exit(30);
    if (grandchild == 0) {
      if (!Check(p, 1000, 1)) _exit(31);
      _exit(ChildChurn(4));
    }
    int status = 0;
    if (waitpid(grandchild, &status, 0) != grandchild) _exit(32);
    if (!WIFEXITED(status)) _exit(33);
    if (WEXITSTATUS(status) != 0) _exit(WEXITSTATUS(status));
    _exit(ChildChurn(5));
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(Check(p, 1000, 1));
  uvmem_free(p);
}

TEST(MallocForkTest, ForkWhileAnotherThreadAllocates) {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> rounds{0};
  std::atomic<int> bad{0};
  std::thread churner([&] {
    std::vector<Item> live;
    std::uint64_t i = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const std::size_t size = SizeFor(static_cast<int>(i % 100000));
      void* p = uvmem_malloc(size);
      if (p == nullptr) {
        bad.fetch_add(1);
        break;
      }
      Fill(p, std::min<std::size_t>(size, 256), i);
      live.push_back({p, std::min<std::size_t>(size, 256), i});
      if (live.size() > 500) {
        for (const Item& item : live) {
          if (!Check(item.p, item.size, item.seed)) bad.fetch_add(1);
          uvmem_free(item.p);
        }
        live.clear();
        if (i % 2000 < 600) (void)uvmem_malloc_trim();
      }
      ++i;
      rounds.store(i, std::memory_order_relaxed);
    }
    for (const Item& item : live) uvmem_free(item.p);
  });
  while (rounds.load() < 1000) std::this_thread::yield();
  for (int k = 0; k < 20; ++k) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(60);  // a deadlocked child dies of SIGALRM
      std::vector<void*> mine;
      for (int i = 0; i < 2000; ++i) {
        void* p = uvmem_malloc(SizeFor(i + k));
        if (p == nullptr) _exit(40);
        std::memset(p, i & 0xff, std::min<std::size_t>(SizeFor(i + k), 64));
        mine.push_back(p);
      }
      for (void* p : mine) uvmem_free(p);
      void* big = uvmem_malloc(4 * kMiB);
      if (big == nullptr) _exit(41);
      std::memset(big, 1, 4 * kMiB);
      uvmem_free(big);
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "fork " << k << ": child killed by signal "
                                   << (WIFSIGNALED(status) ? WTERMSIG(status) : 0)
                                   << " (SIGALRM = deadlock)";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "fork " << k;
  }
  stop.store(true);
  churner.join();
  EXPECT_EQ(bad.load(), 0);
}

class LargeHeap {
 public:
  LargeHeap() {
    for (int i = 0; i < 24; ++i) {  // 192 MiB, touched
      void* p = uvmem_malloc(8 * kMiB);
      EXPECT_NE(p, nullptr);
      if (p != nullptr) std::memset(p, i, 8 * kMiB);
      blocks_.push_back(p);
    }
  }
  ~LargeHeap() {
    for (void* p : blocks_) uvmem_free(p);
  }
  bool Intact() const {
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      const auto* c = static_cast<const unsigned char*>(blocks_[i]);
      for (std::size_t j = 0; j < 8 * kMiB; j += 4099) {
        if (c[j] != i) return false;
      }
    }
    return true;
  }

 private:
  std::vector<void*> blocks_;
};

TEST(MallocForkTest, PosixSpawnFromALargeHeap) {
  LargeHeap heap;
  for (int i = 0; i < 5; ++i) {
    pid_t pid = 0;
    char arg0[] = "/bin/true";
    char* argv[] = {arg0, nullptr};
    ASSERT_EQ(posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  EXPECT_TRUE(heap.Intact());
}

TEST(MallocForkTest, VforkExecFromALargeHeap) {
  LargeHeap heap;
  for (int i = 0; i < 5; ++i) {
    const pid_t pid = vfork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      execl("/bin/true", "/bin/true", static_cast<char*>(nullptr));
      _exit(127);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  EXPECT_TRUE(heap.Intact());
}

TEST(MallocForkTest, ForkExecFromALargeHeap) {
  LargeHeap heap;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(60);
    execl("/bin/sh", "/bin/sh", "-c", "exit 7", static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 7);
  EXPECT_TRUE(heap.Intact());
}

}  // namespace
