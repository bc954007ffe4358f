// Tests of the at-exit statistics report: the JSON parses back to the same numbers, and
// the text summary shows every figure with its unit.
#include "report/stats_report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "uvmem/version.h"

namespace uvmem::internal {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A paged heap on two nodes, every counter distinct.
MallocStats TwoNodeStats() {
  MallocStats s;
  s.paged = true;
  s.mode = "paged";
  s.malloc_calls = 1234567;
  s.free_calls = 1200001;
  s.thread_heaps = 12;
  s.small_pages_now = 34;
  s.large_spans_now = 2;
  s.spans_bytes_now = 12 << 20;
  s.purged_pages = 1024;
  s.heap_reserved_bytes = std::uint64_t{64} << 30;
  s.heap_resident_pages = 3072;
  s.heap_peak_resident_pages = 4096;
  RuntimeStats& r = s.runtime;
  r.faults = 12345;
  r.pages_filled = 98765;
  r.fault_around_pages = 86420;
  r.pages_moved = 98000;
  r.pages_copied = 765;
  r.races_lost = 3;
  r.oom_kills = 1;
  r.ranges = 2;
  r.resident_pages = 3100;
  r.metadata_bytes = 1536 << 10;
  r.fault_latency_p50_ns = 12000;
  r.fault_latency_p99_ns = 85500;
  r.uffd_mode = "full";
  r.move_used = true;
  r.nodes = {{.node = NodeId{0},
              .total_frames = 262144,
              .free_frames = 249799,
              .used_frames = 12345,
              .peak_used_frames = 20000},
             {.node = NodeId{1},
              .total_frames = 262144,
              .free_frames = 262044,
              .used_frames = 100,
              .peak_used_frames = 2560}};
  r.slabinfo = "slabinfo - version: 2.1\n";
  return s;
}

// TwoNodeStats with a budget and swap, every swap counter distinct.
MallocStats SwapStatsExample() {
  MallocStats s = TwoNodeStats();
  SwapStats& w = s.runtime.swap;
  w.enabled = true;
  w.device = "/tmp (O_TMPFILE)";
  w.budget_pages = 131072;  // 512 MiB
  w.low_watermark_pages = 2048;
  w.high_watermark_pages = 4096;
  w.slots_total = 524288;  // 2 GiB
  w.slots_used = 65536;
  w.pages_swapped_out = 200000;
  w.pages_swapped_in = 150000;
  w.bytes_written = std::uint64_t{700} << 20;
  w.bytes_read = std::uint64_t{586} << 20;
  w.clean_pages_dropped = 20800;
  w.refaults = 37500;
  w.readahead_pages = 112500;
  w.readahead_hits = 90000;
  w.write_errors = 7;
  w.read_errors = 5;
  w.checksum_errors = 3;
  w.busy_pages = 11;
  w.swap_full = 13;
  w.reclaim_passes = 4321;
  w.direct_reclaims = 876;
  w.budget_exhausted = 2;
  w.swapin_latency_p50_ns = 45000;
  w.swapin_latency_p99_ns = 310500;
  return s;
}

// TwoNodeStats after copy-on-write clones, every clone counter distinct.
MallocStats CloneStatsExample() {
  MallocStats s = TwoNodeStats();
  CloneStats& c = s.runtime.clone;
  c.clones = 3;
  c.shared_frames = 1024;                     // 4 MiB
  c.shared_pages = 3072;                      // 12 MiB
  c.cow_copies_source_side = 512;             // 2 MiB
  c.cow_copies_clone_side = 768;              // 3 MiB
  c.cow_moves = 256;                          // 1 MiB
  c.shared_swap_slots = 128;                  // 512 KiB
  c.bytes_saved = (3072 - 1024) * kPageSize;  // 8 MiB
  return s;
}

TEST(StatsReportJsonTest, ParsesBackToTheSameNumbers) {
  const MallocStats s = TwoNodeStats();
  const std::string text = FormatStatsJson(s);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  const nlohmann::json j = nlohmann::json::parse(text);

  EXPECT_EQ(j.at("uvmem_version"), UVMEM_VERSION_STRING);
  EXPECT_EQ(j.at("mode"), "paged");
  EXPECT_EQ(j.at("paged"), true);

  const nlohmann::json& heap = j.at("heap");
  EXPECT_EQ(heap.at("malloc_calls"), 1234567u);
  EXPECT_EQ(heap.at("free_calls"), 1200001u);
  EXPECT_EQ(heap.at("thread_heaps"), 12u);
  EXPECT_EQ(heap.at("small_pages_now"), 34u);
  EXPECT_EQ(heap.at("large_spans_now"), 2u);
  EXPECT_EQ(heap.at("spans_bytes_now"), 12u << 20);
  EXPECT_EQ(heap.at("purged_pages"), 1024u);
  EXPECT_EQ(heap.at("heap_reserved_bytes"), std::uint64_t{64} << 30);
  EXPECT_EQ(heap.at("heap_resident_pages"), 3072u);
  EXPECT_EQ(heap.at("heap_peak_resident_pages"), 4096u);

  const nlohmann::json& r = j.at("runtime");
  EXPECT_EQ(r.at("faults"), 12345u);
  EXPECT_EQ(r.at("pages_filled"), 98765u);
  EXPECT_EQ(r.at("fault_around_pages"), 86420u);
  EXPECT_EQ(r.at("pages_moved"), 98000u);
  EXPECT_EQ(r.at("pages_copied"), 765u);
  EXPECT_EQ(r.at("races_lost"), 3u);
  EXPECT_EQ(r.at("oom_kills"), 1u);
  EXPECT_EQ(r.at("ranges"), 2u);
  EXPECT_EQ(r.at("resident_pages"), 3100u);
  EXPECT_EQ(r.at("metadata_bytes"), 1536u << 10);
  EXPECT_EQ(r.at("fault_latency_p50_ns"), 12000u);
  EXPECT_EQ(r.at("fault_latency_p99_ns"), 85500u);
  EXPECT_EQ(r.at("uffd_mode"), "full");
  EXPECT_EQ(r.at("move_used"), true);
  EXPECT_FALSE(r.contains("slabinfo"));

  const nlohmann::json& nodes = r.at("nodes");
  ASSERT_TRUE(nodes.is_array());
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].at("node"), 0);
  EXPECT_EQ(nodes[0].at("total_frames"), 262144u);
  EXPECT_EQ(nodes[0].at("free_frames"), 249799u);
  EXPECT_EQ(nodes[0].at("used_frames"), 12345u);
  EXPECT_EQ(nodes[0].at("peak_used_frames"), 20000u);
  EXPECT_EQ(nodes[1].at("node"), 1);
  EXPECT_EQ(nodes[1].at("used_frames"), 100u);
  EXPECT_EQ(nodes[1].at("peak_used_frames"), 2560u);
}

TEST(StatsReportJsonTest, SwapHasEverySwapStatsField) {
  const nlohmann::json j = nlohmann::json::parse(FormatStatsJson(SwapStatsExample()));
  const nlohmann::json& w = j.at("runtime").at("swap");
  EXPECT_EQ(w.at("enabled"), true);
  EXPECT_EQ(w.at("device"), "/tmp (O_TMPFILE)");
  EXPECT_EQ(w.at("budget_pages"), 131072u);
  EXPECT_EQ(w.at("low_watermark_pages"), 2048u);
  EXPECT_EQ(w.at("high_watermark_pages"), 4096u);
  EXPECT_EQ(w.at("slots_total"), 524288u);
  EXPECT_EQ(w.at("slots_used"), 65536u);
  EXPECT_EQ(w.at("pages_swapped_out"), 200000u);
  EXPECT_EQ(w.at("pages_swapped_in"), 150000u);
  EXPECT_EQ(w.at("bytes_written"), std::uint64_t{700} << 20);
  EXPECT_EQ(w.at("bytes_read"), std::uint64_t{586} << 20);
  EXPECT_EQ(w.at("clean_pages_dropped"), 20800u);
  EXPECT_EQ(w.at("refaults"), 37500u);
  EXPECT_EQ(w.at("readahead_pages"), 112500u);
  EXPECT_EQ(w.at("readahead_hits"), 90000u);
  EXPECT_EQ(w.at("write_errors"), 7u);
  EXPECT_EQ(w.at("busy_pages"), 11u);
  EXPECT_EQ(w.at("swap_full"), 13u);
  EXPECT_EQ(w.at("read_errors"), 5u);
  EXPECT_EQ(w.at("checksum_errors"), 3u);
  EXPECT_EQ(w.at("reclaim_passes"), 4321u);
  EXPECT_EQ(w.at("direct_reclaims"), 876u);
  EXPECT_EQ(w.at("budget_exhausted"), 2u);
  EXPECT_EQ(w.at("swapin_latency_p50_ns"), 45000u);
  EXPECT_EQ(w.at("swapin_latency_p99_ns"), 310500u);
  EXPECT_EQ(w.size(), 25u);  // every SwapStats field, nothing else
}

TEST(StatsReportJsonTest, SwapIsAlwaysThereAndZeroWithoutABudget) {
  const nlohmann::json j = nlohmann::json::parse(FormatStatsJson(TwoNodeStats()));
  const nlohmann::json& w = j.at("runtime").at("swap");
  EXPECT_EQ(w.at("enabled"), false);
  EXPECT_EQ(w.at("device"), "");
  EXPECT_EQ(w.at("budget_pages"), 0u);
  EXPECT_EQ(w.at("pages_swapped_out"), 0u);
  EXPECT_EQ(w.size(), 25u);
  // An unpaged heap too.
  const nlohmann::json unpaged = nlohmann::json::parse(FormatStatsJson(MallocStats{}));
  EXPECT_EQ(unpaged.at("runtime").at("swap").at("enabled"), false);
}

TEST(StatsReportJsonTest, CloneHasEveryCloneStatsField) {
  const nlohmann::json j = nlohmann::json::parse(FormatStatsJson(CloneStatsExample()));
  const nlohmann::json& c = j.at("runtime").at("clone");
  EXPECT_EQ(c.at("clones"), 3u);
  EXPECT_EQ(c.at("shared_frames"), 1024u);
  EXPECT_EQ(c.at("shared_pages"), 3072u);
  EXPECT_EQ(c.at("cow_copies_source_side"), 512u);
  EXPECT_EQ(c.at("cow_copies_clone_side"), 768u);
  EXPECT_EQ(c.at("cow_moves"), 256u);
  EXPECT_EQ(c.at("shared_swap_slots"), 128u);
  EXPECT_EQ(c.at("bytes_saved"), std::uint64_t{8} << 20);
  EXPECT_EQ(c.size(), 8u);  // every CloneStats field, nothing else
}

TEST(StatsReportJsonTest, CloneIsAlwaysThereAndZeroWithoutClones) {
  const nlohmann::json j = nlohmann::json::parse(FormatStatsJson(TwoNodeStats()));
  const nlohmann::json& c = j.at("runtime").at("clone");
  EXPECT_EQ(c.size(), 8u);
  for (const auto& [key, value] : c.items()) EXPECT_EQ(value, 0u) << key;
  // An unpaged heap too.
  const nlohmann::json unpaged = nlohmann::json::parse(FormatStatsJson(MallocStats{}));
  EXPECT_EQ(unpaged.at("runtime").at("clone").at("clones"), 0u);
}

TEST(StatsReportJsonTest, KeysComeInTheDocumentedOrder) {
  const std::string text = FormatStatsJson(CloneStatsExample());
  std::size_t last = 0;
  for (const char* key :
       {"\"uvmem_version\"", "\"mode\"", "\"paged\"", "\"heap\"", "\"malloc_calls\"", "\"runtime\"",
        "\"faults\"", "\"nodes\"", "\"swap\"", "\"enabled\"", "\"device\"", "\"budget_pages\"",
        "\"swapin_latency_p99_ns\"", "\"clone\"", "\"clones\"", "\"shared_frames\"",
        "\"cow_copies_source_side\"", "\"bytes_saved\""}) {
    const std::size_t at = text.find(key);
    ASSERT_NE(at, std::string::npos) << key;
    EXPECT_GT(at, last) << key;
    last = at;
  }
}

TEST(StatsReportJsonTest, NumbersBeyondDoublePrecisionStayExact) {
  MallocStats s = TwoNodeStats();
  s.malloc_calls = UINT64_MAX;
  s.runtime.faults = (std::uint64_t{1} << 53) + 1;
  const nlohmann::json j = nlohmann::json::parse(FormatStatsJson(s));
  EXPECT_EQ(j.at("heap").at("malloc_calls").get<std::uint64_t>(), UINT64_MAX);
  EXPECT_EQ(j.at("runtime").at("faults").get<std::uint64_t>(), (std::uint64_t{1} << 53) + 1);
}

TEST(StatsReportJsonTest, UnpagedHeapHasAnEmptyRuntime) {
  MallocStats s;
  s.mode = "detached after fork";
  s.malloc_calls = 5;
  const nlohmann::json j = nlohmann::json::parse(FormatStatsJson(s));
  EXPECT_EQ(j.at("paged"), false);
  EXPECT_EQ(j.at("mode"), "detached after fork");
  EXPECT_EQ(j.at("heap").at("malloc_calls"), 5u);
  EXPECT_EQ(j.at("runtime").at("faults"), 0u);
  EXPECT_TRUE(j.at("runtime").at("nodes").is_array());
  EXPECT_TRUE(j.at("runtime").at("nodes").empty());
}

TEST(StatsReportJsonTest, InvalidUtf8AndQuotesInTheModeDoNotBreakTheDocument) {
  MallocStats s;
  s.mode = "userfaultfd: \"Operation not permitted\"\n\xff\xfe";
  const std::string text = FormatStatsJson(s);  // must not throw
  const nlohmann::json j = nlohmann::json::parse(text);
  EXPECT_THAT(j.at("mode").get<std::string>(), HasSubstr("\"Operation not permitted\"\n"));
}

TEST(StatsReportTextTest, ShowsEveryFigureWithItsUnit) {
  const std::string text = FormatStatsText(TwoNodeStats());
  SCOPED_TRACE("\n" + text);
  EXPECT_THAT(text, HasSubstr("uvmem " UVMEM_VERSION_STRING));
  EXPECT_THAT(text, HasSubstr("paged: userfaultfd full, MOVE path"));
  // Heap.
  EXPECT_THAT(text, HasSubstr("malloc calls"));
  EXPECT_THAT(text, HasSubstr("1,234,567"));
  EXPECT_THAT(text, HasSubstr("free calls"));
  EXPECT_THAT(text, HasSubstr("1,200,001"));
  EXPECT_THAT(text, HasSubstr("thread heaps"));
  EXPECT_THAT(text, HasSubstr("12.0 MiB"));    // spans in use
  EXPECT_THAT(text, HasSubstr("64.0 GiB"));    // address space
  EXPECT_THAT(text, HasSubstr("3,072 pages"));  // resident
  EXPECT_THAT(text, HasSubstr("4,096 pages"));  // peak
  EXPECT_THAT(text, HasSubstr("16.0 MiB"));    // peak's size
  EXPECT_THAT(text, HasSubstr("1,024 pages"));  // purged
  // Runtime.
  EXPECT_THAT(text, HasSubstr("faults"));
  EXPECT_THAT(text, HasSubstr("12,345"));
  EXPECT_THAT(text, HasSubstr("(8.0 pages per fault)"));
  EXPECT_THAT(text, HasSubstr("98,765 pages"));
  EXPECT_THAT(text, HasSubstr("fault-around"));
  EXPECT_THAT(text, HasSubstr("86,420 pages   (87.5 %)"));
  EXPECT_THAT(text, HasSubstr("UFFDIO_MOVE"));
  EXPECT_THAT(text, HasSubstr("98,000 pages   (99.2 %)"));
  EXPECT_THAT(text, HasSubstr("UFFDIO_COPY"));
  EXPECT_THAT(text, HasSubstr("765 pages    (0.8 %)"));
  EXPECT_THAT(text, HasSubstr("races lost"));
  EXPECT_THAT(text, HasSubstr("OOM kills"));
  EXPECT_THAT(text, HasSubstr("3,100 pages"));
  EXPECT_THAT(text, HasSubstr("1.5 MiB"));  // metadata
  EXPECT_THAT(text, HasSubstr("12.0 µs"));
  EXPECT_THAT(text, HasSubstr("85.5 µs"));
  EXPECT_THAT(text, HasSubstr("p50"));
  EXPECT_THAT(text, HasSubstr("p99"));
  // Frames per node, with MiB.
  EXPECT_THAT(text, HasSubstr("node 0"));
  EXPECT_THAT(text, HasSubstr("node 1"));
  EXPECT_THAT(text, HasSubstr("262,144  1024.0 MiB"));
  EXPECT_THAT(text, HasSubstr("12,345    48.2 MiB"));   // node 0 used
  EXPECT_THAT(text, HasSubstr("20,000    78.1 MiB"));   // node 0 peak
  EXPECT_THAT(text, HasSubstr("2,560    10.0 MiB"));    // node 1 peak
  EXPECT_THAT(text, HasSubstr("524,288  2048.0 MiB"));  // all nodes
  EXPECT_THAT(text, Not(HasSubstr("slabinfo")));
  EXPECT_EQ(text.back(), '\n');
}

TEST(StatsReportTextTest, SwapSectionShowsEveryFigure) {
  const std::string text = FormatStatsText(SwapStatsExample());
  SCOPED_TRACE("\n" + text);
  EXPECT_THAT(text, HasSubstr("\nswap (resident budget)\n"));
  EXPECT_THAT(text, HasSubstr("device                  /tmp (O_TMPFILE)"));
  EXPECT_THAT(text, HasSubstr("budget"));
  EXPECT_THAT(text, HasSubstr("131,072 pages  512.0 MiB"));
  EXPECT_THAT(text, HasSubstr("low watermark (free)"));
  EXPECT_THAT(text, HasSubstr("2,048 pages    8.0 MiB"));
  EXPECT_THAT(text, HasSubstr("high watermark (free)"));
  EXPECT_THAT(text, HasSubstr("4,096 pages   16.0 MiB"));
  EXPECT_THAT(text, HasSubstr("slots used"));
  EXPECT_THAT(text, HasSubstr("65,536 slots   (12.5 %)"));
  EXPECT_THAT(text, HasSubstr("slots total"));
  EXPECT_THAT(text, HasSubstr("524,288 slots    2.0 GiB"));
  EXPECT_THAT(text, HasSubstr("swapped out"));
  EXPECT_THAT(text, HasSubstr("200,000 pages  781.2 MiB"));
  EXPECT_THAT(text, HasSubstr("dropped clean"));
  EXPECT_THAT(text, HasSubstr("20,800 pages   (10.4 %)"));
  EXPECT_THAT(text, HasSubstr("swapped in"));
  EXPECT_THAT(text, HasSubstr("150,000 pages  585.9 MiB"));
  EXPECT_THAT(text, HasSubstr("readahead"));
  EXPECT_THAT(text, HasSubstr("112,500 pages   (75.0 %)"));
  EXPECT_THAT(text, HasSubstr("readahead hits"));
  EXPECT_THAT(text, HasSubstr("90,000 pages   (80.0 %)"));
  EXPECT_THAT(text, HasSubstr("written                          700.0 MiB"));
  EXPECT_THAT(text, HasSubstr("read                             586.0 MiB"));
  EXPECT_THAT(text, HasSubstr("refaults                        37,500"));
  EXPECT_THAT(text, HasSubstr("errors                  7 write, 5 read, 3 checksum"));
  EXPECT_THAT(text, HasSubstr("reclaim passes                   4,321"));
  EXPECT_THAT(text, HasSubstr("direct reclaims                    876"));
  EXPECT_THAT(text, HasSubstr("budget exhausted                     2       (SIGBUS)"));
  EXPECT_THAT(text, HasSubstr("swap-in latency p50               45.0 µs"));
  EXPECT_THAT(text, HasSubstr("swap-in latency p99              310.5 µs"));
  // Between the runtime and the node table.
  EXPECT_LT(text.find("fault latency p99"), text.find("swap (resident budget)"));
  EXPECT_LT(text.find("swap-in latency p99"), text.find("frames by NUMA node"));
}

TEST(StatsReportTextTest, CloneSectionShowsEveryFigure) {
  const std::string text = FormatStatsText(CloneStatsExample());
  SCOPED_TRACE("\n" + text);
  EXPECT_THAT(text, HasSubstr("\nclones (copy-on-write)\n"));
  EXPECT_THAT(text, HasSubstr("  clones                               3\n"));
  EXPECT_THAT(text, HasSubstr("shared frames                    1,024 frames   4.0 MiB"));
  EXPECT_THAT(text, HasSubstr("shared pages                     3,072 pages   12.0 MiB"));
  EXPECT_THAT(text, HasSubstr("copied (source side)               512 pages    2.0 MiB"));
  EXPECT_THAT(text, HasSubstr("copied (clone side)                768 pages    3.0 MiB"));
  EXPECT_THAT(text, HasSubstr("moved (no copy)                    256 pages    1.0 MiB"));
  EXPECT_THAT(text, HasSubstr("shared swap slots                  128 slots  512.0 KiB"));
  EXPECT_THAT(text, HasSubstr("memory saved                       8.0 MiB"));
  // Between the runtime and the node table.
  EXPECT_LT(text.find("fault latency p99"), text.find("clones (copy-on-write)"));
  EXPECT_LT(text.find("memory saved"), text.find("frames by NUMA node"));
}

TEST(StatsReportTextTest, CloneSectionComesAfterTheSwapSection) {
  MallocStats s = SwapStatsExample();
  s.runtime.clone = CloneStatsExample().runtime.clone;
  const std::string text = FormatStatsText(s);
  SCOPED_TRACE("\n" + text);
  EXPECT_LT(text.find("swap-in latency p99"), text.find("clones (copy-on-write)"));
  EXPECT_LT(text.find("memory saved"), text.find("frames by NUMA node"));
  int lines = 0;
  for (char c : text) lines += c == '\n';
  EXPECT_LE(lines, 80);
}

TEST(StatsReportTextTest, NoCloneSectionWithoutClones) {
  const std::string text = FormatStatsText(TwoNodeStats());
  EXPECT_THAT(text, Not(HasSubstr("clone")));
  EXPECT_THAT(text, Not(HasSubstr("shared")));
  // Current sharing without a clone call cannot happen; clones decides alone.
  MallocStats s = TwoNodeStats();
  s.runtime.clone.cow_copies_clone_side = 5;
  EXPECT_THAT(FormatStatsText(s), Not(HasSubstr("clones (copy-on-write)")));
}

TEST(StatsReportTextTest, ColumnsAreAlignedWithClones) {
  const std::string text = FormatStatsText(CloneStatsExample());
  const std::size_t column = text.find(" pages", text.find("resident now"));
  const std::size_t line_start = text.rfind('\n', column) + 1;
  const std::size_t want = column - line_start;
  int rows = 0;
  for (std::size_t begin = text.find("clones (copy-on-write)"); begin < text.size();) {
    std::size_t end = text.find('\n', begin);
    const std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    if (line.starts_with("frames")) break;
    for (const char* unit : {" pages", " frames", " slots", " MiB"}) {
      const std::size_t at = line.rfind(unit);  // "shared pages": the label's is first
      if (at != std::string::npos && at > 0 && std::isdigit(line[at - 1])) {
        EXPECT_EQ(at, want) << line;
        ++rows;
        break;
      }
    }
  }
  EXPECT_EQ(rows, 7);  // 4 of pages, 1 of frames, 1 of slots, 1 of MiB
}

TEST(StatsReportTextTest, NoSwapSectionWithoutABudget) {
  const std::string text = FormatStatsText(TwoNodeStats());
  EXPECT_THAT(text, Not(HasSubstr("swap")));
  EXPECT_THAT(text, Not(HasSubstr("slots")));
}

TEST(StatsReportTextTest, ColumnsAreAlignedWithSwap) {
  const std::string text = FormatStatsText(SwapStatsExample());
  // Every " pages", " slots", " MiB" or " µs" value of the label/value rows ends its
  // number in the column of the heap's rows.
  const std::size_t column = text.find(" pages", text.find("resident now"));
  const std::size_t line_start = text.rfind('\n', column) + 1;
  const std::size_t want = column - line_start;
  int rows = 0;
  for (std::size_t begin = text.find("swap (resident budget)"); begin < text.size();) {
    std::size_t end = text.find('\n', begin);
    const std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    if (line.starts_with("frames")) break;
    for (const char* unit : {" pages", " slots", " MiB", " µs"}) {
      const std::size_t at = line.rfind(unit);  // "  slots used": the label's is first
      if (at != std::string::npos && at > 0 && std::isdigit(line[at - 1])) {
        EXPECT_EQ(at, want) << line;
        ++rows;
        break;
      }
    }
  }
  EXPECT_EQ(rows, 14);  // 8 of pages, 2 of slots, 2 of MiB, 2 of µs
}

TEST(StatsReportTextTest, ColumnsAreAligned) {
  const std::string text = FormatStatsText(TwoNodeStats());
  // Every "N pages" line of a section ends its number in the same column.
  std::size_t column = std::string::npos;
  std::size_t begin = 0;
  int rows = 0;
  while (begin < text.size()) {
    std::size_t end = text.find('\n', begin);
    const std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    std::size_t at = line.find(" pages");
    while (at != std::string::npos && (at == 0 || !std::isdigit(line[at - 1]))) {
      at = line.find(" pages", at + 1);  // "small pages now" is a label, not a count
    }
    if (at == std::string::npos || line.find("per fault") != std::string::npos) continue;
    if (column == std::string::npos) column = at;
    EXPECT_EQ(at, column) << line;
    ++rows;
  }
  EXPECT_GE(rows, 8);
}

TEST(StatsReportTextTest, LengthIsASummary) {
  const std::string text = FormatStatsText(TwoNodeStats());
  int lines = 0;
  for (char c : text) lines += c == '\n';
  EXPECT_GE(lines, 15);
  EXPECT_LE(lines, 45);
  for (std::size_t begin = 0; begin < text.size();) {
    std::size_t end = text.find('\n', begin);
    // Bytes, not columns: "µs" is two bytes.
    EXPECT_LE(end - begin, 100u) << text.substr(begin, end - begin);
    begin = end + 1;
  }
}

TEST(StatsReportTextTest, WithSwapItIsStillASummary) {
  const std::string text = FormatStatsText(SwapStatsExample());
  int lines = 0;
  for (char c : text) lines += c == '\n';
  EXPECT_LE(lines, 70);
  for (std::size_t begin = 0; begin < text.size();) {
    std::size_t end = text.find('\n', begin);
    EXPECT_LE(end - begin, 100u) << text.substr(begin, end - begin);
    begin = end + 1;
  }
}

TEST(StatsReportTextTest, UnpagedHeapSaysWhyAndSkipsTheRuntime) {
  MallocStats s;
  s.mode = "detached after fork";
  s.malloc_calls = 42;
  const std::string text = FormatStatsText(s);
  SCOPED_TRACE("\n" + text);
  EXPECT_THAT(text, HasSubstr("not paged (detached after fork)"));
  EXPECT_THAT(text, HasSubstr("42"));
  EXPECT_THAT(text, Not(HasSubstr("fault latency")));
  EXPECT_THAT(text, Not(HasSubstr("node 0")));
}

TEST(StatsReportTextTest, SingleNodeHasNoTotalRowAndZeroFaultsNoRatios) {
  MallocStats s = TwoNodeStats();
  s.runtime.nodes.pop_back();
  s.runtime.faults = 0;
  s.runtime.pages_filled = 0;
  const std::string text = FormatStatsText(s);
  SCOPED_TRACE("\n" + text);
  EXPECT_THAT(text, Not(HasSubstr("  all ")));
  EXPECT_THAT(text, Not(HasSubstr("per fault")));
  EXPECT_THAT(text, Not(HasSubstr("%")));
}

}  // namespace
}  // namespace uvmem::internal
