// frame_pool_test_util.h — helpers shared by the tests that stand on a FramePool.
#ifndef UVMEM_TESTS_FRAME_POOL_TEST_UTIL_H_
#define UVMEM_TESTS_FRAME_POOL_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <memory>

#include "frames/frame_pool.h"

namespace uvmem::internal::testing {

inline constexpr std::size_t kMiB = std::size_t{1} << 20;

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

// Every node is whole again: all frames free, as max-order blocks, none in per-CPU caches.
inline void ExpectWhole(FramePool& pool) {
  pool.DrainPerCpuCaches();
  pool.CheckInvariants();
  for (const NodeFrameStats& s : pool.Stats()) {
    EXPECT_EQ(s.free_frames, s.total_frames) << "node " << s.node.value;
    EXPECT_EQ(s.free_blocks[kMaxOrder], s.total_frames >> kMaxOrder) << "node " << s.node.value;
    EXPECT_EQ(s.percpu_frames, 0u) << "node " << s.node.value;
  }
}

}  // namespace uvmem::internal::testing

#endif  // UVMEM_TESTS_FRAME_POOL_TEST_UTIL_H_
