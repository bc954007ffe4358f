// frame_pool_test_util.h — helpers shared by the tests that stand on a FramePool.
#ifndef UVMEM_TESTS_FRAME_POOL_TEST_UTIL_H_
#define UVMEM_TESTS_FRAME_POOL_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "frames/frame_pool.h"
#include "platform/memory_map.h"

namespace uvmem::internal::testing {

inline constexpr std::size_t kMiB = std::size_t{1} << 20;
inline constexpr std::size_t kGiB = std::size_t{1} << 30;

// Sanitizers back shadow memory for whatever the program touches: whole-process RSS
// bounds are multiplied by this (exact checks use ResidentDescriptorPages).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr std::size_t kRssSlackFactor = 8;
#else
inline constexpr std::size_t kRssSlackFactor = 1;
#endif

// The process's resident set in bytes (/proc/self/statm), or 0 when unreadable.
inline std::size_t ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size_pages = 0, resident_pages = 0;
  const int got = std::fscanf(f, "%llu %llu", &size_pages, &resident_pages);
  std::fclose(f);
  return got == 2 ? static_cast<std::size_t>(resident_pages) * kPageSize : 0;
}

// How many 4 KiB pages of the descriptor array of the node whose frames start at
// `first_frame` (`frames` of them) are backed, asked without touching them (move_pages).
inline std::uint64_t ResidentDescriptorPages(const FramePool& pool, FrameNumber first_frame,
                                             std::uint64_t frames) {
  auto* base = reinterpret_cast<char*>(&pool.Descriptor(first_frame));
  const std::uint64_t pages = (frames * sizeof(FrameDescriptor) + kPageSize - 1) / kPageSize;
  std::vector<void*> addresses(pages);
  for (std::uint64_t i = 0; i < pages; ++i) addresses[i] = base + i * kPageSize;
  std::vector<int> status(pages, 0);
  EXPECT_TRUE(QueryPageNodes(addresses, absl::MakeSpan(status)).ok());
  std::uint64_t resident = 0;
  for (int st : status) resident += st >= 0 ? 1 : 0;
  return resident;
}

// A pool of `bytes_per_node` per node of `topology`; nullptr (and a test failure) when
// it cannot be made.
inline std::unique_ptr<FramePool> MakePool(const NumaTopology& topology,
                                           std::size_t bytes_per_node,
                                           FramePoolOptions options = {}) {
  options.bytes_per_node = bytes_per_node;
  auto pool = FramePool::Create(options, topology);
  EXPECT_TRUE(pool.ok()) << pool.status();
  return pool.ok() ? std::move(*pool) : nullptr;
}

// The statistics agree with each other: the buddyinfo row adds up to free_frames, which
// includes the untouched frames (whole max-order blocks), and nothing exceeds the node.
inline void ExpectConsistentStats(const FramePool& pool) {
  for (const NodeFrameStats& s : pool.Stats()) {
    std::uint64_t listed = 0;
    for (int o = 0; o <= kMaxOrder; ++o) listed += s.free_blocks[o] << o;
    EXPECT_EQ(listed, s.free_frames) << "node " << s.node.value;
    EXPECT_LE(s.untouched_frames, s.free_frames) << "node " << s.node.value;
    EXPECT_EQ(s.untouched_frames % (std::uint64_t{1} << kMaxOrder), 0u) << "node " << s.node.value;
    EXPECT_LE(s.free_frames + s.percpu_frames, s.total_frames) << "node " << s.node.value;
    EXPECT_LE(s.min_free_frames, s.free_frames) << "node " << s.node.value;
  }
}

// Every node is whole again: all frames free, as max-order blocks, none in per-CPU caches.
inline void ExpectWhole(FramePool& pool) {
  pool.DrainPerCpuCaches();
  pool.CheckInvariants();
  ExpectConsistentStats(pool);
  for (const NodeFrameStats& s : pool.Stats()) {
    EXPECT_EQ(s.free_frames, s.total_frames) << "node " << s.node.value;
    EXPECT_EQ(s.free_blocks[kMaxOrder], s.total_frames >> kMaxOrder) << "node " << s.node.value;
    EXPECT_EQ(s.percpu_frames, 0u) << "node " << s.node.value;
  }
}

}  // namespace uvmem::internal::testing

#endif  // UVMEM_TESTS_FRAME_POOL_TEST_UTIL_H_
