// Tests of the C API (uvmem/uvmem.h), plus a C compile of the header (c_header_check.c).
#include "uvmem/uvmem.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
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

TEST(CApiTest, OptionsInitSetsTheDefaults) {
  uvmem_runtime_options options;
  std::memset(&options, 0xab, sizeof(options));  // init must write every field
  uvmem_runtime_options_init(&options);
  EXPECT_EQ(options.pool_bytes_total, std::size_t{1} << 30);
  EXPECT_EQ(options.pool_bytes_per_node, 0u);
  EXPECT_EQ(options.fault_threads, 0);
  EXPECT_EQ(options.fault_around_pages, 64u);
  EXPECT_EQ(options.readahead_pages, 256u);
  EXPECT_EQ(options.use_move, 1);
  EXPECT_EQ(options.allow_user_mode_only, 0);
  EXPECT_EQ(options.prefault_pool, 0);
  EXPECT_EQ(options.budget_bytes, 0u);
  EXPECT_EQ(options.swap_path, nullptr);
  EXPECT_EQ(options.swap_max_bytes, 0u);
}

TEST(CApiTest, SwapCountersAreZeroWithoutABudget) {
  uvmem_runtime_options options;
  uvmem_runtime_options_init(&options);
  options.pool_bytes_total = 16u << 20;
  options.swap_path = "/tmp";  // ignored without a budget
  options.swap_max_bytes = 64u << 20;
  uvmem_runtime* runtime = nullptr;
  ASSERT_EQ(uvmem_runtime_create(&options, &runtime), 0) << uvmem_last_error();
  uvmem_range* range = nullptr;
  ASSERT_EQ(uvmem_reserve(runtime, 1u << 20, nullptr, &range), 0) << uvmem_last_error();
  std::memset(uvmem_range_data(range), 1, 1u << 20);

  uvmem_range_stats rs;
  std::memset(&rs, 0xab, sizeof(rs));  // stats_get must write every field
  ASSERT_EQ(uvmem_range_stats_get(range, &rs), 0);
  EXPECT_EQ(rs.resident_pages, 256u);
  EXPECT_EQ(rs.swapped_pages, 0u);
  EXPECT_EQ(rs.pages_swapped_out, 0u);
  EXPECT_EQ(rs.pages_swapped_in, 0u);

  uvmem_runtime_stats s;
  std::memset(&s, 0xab, sizeof(s));
  ASSERT_EQ(uvmem_runtime_stats_get(runtime, &s), 0);
  EXPECT_EQ(s.swap_enabled, 0);
  const std::uint64_t counters[] = {
      s.swap_budget_pages,        s.swap_low_watermark_pages,   s.swap_high_watermark_pages,
      s.swap_slots_total,         s.swap_slots_used,            s.swap_pages_swapped_out,
      s.swap_pages_swapped_in,    s.swap_bytes_written,         s.swap_bytes_read,
      s.swap_clean_pages_dropped, s.swap_refaults,              s.swap_readahead_pages,
      s.swap_readahead_hits,      s.swap_write_errors,          s.swap_read_errors,
      s.swap_checksum_errors,     s.swap_reclaim_passes,        s.swap_direct_reclaims,
      s.swap_budget_exhausted,    s.swap_swapin_latency_p50_ns, s.swap_swapin_latency_p99_ns,
      s.swap_busy_pages,          s.swap_swap_full};
  for (std::size_t i = 0; i < std::size(counters); ++i) EXPECT_EQ(counters[i], 0u) << i;
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
