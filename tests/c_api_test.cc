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

constexpr std::size_t kPage = 4096;

// Byte `offset` of a test pattern: different in neighbouring bytes and pages, and for
// every seed.
unsigned char Pattern(std::size_t offset, unsigned seed) {
  return static_cast<unsigned char>((offset / kPage) * 31 + (offset % kPage) * 7 + seed * 101 + 1);
}

void FillPattern(uvmem_range* range, std::size_t begin, std::size_t end, unsigned seed) {
  auto* p = static_cast<unsigned char*>(uvmem_range_data(range));
  for (std::size_t i = begin; i < end; ++i) p[i] = Pattern(i, seed);
}

// Whether bytes [begin, end) of `range` are want(offset); else the first that is not.
template <typename Want>
::testing::AssertionResult BytesAre(const uvmem_range* range, std::size_t begin, std::size_t end,
                                    Want want) {
  const auto* p = static_cast<const unsigned char*>(uvmem_range_data(range));
  for (std::size_t i = begin; i < end; ++i) {
    if (p[i] != want(i)) {
      return ::testing::AssertionFailure()
             << "byte " << i << " (page " << i / kPage << ") is " << static_cast<int>(p[i])
             << ", want " << static_cast<int>(want(i));
    }
  }
  return ::testing::AssertionSuccess();
}
auto PatternOf(unsigned seed) {
  return [seed](std::size_t offset) { return Pattern(offset, seed); };
}
auto Byte(unsigned char value) {
  return [value](std::size_t) { return value; };
}

uvmem_range_stats RangeStats(const uvmem_range* range) {
  uvmem_range_stats s;
  std::memset(&s, 0xab, sizeof(s));  // stats_get must write every field
  EXPECT_EQ(uvmem_range_stats_get(range, &s), 0) << uvmem_last_error();
  return s;
}

uvmem_runtime_stats RuntimeStats(const uvmem_runtime* runtime) {
  uvmem_runtime_stats s;
  std::memset(&s, 0xab, sizeof(s));
  EXPECT_EQ(uvmem_runtime_stats_get(runtime, &s), 0) << uvmem_last_error();
  return s;
}

// The documented relations between the runtime's clone counters.
void ExpectCloneStatsConsistent(const uvmem_runtime_stats& s) {
  EXPECT_GE(s.clone_shared_pages, 2 * s.clone_shared_frames);  // a shared frame serves 2+
  EXPECT_EQ(s.clone_bytes_saved, (s.clone_shared_pages - s.clone_shared_frames) * kPage);
}

// A runtime for clone tests, or nullptr (and a failure) when it cannot be made.
uvmem_runtime* CloneRuntime() {
  uvmem_runtime_options options;
  uvmem_runtime_options_init(&options);
  options.pool_bytes_total = 64u << 20;
  uvmem_runtime* runtime = nullptr;
  EXPECT_EQ(uvmem_runtime_create(&options, &runtime), 0) << uvmem_last_error();
  return runtime;
}

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

TEST(CApiTest, CloneIsIndependentBothWays) {
  constexpr std::size_t kSize = 4u << 20;
  constexpr std::size_t kPages = kSize / kPage;  // 1024
  uvmem_runtime* runtime = CloneRuntime();
  ASSERT_NE(runtime, nullptr);
  const uvmem_range_options range_options = {"c-source", UVMEM_NUMA_LOCAL, nullptr, 0};
  uvmem_range* source = nullptr;
  ASSERT_EQ(uvmem_reserve(runtime, kSize, &range_options, &source), 0) << uvmem_last_error();
  FillPattern(source, 0, kSize, 1);
  EXPECT_EQ(RangeStats(source).shared_pages, 0u);
  EXPECT_EQ(RuntimeStats(runtime).clone_clones, 0u);

  uvmem_range* clone = nullptr;
  const int rc = uvmem_range_clone(source, "c-clone", &clone);
  if (rc == EOPNOTSUPP) {
    EXPECT_EQ(uvmem_range_release(source), 0);
    uvmem_runtime_destroy(runtime);
    GTEST_SKIP() << "no userfaultfd write-protection: " << uvmem_last_error();
  }
  ASSERT_EQ(rc, 0) << uvmem_last_error();
  ASSERT_NE(clone, nullptr);
  EXPECT_STREQ(uvmem_last_error(), "");
  EXPECT_EQ(uvmem_range_size(clone), kSize);
  EXPECT_NE(uvmem_range_data(clone), uvmem_range_data(source));

  // Right after the call: every page of the source is shared, nothing copied yet.
  {
    const uvmem_range_stats src = RangeStats(source);
    EXPECT_GT(src.shared_pages, 0u);
    EXPECT_LE(src.shared_pages, kPages);
    EXPECT_EQ(src.cow_copies, 0u);
    EXPECT_EQ(src.resident_pages, kPages);
    const uvmem_range_stats cln = RangeStats(clone);
    EXPECT_EQ(cln.cow_copies, 0u);
    EXPECT_EQ(cln.cow_moves, 0u);
    EXPECT_EQ(cln.swapped_pages, 0u);
    const uvmem_runtime_stats s = RuntimeStats(runtime);
    EXPECT_EQ(s.clone_clones, 1u);
    EXPECT_EQ(s.ranges, 2u);
    EXPECT_GT(s.clone_shared_frames, 0u);
    EXPECT_GT(s.clone_bytes_saved, 0u);
    EXPECT_EQ(s.clone_cow_copies_source_side, 0u);
    EXPECT_EQ(s.clone_cow_copies_clone_side, 0u);
    EXPECT_EQ(s.clone_cow_moves, 0u);
    EXPECT_EQ(s.clone_shared_swap_slots, 0u);  // no budget, no swap
    ExpectCloneStatsConsistent(s);
  }

  // 1. The source writes pages [0, 256) before the clone touched anything: the originals
  //    are preserved for the clone (source-side copies).
  std::memset(uvmem_range_data(source), 0x11, 256 * kPage);
  {
    const uvmem_range_stats src = RangeStats(source);
    EXPECT_GT(src.cow_copies, 0u);
    EXPECT_LE(src.cow_copies, 256u);
    const uvmem_runtime_stats s = RuntimeStats(runtime);
    EXPECT_GT(s.clone_cow_copies_source_side, 0u);
    ExpectCloneStatsConsistent(s);
  }
  // 2. The clone's first touch of pages [768, 832) is a write.
  std::memset(static_cast<char*>(uvmem_range_data(clone)) + 768 * kPage, 0x33, 64 * kPage);
  // 3. The clone reads the source's bytes of the moment of the call everywhere else.
  EXPECT_TRUE(BytesAre(clone, 0, 768 * kPage, PatternOf(1)));
  EXPECT_TRUE(BytesAre(clone, 768 * kPage, 832 * kPage, Byte(0x33)));
  EXPECT_TRUE(BytesAre(clone, 832 * kPage, kSize, PatternOf(1)));
  // 4. The clone writes pages [512, 640).
  std::memset(static_cast<char*>(uvmem_range_data(clone)) + 512 * kPage, 0x22, 128 * kPage);
  // 5. The source writes pages [900, 1024), which the clone has its own copies of now.
  std::memset(static_cast<char*>(uvmem_range_data(source)) + 900 * kPage, 0x44, 124 * kPage);

  // Neither side sees the other's writes.
  EXPECT_TRUE(BytesAre(source, 0, 256 * kPage, Byte(0x11)));
  EXPECT_TRUE(BytesAre(source, 256 * kPage, 900 * kPage, PatternOf(1)));
  EXPECT_TRUE(BytesAre(source, 900 * kPage, kSize, Byte(0x44)));
  EXPECT_TRUE(BytesAre(clone, 0, 512 * kPage, PatternOf(1)));
  EXPECT_TRUE(BytesAre(clone, 512 * kPage, 640 * kPage, Byte(0x22)));
  EXPECT_TRUE(BytesAre(clone, 640 * kPage, 768 * kPage, PatternOf(1)));
  EXPECT_TRUE(BytesAre(clone, 768 * kPage, 832 * kPage, Byte(0x33)));
  EXPECT_TRUE(BytesAre(clone, 832 * kPage, 900 * kPage, PatternOf(1)));
  EXPECT_TRUE(BytesAre(clone, 900 * kPage, kSize, PatternOf(1)));
  {
    // The clone touched every page: it has its own copy of each, nothing is shared.
    const uvmem_range_stats cln = RangeStats(clone);
    EXPECT_GT(cln.cow_copies, 0u);
    EXPECT_EQ(cln.cow_copies + cln.cow_moves, kPages) << cln.cow_copies << " + " << cln.cow_moves;
    EXPECT_EQ(cln.shared_pages, 0u);
    EXPECT_EQ(cln.resident_pages, kPages);
    EXPECT_EQ(RangeStats(source).shared_pages, 0u);
    const uvmem_runtime_stats s = RuntimeStats(runtime);
    EXPECT_GT(s.clone_cow_copies_clone_side, 0u);
    EXPECT_EQ(s.clone_cow_moves, cln.cow_moves);
    if (s.move_used != 0) {
      // The clone was the last range sharing the originals the source preserved in 1.
      EXPECT_GT(s.clone_cow_moves, 0u);
    }
    EXPECT_EQ(s.clone_shared_frames, 0u);
    EXPECT_EQ(s.clone_shared_pages, 0u);
    EXPECT_EQ(s.clone_bytes_saved, 0u);
    ExpectCloneStatsConsistent(s);
  }

  // Release the source first: the clone keeps its bytes and stays writable.
  ASSERT_EQ(uvmem_range_release(source), 0) << uvmem_last_error();
  EXPECT_TRUE(BytesAre(clone, 0, 512 * kPage, PatternOf(1)));
  EXPECT_TRUE(BytesAre(clone, 512 * kPage, 640 * kPage, Byte(0x22)));
  EXPECT_TRUE(BytesAre(clone, 900 * kPage, kSize, PatternOf(1)));
  FillPattern(clone, 0, kSize, 2);
  EXPECT_TRUE(BytesAre(clone, 0, kSize, PatternOf(2)));
  EXPECT_EQ(RuntimeStats(runtime).ranges, 1u);
  EXPECT_EQ(uvmem_range_release(clone), 0) << uvmem_last_error();
  const uvmem_runtime_stats end = RuntimeStats(runtime);
  EXPECT_EQ(end.ranges, 0u);
  EXPECT_EQ(end.resident_pages, 0u);
  EXPECT_EQ(end.clone_clones, 1u);
  EXPECT_EQ(end.clone_shared_frames, 0u);
  uvmem_runtime_destroy(runtime);
}

// The source released while every page is still shared: the clone still reads them.
TEST(CApiTest, CloneOutlivesItsSourceWhilePagesAreShared) {
  constexpr std::size_t kSize = 4u << 20;
  uvmem_runtime* runtime = CloneRuntime();
  ASSERT_NE(runtime, nullptr);
  uvmem_range* source = nullptr;
  ASSERT_EQ(uvmem_reserve(runtime, kSize, nullptr, &source), 0) << uvmem_last_error();
  FillPattern(source, 0, kSize / 2, 3);  // the second half never touched: zeros
  uvmem_range* clone = nullptr;
  const int rc = uvmem_range_clone(source, nullptr, &clone);
  if (rc == EOPNOTSUPP) {
    EXPECT_EQ(uvmem_range_release(source), 0);
    uvmem_runtime_destroy(runtime);
    GTEST_SKIP() << "no userfaultfd write-protection: " << uvmem_last_error();
  }
  ASSERT_EQ(rc, 0) << uvmem_last_error();
  EXPECT_GT(RangeStats(source).shared_pages, 0u);
  ASSERT_EQ(uvmem_range_release(source), 0) << uvmem_last_error();
  {
    const uvmem_runtime_stats s = RuntimeStats(runtime);
    EXPECT_EQ(s.ranges, 1u);
    ExpectCloneStatsConsistent(s);
  }
  EXPECT_TRUE(BytesAre(clone, 0, kSize / 2, PatternOf(3)));
  EXPECT_TRUE(BytesAre(clone, kSize / 2, kSize, Byte(0)));
  std::memset(uvmem_range_data(clone), 0x5a, kSize);
  EXPECT_TRUE(BytesAre(clone, 0, kSize, Byte(0x5a)));
  EXPECT_EQ(uvmem_range_release(clone), 0) << uvmem_last_error();
  const uvmem_runtime_stats end = RuntimeStats(runtime);
  EXPECT_EQ(end.ranges, 0u);
  EXPECT_EQ(end.clone_shared_frames, 0u);
  EXPECT_EQ(end.clone_bytes_saved, 0u);
  uvmem_runtime_destroy(runtime);
}

// A clone of a clone sees the first clone's bytes (its own writes and the pages it still
// shares with the source), and the three ranges are independent.
TEST(CApiTest, CloneOfACloneWorks) {
  constexpr std::size_t kSize = 4u << 20;
  constexpr std::size_t kHalf = kSize / 2;
  uvmem_runtime* runtime = CloneRuntime();
  ASSERT_NE(runtime, nullptr);
  uvmem_range* source = nullptr;
  ASSERT_EQ(uvmem_reserve(runtime, kSize, nullptr, &source), 0) << uvmem_last_error();
  FillPattern(source, 0, kSize, 4);
  uvmem_range* first = nullptr;
  const int rc = uvmem_range_clone(source, "", &first);
  if (rc == EOPNOTSUPP) {
    EXPECT_EQ(uvmem_range_release(source), 0);
    uvmem_runtime_destroy(runtime);
    GTEST_SKIP() << "no userfaultfd write-protection: " << uvmem_last_error();
  }
  ASSERT_EQ(rc, 0) << uvmem_last_error();
  // The first clone writes its first half; its second half it never touches (shared
  // with the source, mapped by neither clone).
  FillPattern(first, 0, kHalf, 5);
  uvmem_range* second = nullptr;
  ASSERT_EQ(uvmem_range_clone(first, "c-second", &second), 0) << uvmem_last_error();
  EXPECT_EQ(uvmem_range_size(second), kSize);
  EXPECT_EQ(RuntimeStats(runtime).clone_clones, 2u);
  ExpectCloneStatsConsistent(RuntimeStats(runtime));

  EXPECT_TRUE(BytesAre(second, 0, kHalf, PatternOf(5)));
  EXPECT_TRUE(BytesAre(second, kHalf, kSize, PatternOf(4)));

  // Writes on each of the three are seen by none of the others.
  std::memset(static_cast<char*>(uvmem_range_data(source)) + kHalf, 0x61, kHalf / 2);
  std::memset(static_cast<char*>(uvmem_range_data(second)), 0x62, kHalf / 2);
  std::memset(static_cast<char*>(uvmem_range_data(first)) + kHalf + kHalf / 2, 0x63, kHalf / 2);
  EXPECT_TRUE(BytesAre(source, 0, kHalf, PatternOf(4)));
  EXPECT_TRUE(BytesAre(source, kHalf, kHalf + kHalf / 2, Byte(0x61)));
  EXPECT_TRUE(BytesAre(source, kHalf + kHalf / 2, kSize, PatternOf(4)));
  EXPECT_TRUE(BytesAre(first, 0, kHalf, PatternOf(5)));
  EXPECT_TRUE(BytesAre(first, kHalf, kHalf + kHalf / 2, PatternOf(4)));
  EXPECT_TRUE(BytesAre(first, kHalf + kHalf / 2, kSize, Byte(0x63)));
  EXPECT_TRUE(BytesAre(second, 0, kHalf / 2, Byte(0x62)));
  EXPECT_TRUE(BytesAre(second, kHalf / 2, kHalf, PatternOf(5)));
  EXPECT_TRUE(BytesAre(second, kHalf, kSize, PatternOf(4)));
  ExpectCloneStatsConsistent(RuntimeStats(runtime));

  // Release the middle of the chain, then the source: the last clone keeps its bytes.
  ASSERT_EQ(uvmem_range_release(first), 0) << uvmem_last_error();
  EXPECT_TRUE(BytesAre(second, 0, kHalf / 2, Byte(0x62)));
  ASSERT_EQ(uvmem_range_release(source), 0) << uvmem_last_error();
  EXPECT_TRUE(BytesAre(second, kHalf / 2, kHalf, PatternOf(5)));
  EXPECT_TRUE(BytesAre(second, kHalf, kSize, PatternOf(4)));
  EXPECT_EQ(uvmem_range_release(second), 0) << uvmem_last_error();
  const uvmem_runtime_stats end = RuntimeStats(runtime);
  EXPECT_EQ(end.ranges, 0u);
  EXPECT_EQ(end.resident_pages, 0u);
  EXPECT_EQ(end.clone_shared_frames, 0u);
  uvmem_runtime_destroy(runtime);
}

// What the C API can check of Clone's arguments and errors. A released source cannot be
// named in C (uvmem_range_release frees the handle; the arguments are nonnull), so the
// EINVAL and EOPNOTSUPP paths are not reachable from here; this checks what is: a clone
// of an untouched range (nothing to share) with a NULL or empty name, clones of one
// source made many times, and that a failed call leaves *out alone.
TEST(CApiTest, CloneOfReleasedOrBadArgs) {
  uvmem_runtime* runtime = CloneRuntime();
  ASSERT_NE(runtime, nullptr);
  uvmem_range* source = nullptr;
  ASSERT_EQ(uvmem_reserve(runtime, 1u << 20, nullptr, &source), 0) << uvmem_last_error();
  uvmem_range* clones[3] = {};
  const char* names[3] = {nullptr, "", "c-third"};
  for (int i = 0; i < 3; ++i) {
    const int rc = uvmem_range_clone(source, names[i], &clones[i]);
    if (rc == EOPNOTSUPP) {
      for (int j = 0; j < i; ++j) EXPECT_EQ(uvmem_range_release(clones[j]), 0);
      EXPECT_EQ(uvmem_range_release(source), 0);
      uvmem_runtime_destroy(runtime);
      GTEST_SKIP() << "no userfaultfd write-protection: " << uvmem_last_error();
    }
    ASSERT_EQ(rc, 0) << i << ": " << uvmem_last_error();
    EXPECT_EQ(uvmem_range_size(clones[i]), 1u << 20);
  }
  // Nothing was resident: nothing is shared, and every clone reads zeros.
  EXPECT_EQ(RangeStats(source).shared_pages, 0u);
  uvmem_runtime_stats s = RuntimeStats(runtime);
  EXPECT_EQ(s.clone_clones, 3u);
  EXPECT_EQ(s.clone_shared_frames, 0u);
  EXPECT_EQ(s.clone_bytes_saved, 0u);
  for (uvmem_range* clone : clones) EXPECT_TRUE(BytesAre(clone, 0, 1u << 20, Byte(0)));
  // Writes in the source after the calls are in no clone.
  std::memset(uvmem_range_data(source), 0x7f, 1u << 20);
  for (uvmem_range* clone : clones) {
    EXPECT_TRUE(BytesAre(clone, 0, 1u << 20, Byte(0)));
    EXPECT_EQ(uvmem_range_release(clone), 0) << uvmem_last_error();
  }
  EXPECT_EQ(uvmem_range_release(source), 0) << uvmem_last_error();
  s = RuntimeStats(runtime);
  EXPECT_EQ(s.ranges, 0u);
  uvmem_runtime_destroy(runtime);
}

}  // namespace
