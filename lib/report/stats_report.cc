#include "report/stats_report.h"

#include <fmt/format.h>

#include <cstdint>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string_view>

#include "uvmem/types.h"
#include "uvmem/version.h"

namespace uvmem::internal {
namespace {

constexpr int kLabelWidth = 24;  // "  label" column
constexpr int kValueWidth = 14;  // right-aligned numbers
constexpr int kCellWidth = 22;   // one "frames  MiB" cell of the node table

// 1234567 -> "1,234,567".
std::string Grouped(std::uint64_t value) {
  std::string digits = fmt::format("{}", value);
  std::string out;
  out.reserve(digits.size() + digits.size() / 3);
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

double Mib(std::uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }
std::uint64_t PageBytes(std::uint64_t pages) { return pages * kPageSize; }

// A size in the largest binary unit that keeps it at least 1: {"512", "B"}, {"12.0", "MiB"}.
struct SizeParts {
  std::string number;
  std::string_view unit;
};
SizeParts SplitSize(std::uint64_t bytes) {
  static constexpr std::string_view kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return {fmt::format("{}", bytes), "B"};
  double value = static_cast<double>(bytes) / 1024;
  std::size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return {fmt::format("{:.1f}", value), kUnits[unit]};
}

// "512 B", "12.0 MiB".
std::string Size(std::uint64_t bytes) {
  SizeParts parts = SplitSize(bytes);
  return fmt::format("{} {}", parts.number, parts.unit);
}

// "(87.5 %)" of part in whole, or "" when whole is 0.
std::string Share(std::uint64_t part, std::uint64_t whole) {
  if (whole == 0) return "";
  return fmt::format("({:.1f} %)", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

class TextReport {
 public:
  void Section(std::string_view title) {
    if (!out_.empty()) out_ += '\n';
    out_ += title;
    out_ += '\n';
  }
  // "  label          value unit  extra"
  void Row(std::string_view label, std::string_view value, std::string_view unit = "",
           std::string_view extra = "") {
    std::string line = fmt::format("  {:<{}}{:>{}}", label, kLabelWidth, value, kValueWidth);
    if (!unit.empty() || !extra.empty()) line += fmt::format(" {:<6}{}", unit, extra);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out_ += line;
    out_ += '\n';
  }
  void Count(std::string_view label, std::uint64_t value, std::string_view extra = "") {
    Row(label, Grouped(value), "", extra);
  }
  // A page count with its size, or with `extra` (a share) in the size's place:
  // "  resident now     3,072 pages   12.0 MiB".
  void Pages(std::string_view label, std::uint64_t pages, std::string_view extra = "") {
    Row(label, Grouped(pages), "pages",
        fmt::format("{:>10}", extra.empty() ? Size(PageBytes(pages)) : std::string(extra)));
  }
  // A size with its unit in the unit column: "  address space     64.0 GiB".
  void Bytes(std::string_view label, std::uint64_t bytes) {
    SizeParts parts = SplitSize(bytes);
    Row(label, parts.number, parts.unit);
  }
  void Text(std::string_view label, std::string_view text) {
    out_ += fmt::format("  {:<{}}{}\n", label, kLabelWidth, text);
  }
  void Raw(std::string_view line) {
    out_ += line;
    out_ += '\n';
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// "   262,144  1024.0 MiB": frames and their size, kCellWidth wide.
std::string FrameCell(std::uint64_t frames) {
  return fmt::format("{:>10} {:>7.1f} MiB", Grouped(frames), Mib(PageBytes(frames)));
}

void NodeTable(TextReport& report, const RuntimeStats& runtime) {
  report.Section("frames by NUMA node (4 KiB frames, MiB)");
  report.Raw(fmt::format("  {:<8}{:>{}}{:>{}}{:>{}}{:>{}}", "", "total", kCellWidth, "used now",
                         kCellWidth, "peak used", kCellWidth, "free", kCellWidth));
  RuntimeStats::Node all{.node = NodeId{-1}};
  for (const RuntimeStats::Node& n : runtime.nodes) {
    report.Raw(fmt::format("  node {:<3}{:>{}}{:>{}}{:>{}}{:>{}}", n.node.value,
                           FrameCell(n.total_frames), kCellWidth, FrameCell(n.used_frames),
                           kCellWidth, FrameCell(n.peak_used_frames), kCellWidth,
                           FrameCell(n.free_frames), kCellWidth));
    all.total_frames += n.total_frames;
    all.used_frames += n.used_frames;
    all.peak_used_frames += n.peak_used_frames;
    all.free_frames += n.free_frames;
  }
  if (runtime.nodes.size() > 1) {
    // Peaks of different nodes need not coincide: their sum bounds the true peak.
    report.Raw(fmt::format("  {:<8}{:>{}}{:>{}}{:>{}}{:>{}}", "all", FrameCell(all.total_frames),
                           kCellWidth, FrameCell(all.used_frames), kCellWidth,
                           FrameCell(all.peak_used_frames), kCellWidth, FrameCell(all.free_frames),
                           kCellWidth));
  }
}

// "12.0 µs" from nanoseconds, in the report's value column.
void Latency(TextReport& report, std::string_view label, std::uint64_t ns) {
  report.Row(label, fmt::format("{:.1f}", static_cast<double>(ns) / 1000.0), "µs");
}

void SwapSection(TextReport& report, const SwapStats& swap) {
  report.Section("swap (resident budget)");
  report.Text("device", swap.device.empty() ? "?" : swap.device);
  report.Pages("budget", swap.budget_pages);
  report.Pages("low watermark (free)", swap.low_watermark_pages);
  report.Pages("high watermark (free)", swap.high_watermark_pages);
  report.Row("slots used", Grouped(swap.slots_used), "slots",
             fmt::format("{:>10}", Share(swap.slots_used, swap.slots_total)));
  report.Row("slots total", Grouped(swap.slots_total), "slots",
             fmt::format("{:>10}", Size(PageBytes(swap.slots_total))));
  report.Pages("swapped out", swap.pages_swapped_out);
  report.Pages("  dropped clean", swap.clean_pages_dropped,
               Share(swap.clean_pages_dropped, swap.pages_swapped_out));
  report.Pages("swapped in", swap.pages_swapped_in);
  report.Pages("  readahead", swap.readahead_pages,
               Share(swap.readahead_pages, swap.pages_swapped_in));
  report.Pages("  readahead hits", swap.readahead_hits,
               Share(swap.readahead_hits, swap.readahead_pages));
  report.Row("written", fmt::format("{:.1f}", Mib(swap.bytes_written)), "MiB");
  report.Row("read", fmt::format("{:.1f}", Mib(swap.bytes_read)), "MiB");
  report.Count("refaults", swap.refaults);
  report.Text("errors", fmt::format("{} write, {} read, {} checksum", Grouped(swap.write_errors),
                                    Grouped(swap.read_errors), Grouped(swap.checksum_errors)));
  report.Count("kept (busy)", swap.busy_pages, "(shared after fork, pinned)");
  report.Count("kept (swap full)", swap.swap_full);
  report.Count("reclaim passes", swap.reclaim_passes);
  report.Count("direct reclaims", swap.direct_reclaims);
  report.Count("budget exhausted", swap.budget_exhausted, "(SIGBUS)");
  Latency(report, "swap-in latency p50", swap.swapin_latency_p50_ns);
  Latency(report, "swap-in latency p99", swap.swapin_latency_p99_ns);
}

// Copy-on-write clones (Range::Clone): frames and swap slots shared now, copies made by
// either side, frames handed over without a copy, and the memory sharing saves.
void CloneSection(TextReport& report, const CloneStats& clone) {
  report.Section("clones (copy-on-write)");
  report.Count("clones", clone.clones);
  report.Row("shared frames", Grouped(clone.shared_frames), "frames",
             fmt::format("{:>10}", Size(PageBytes(clone.shared_frames))));
  report.Pages("shared pages", clone.shared_pages);
  report.Pages("copied (source side)", clone.cow_copies_source_side);
  report.Pages("copied (clone side)", clone.cow_copies_clone_side);
  report.Pages("moved (no copy)", clone.cow_moves);
  report.Row("shared swap slots", Grouped(clone.shared_swap_slots), "slots",
             fmt::format("{:>10}", Size(PageBytes(clone.shared_swap_slots))));
  report.Row("memory saved", fmt::format("{:.1f}", Mib(clone.bytes_saved)), "MiB");
}

}  // namespace

std::string FormatStatsText(const MallocStats& s) {
  TextReport report;
  const RuntimeStats& r = s.runtime;
  report.Section(fmt::format("uvmem {} statistics", UVMEM_VERSION_STRING));
  if (s.paged) {
    // The MOVE path still COPYs a frame's first fill: the counts below say how many moved.
    report.Text("mode", fmt::format("{}: userfaultfd {}, {} path", s.mode,
                                    r.uffd_mode.empty() ? "?" : r.uffd_mode,
                                    r.move_used ? "MOVE" : "COPY"));
  } else {
    report.Text("mode", fmt::format("not paged ({}): the kernel pages the heap",
                                    s.mode.empty() ? "runtime not started" : s.mode));
  }

  report.Section("heap");
  report.Count("malloc calls", s.malloc_calls);
  report.Count("free calls", s.free_calls);
  report.Count("thread heaps", s.thread_heaps);
  report.Count("small pages now", s.small_pages_now);
  report.Count("large spans now", s.large_spans_now);
  report.Bytes("spans in use now", s.spans_bytes_now);
  report.Bytes("address space", s.heap_reserved_bytes);
  report.Pages("resident now", s.heap_resident_pages);
  report.Pages("resident peak", s.heap_peak_resident_pages);
  report.Pages("purged after free", s.purged_pages);

  if (!s.paged) return report.Take();

  report.Section("runtime");
  report.Count("faults", r.faults,
               r.faults == 0
                   ? ""
                   : fmt::format("({:.1f} pages per fault)", static_cast<double>(r.pages_filled) /
                                                                 static_cast<double>(r.faults)));
  report.Pages("pages filled", r.pages_filled);
  report.Pages("  ahead (fault-around)", r.fault_around_pages,
               Share(r.fault_around_pages, r.pages_filled));
  report.Pages("  moved (UFFDIO_MOVE)", r.pages_moved, Share(r.pages_moved, r.pages_filled));
  report.Pages("  copied (UFFDIO_COPY)", r.pages_copied, Share(r.pages_copied, r.pages_filled));
  report.Count("races lost", r.races_lost);
  report.Count("OOM kills (SIGBUS)", r.oom_kills);
  report.Pages("resident now", r.resident_pages);
  report.Bytes("metadata", r.metadata_bytes);
  Latency(report, "fault latency p50", r.fault_latency_p50_ns);
  Latency(report, "fault latency p99", r.fault_latency_p99_ns);
  if (r.swap.enabled) SwapSection(report, r.swap);
  if (r.clone.clones > 0) CloneSection(report, r.clone);
  NodeTable(report, r);
  return report.Take();
}

std::string FormatStatsJson(const MallocStats& s) {
  using Json = nlohmann::ordered_json;
  const RuntimeStats& r = s.runtime;
  Json nodes = Json::array();
  for (const RuntimeStats::Node& n : r.nodes) {
    nodes.push_back(Json{{"node", n.node.value},
                         {"total_frames", n.total_frames},
                         {"free_frames", n.free_frames},
                         {"used_frames", n.used_frames},
                         {"peak_used_frames", n.peak_used_frames}});
  }
  const SwapStats& w = r.swap;
  Json swap = {
      {"enabled", w.enabled},
      {"device", w.device},
      {"budget_pages", w.budget_pages},
      {"low_watermark_pages", w.low_watermark_pages},
      {"high_watermark_pages", w.high_watermark_pages},
      {"slots_total", w.slots_total},
      {"slots_used", w.slots_used},
      {"pages_swapped_out", w.pages_swapped_out},
      {"pages_swapped_in", w.pages_swapped_in},
      {"bytes_written", w.bytes_written},
      {"bytes_read", w.bytes_read},
      {"clean_pages_dropped", w.clean_pages_dropped},
      {"refaults", w.refaults},
      {"readahead_pages", w.readahead_pages},
      {"readahead_hits", w.readahead_hits},
      {"write_errors", w.write_errors},
      {"read_errors", w.read_errors},
      {"checksum_errors", w.checksum_errors},
      {"busy_pages", w.busy_pages},
      {"swap_full", w.swap_full},
      {"reclaim_passes", w.reclaim_passes},
      {"direct_reclaims", w.direct_reclaims},
      {"budget_exhausted", w.budget_exhausted},
      {"swapin_latency_p50_ns", w.swapin_latency_p50_ns},
      {"swapin_latency_p99_ns", w.swapin_latency_p99_ns},
  };
  const CloneStats& c = r.clone;
  Json clone = {
      {"clones", c.clones},
      {"shared_frames", c.shared_frames},
      {"shared_pages", c.shared_pages},
      {"cow_copies_source_side", c.cow_copies_source_side},
      {"cow_copies_clone_side", c.cow_copies_clone_side},
      {"cow_moves", c.cow_moves},
      {"shared_swap_slots", c.shared_swap_slots},
      {"bytes_saved", c.bytes_saved},
  };
  Json doc = {
      {"uvmem_version", UVMEM_VERSION_STRING},
      {"mode", s.mode},
      {"paged", s.paged},
      {"heap",
       {{"malloc_calls", s.malloc_calls},
        {"free_calls", s.free_calls},
        {"thread_heaps", s.thread_heaps},
        {"small_pages_now", s.small_pages_now},
        {"large_spans_now", s.large_spans_now},
        {"spans_bytes_now", s.spans_bytes_now},
        {"purged_pages", s.purged_pages},
        {"heap_reserved_bytes", s.heap_reserved_bytes},
        {"heap_resident_pages", s.heap_resident_pages},
        {"heap_peak_resident_pages", s.heap_peak_resident_pages}}},
      {"runtime",
       {{"faults", r.faults},
        {"pages_filled", r.pages_filled},
        {"fault_around_pages", r.fault_around_pages},
        {"pages_moved", r.pages_moved},
        {"pages_copied", r.pages_copied},
        {"races_lost", r.races_lost},
        {"oom_kills", r.oom_kills},
        {"ranges", r.ranges},
        {"resident_pages", r.resident_pages},
        {"metadata_bytes", r.metadata_bytes},
        {"fault_latency_p50_ns", r.fault_latency_p50_ns},
        {"fault_latency_p99_ns", r.fault_latency_p99_ns},
        {"uffd_mode", r.uffd_mode},
        {"move_used", r.move_used},
        {"nodes", std::move(nodes)},
        {"swap", std::move(swap)},
        {"clone", std::move(clone)}}},
  };
  std::string out = doc.dump(2, ' ', false, Json::error_handler_t::replace);
  out += '\n';
  return out;
}

}  // namespace uvmem::internal
