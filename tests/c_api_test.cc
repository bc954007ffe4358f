// Tests of the C API (uvmem/uvmem.h), plus a C compile of the header (c_header_check.c).
#include "uvmem/uvmem.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace {

TEST(CApiTest, ReserveTouchStatsRelease) {
  uvmem_runtime_options options;
  uvmem_runtime_options_init(&options);
  EXPECT_EQ(options.fault_around_pages, 64u);
  options.pool_bytes_total = 32u << 20;
  options.readahead_pages = 0;  // resident pages are exactly those touched
  uvmem_runtime* runtime = nullptr;
  ASSERT_EQ(uvmem_runtime_create(&options, &runtime), 0) << uvmem_last_error();
  const int node = 0;
  uvmem_range_options range_options = {"c-range", UVMEM_NUMA_BIND, &node, 1};
  uvmem_range* range = nullptr;
  ASSERT_EQ(uvmem_reserve(runtime, 3u << 20, &range_options, &range), 0) << uvmem_last_error();
  EXPECT_EQ(uvmem_range_size(range), 3u << 20);
  std::memset(uvmem_range_data(range), 9, 1u << 20);
  uvmem_range_stats rs;
  ASSERT_EQ(uvmem_range_stats_get(range, &rs), 0);
  EXPECT_EQ(rs.resident_pages, 256u);
  uvmem_runtime_stats s;
  ASSERT_EQ(uvmem_runtime_stats_get(runtime, &s), 0);
  EXPECT_EQ(s.ranges, 1u);
  EXPECT_GT(s.pool_total_frames, s.pool_free_frames);
  EXPECT_EQ(s.uffd_full, 1);
  EXPECT_GE(s.num_nodes, 1);
  uvmem_node_stats node0;
  ASSERT_EQ(uvmem_runtime_node_stats_get(runtime, 0, &node0), 0);
  EXPECT_EQ(node0.node, 0);
  EXPECT_EQ(node0.total_frames, s.pool_total_frames / s.num_nodes);
  EXPECT_GE(node0.used_frames, 256u);
  EXPECT_EQ(uvmem_runtime_node_stats_get(runtime, s.num_nodes, &node0), EINVAL);
  EXPECT_EQ(uvmem_range_release(range), 0);
  uvmem_runtime_destroy(runtime);
}

TEST(CApiTest, ErrorsComeBackAsErrnoWithAMessage) {
  uvmem_runtime_options options;
  uvmem_runtime_options_init(&options);
  options.fault_around_pages = 3;
  uvmem_runtime* runtime = nullptr;
  EXPECT_EQ(uvmem_runtime_create(&options, &runtime), EINVAL);
  EXPECT_NE(std::string(uvmem_last_error()).find("power of two"), std::string::npos);
  options.fault_around_pages = 64;
  options.pool_bytes_total = 8u << 20;
  ASSERT_EQ(uvmem_runtime_create(&options, &runtime), 0);
  const int missing = 99;
  uvmem_range_options bad = {nullptr, UVMEM_NUMA_BIND, &missing, 1};
  uvmem_range* range = nullptr;
  EXPECT_EQ(uvmem_reserve(runtime, 4096, &bad, &range), EINVAL);
  EXPECT_NE(std::string(uvmem_last_error()).find("node 99"), std::string::npos);
  EXPECT_EQ(uvmem_reserve(runtime, 0, nullptr, &range), EINVAL);
  uvmem_range_options bad_kind = {nullptr, 7, nullptr, 0};
  EXPECT_EQ(uvmem_reserve(runtime, 4096, &bad_kind, &range), EINVAL);
  EXPECT_NE(std::string(uvmem_last_error()).find("numa_kind"), std::string::npos);
  uvmem_runtime_destroy(runtime);
}

}  // namespace
