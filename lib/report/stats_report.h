// stats_report.h — the statistics report of the preloaded allocator (UVMEM_STATS): a text
// summary for people and a JSON document for programs, both from one MallocStats.
//
// The preload writes one of them at exit; `uvmem run --stats[=FILE]` asks for it.
// docs/preload.md shows an example of each.
//
// Both functions are pure: they allocate (strings; the JSON builder) and must not be called
// where allocation is forbidden, e.g. inside malloc. They never throw: strings that are not
// valid UTF-8 (a mode message) are repaired with U+FFFD in the JSON.
// Thread-safety: thread-compatible (no shared state).
#ifndef UVMEM_REPORT_STATS_REPORT_H_
#define UVMEM_REPORT_STATS_REPORT_H_

#include <string>

#include "uvmem/malloc.h"

namespace uvmem::internal {

// A readable summary, about 20-30 lines with aligned columns and units: the mode, the
// heap's counters (calls, thread heaps, spans, resident/peak/purged pages with their
// sizes), the runtime's faults and fills (fault-around, MOVE vs COPY, races, OOM kills),
// the fault latency p50/p99 in µs and a table of frames per NUMA node (total, used, peak,
// free, with MiB). When runtime.swap.enabled, a "swap" section (about 22 more lines)
// comes before the node table: device, budget and watermarks in pages, slots used/total,
// pages swapped out (dropped clean) and in (readahead, readahead hits), MiB written and
// read, refaults, write/read/checksum errors, reclaim passes, direct reclaims, budget
// exhaustions and the swap-in latency p50/p99 in µs. When runtime.clone.clones > 0, a
// "clones (copy-on-write)" section (10 more lines) follows it, also before the node table:
// clones, shared frames and shared pages (with their sizes), copies made on the source
// side and on the clone side, frames moved without a copy, shared swap slots and the
// memory saved in MiB. When !stats.paged the runtime part is replaced by one line saying
// why. Ends with a newline.
std::string FormatStatsText(const MallocStats& stats);

// One JSON object (2-space indented, ending with a newline), keys in this order:
//   {"uvmem_version", "mode", "paged",
//    "heap": {"malloc_calls", "free_calls", "thread_heaps", "small_pages_now",
//             "large_spans_now", "spans_bytes_now", "purged_pages", "heap_reserved_bytes",
//             "heap_resident_pages", "heap_peak_resident_pages"},
//    "runtime": {"faults", "pages_filled", "fault_around_pages", "pages_moved",
//                "pages_copied", "races_lost", "oom_kills", "ranges", "resident_pages",
//                "metadata_bytes", "fault_latency_p50_ns", "fault_latency_p99_ns",
//                "uffd_mode", "move_used",
//                "nodes": [{"node", "total_frames", "free_frames", "used_frames",
//                           "peak_used_frames"}, ...],
//                "swap": {"enabled", "device", "budget_pages", "low_watermark_pages",
//                         "high_watermark_pages", "slots_total", "slots_used",
//                         "pages_swapped_out", "pages_swapped_in", "bytes_written",
//                         "bytes_read", "clean_pages_dropped", "refaults",
//                         "readahead_pages", "readahead_hits", "write_errors",
//                         "read_errors", "checksum_errors", "busy_pages", "swap_full",
//                         "reclaim_passes", "direct_reclaims", "budget_exhausted",
//                         "swapin_latency_p50_ns", "swapin_latency_p99_ns"},
//                "clone": {"clones", "shared_frames", "shared_pages",
//                          "cow_copies_source_side", "cow_copies_clone_side",
//                          "cow_moves", "shared_swap_slots", "bytes_saved"}}}
// "swap" and "clone" are always there (all zero, "enabled": false, without a budget;
// all zero without clones).
// Names and units are MallocStats' and RuntimeStats' (uvmem/malloc.h, uvmem/runtime.h);
// every number is an unsigned integer. The runtime's slabinfo is left out.
std::string FormatStatsJson(const MallocStats& stats);

}  // namespace uvmem::internal

#endif  // UVMEM_REPORT_STATS_REPORT_H_
