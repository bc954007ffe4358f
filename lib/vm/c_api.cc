// The C API (uvmem/uvmem.h) over uvmem::Runtime.
#include <cerrno>
#include <exception>
#include <iterator>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "uvmem/runtime.h"
#include "uvmem/uvmem.h"

struct uvmem_runtime {
  std::unique_ptr<uvmem::Runtime> runtime;
};
struct uvmem_range {
  uvmem::Range range;
};

namespace {

thread_local std::string last_error;

int Fail(const absl::Status& status) {
  last_error = std::string(status.message());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return EINVAL;
    case absl::StatusCode::kPermissionDenied:
      return EPERM;
    case absl::StatusCode::kUnimplemented:
      return ENOSYS;
    case absl::StatusCode::kResourceExhausted:
      return ENOMEM;
    default:
      return EIO;
  }
}

// Range::Clone's errors, as uvmem.h documents them: FailedPrecondition is a released
// source (EINVAL) unless it says that this kernel cannot write-protect userfaultfd
// ranges (EOPNOTSUPP); the rest as Fail.
int FailClone(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kFailedPrecondition) return Fail(status);
  last_error = std::string(status.message());
  std::string lower = last_error;
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  const bool no_wp = lower.find("write-protect") != std::string::npos ||
                     lower.find("write protect") != std::string::npos ||
                     lower.find("writeprotect") != std::string::npos;
  return no_wp ? EOPNOTSUPP : EINVAL;
}

int Ok() {
  last_error.clear();
  return 0;
}

// Runs `body` (returning an errno-style int), turning any C++ exception into an error
// code: nothing may unwind through a C caller.
template <typename Body>
int Guard(Body&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    last_error = "out of memory";
    return ENOMEM;
  } catch (const std::exception& e) {
    last_error = e.what();
    return EIO;
  }
}

}  // namespace

extern "C" {

void uvmem_runtime_options_init(uvmem_runtime_options* options) {
  const uvmem::RuntimeOptions defaults;
  options->pool_bytes_total = defaults.pool_bytes_total;
  options->pool_bytes_per_node = defaults.pool_bytes_per_node;
  options->fault_threads = defaults.fault_threads;
  options->fault_around_pages = defaults.fault_around_pages;
  options->readahead_pages = defaults.readahead_pages;
  options->use_move = defaults.use_move ? 1 : 0;
  options->allow_user_mode_only = defaults.allow_user_mode_only ? 1 : 0;
  options->prefault_pool = defaults.prefault_pool ? 1 : 0;
  options->budget_bytes = defaults.budget_bytes;
  options->swap_path = nullptr;  // defaults.swap_path is "": $TMPDIR, else /tmp
  options->swap_max_bytes = defaults.swap_max_bytes;
  options->clones_with_budget = defaults.clones_with_budget ? 1 : 0;
}

int uvmem_runtime_create(const uvmem_runtime_options* options, uvmem_runtime** out) {
  return Guard([&] {
    uvmem::RuntimeOptions o;
    if (options != nullptr) {
      o.pool_bytes_total = options->pool_bytes_total;
      o.pool_bytes_per_node = options->pool_bytes_per_node;
      o.fault_threads = options->fault_threads;
      o.fault_around_pages = options->fault_around_pages;
      o.readahead_pages = options->readahead_pages;
      o.use_move = options->use_move != 0;
      o.allow_user_mode_only = options->allow_user_mode_only != 0;
      o.prefault_pool = options->prefault_pool != 0;
      o.budget_bytes = options->budget_bytes;
      if (options->swap_path != nullptr) o.swap_path = options->swap_path;
      o.swap_max_bytes = options->swap_max_bytes;
      o.clones_with_budget = options->clones_with_budget != 0;
    }
    auto runtime = uvmem::Runtime::Create(o);
    if (!runtime.ok()) return Fail(runtime.status());
    *out = new uvmem_runtime{std::move(*runtime)};
    return Ok();
  });
}

void uvmem_runtime_destroy(uvmem_runtime* runtime) { delete runtime; }

int uvmem_reserve(uvmem_runtime* runtime, size_t length_bytes, const uvmem_range_options* options,
                  uvmem_range** out) {
  return Guard([&] {
    uvmem::RangeOptions o;
    if (options != nullptr) {
      if (options->nodes == nullptr && options->num_nodes != 0) {
        return Fail(absl::InvalidArgumentError("num_nodes is not 0 but nodes is NULL"));
      }
      if (options->name != nullptr) o.name = options->name;
      std::vector<uvmem::NodeId> nodes;
      for (size_t i = 0; i < options->num_nodes; ++i) nodes.push_back({options->nodes[i]});
      // enum uvmem_numa_kind, in its order.
      static constexpr uvmem::NumaPolicy::Kind kKinds[] = {
          uvmem::NumaPolicy::Kind::kLocal, uvmem::NumaPolicy::Kind::kBind,
          uvmem::NumaPolicy::Kind::kPreferred, uvmem::NumaPolicy::Kind::kInterleave};
      if (options->numa_kind < 0 || options->numa_kind >= static_cast<int>(std::size(kKinds))) {
        return Fail(absl::InvalidArgumentError("numa_kind is not a uvmem_numa_kind"));
      }
      o.numa = {kKinds[options->numa_kind], std::move(nodes)};
    }
    auto range = runtime->runtime->Reserve(length_bytes, o);
    if (!range.ok()) return Fail(range.status());
    *out = new uvmem_range{std::move(*range)};
    return Ok();
  });
}

void* uvmem_range_data(const uvmem_range* range) { return range->range.data(); }
size_t uvmem_range_size(const uvmem_range* range) { return range->range.size(); }

int uvmem_range_release(uvmem_range* range) {
  return Guard([&] {
    absl::Status status = range->range.Release();
    if (!range->range.valid()) delete range;  // else still live: the handle stays usable
    return status.ok() ? Ok() : Fail(status);
  });
}

int uvmem_range_clone(const uvmem_range* source, const char* name, uvmem_range** out) {
  return Guard([&] {
    const std::string_view clone_name = name != nullptr ? name : std::string_view();
    auto clone = source->range.Clone(clone_name);
    if (!clone.ok()) return FailClone(clone.status());
    *out = new uvmem_range{std::move(*clone)};
    return Ok();
  });
}

int uvmem_range_stats_get(const uvmem_range* range, uvmem_range_stats* out) {
  return Guard([&] {
    const uvmem::RangeStats s = range->range.Stats();
    *out = {};
    out->faults = s.faults;
    out->pages_filled = s.pages_filled;
    out->fault_around_pages = s.fault_around_pages;
    out->pages_moved = s.pages_moved;
    out->pages_copied = s.pages_copied;
    out->races_lost = s.races_lost;
    out->resident_pages = s.resident_pages;
    out->peak_resident_pages = s.peak_resident_pages;
    out->page_table_bytes = s.page_table_bytes;
    out->oom_kills = s.oom_kills;
    out->discarded_refills = s.discarded_refills;
    out->swapped_pages = s.swapped_pages;
    out->pages_swapped_out = s.pages_swapped_out;
    out->pages_swapped_in = s.pages_swapped_in;
    out->shared_pages = s.shared_pages;
    out->cow_copies = s.cow_copies;
    out->cow_moves = s.cow_moves;
    return Ok();
  });
}

int uvmem_runtime_stats_get(const uvmem_runtime* runtime, uvmem_runtime_stats* out) {
  return Guard([&] {
    const uvmem::RuntimeStats s = runtime->runtime->Stats();
    *out = {};
    out->faults = s.faults;
    out->pages_filled = s.pages_filled;
    out->fault_around_pages = s.fault_around_pages;
    out->pages_moved = s.pages_moved;
    out->pages_copied = s.pages_copied;
    out->races_lost = s.races_lost;
    out->oom_kills = s.oom_kills;
    out->ranges = s.ranges;
    out->resident_pages = s.resident_pages;
    out->metadata_bytes = s.metadata_bytes;
    out->fault_latency_p50_ns = s.fault_latency_p50_ns;
    out->fault_latency_p99_ns = s.fault_latency_p99_ns;
    for (const auto& node : s.nodes) {
      out->pool_total_frames += node.total_frames;
      out->pool_free_frames += node.free_frames;
      out->pool_peak_used_frames += node.peak_used_frames;
    }
    out->uffd_full = s.uffd_mode == "full" ? 1 : 0;
    out->move_used = s.move_used ? 1 : 0;
    out->num_nodes = static_cast<int>(s.nodes.size());
    const uvmem::SwapStats& w = s.swap;
    out->swap_enabled = w.enabled ? 1 : 0;
    out->swap_budget_pages = w.budget_pages;
    out->swap_low_watermark_pages = w.low_watermark_pages;
    out->swap_high_watermark_pages = w.high_watermark_pages;
    out->swap_slots_total = w.slots_total;
    out->swap_slots_used = w.slots_used;
    out->swap_pages_swapped_out = w.pages_swapped_out;
    out->swap_pages_swapped_in = w.pages_swapped_in;
    out->swap_bytes_written = w.bytes_written;
    out->swap_bytes_read = w.bytes_read;
    out->swap_clean_pages_dropped = w.clean_pages_dropped;
    out->swap_refaults = w.refaults;
    out->swap_readahead_pages = w.readahead_pages;
    out->swap_readahead_hits = w.readahead_hits;
    out->swap_write_errors = w.write_errors;
    out->swap_read_errors = w.read_errors;
    out->swap_checksum_errors = w.checksum_errors;
    out->swap_reclaim_passes = w.reclaim_passes;
    out->swap_direct_reclaims = w.direct_reclaims;
    out->swap_budget_exhausted = w.budget_exhausted;
    out->swap_swapin_latency_p50_ns = w.swapin_latency_p50_ns;
    out->swap_swapin_latency_p99_ns = w.swapin_latency_p99_ns;
    out->swap_busy_pages = w.busy_pages;
    out->swap_swap_full = w.swap_full;
    const uvmem::CloneStats& c = s.clone;
    out->clone_clones = c.clones;
    out->clone_shared_frames = c.shared_frames;
    out->clone_shared_pages = c.shared_pages;
    out->clone_cow_copies_source_side = c.cow_copies_source_side;
    out->clone_cow_copies_clone_side = c.cow_copies_clone_side;
    out->clone_cow_moves = c.cow_moves;
    out->clone_shared_swap_slots = c.shared_swap_slots;
    out->clone_bytes_saved = c.bytes_saved;
    return Ok();
  });
}

int uvmem_runtime_node_stats_get(const uvmem_runtime* runtime, int index, uvmem_node_stats* out) {
  return Guard([&] {
    const uvmem::RuntimeStats s = runtime->runtime->Stats();
    if (index < 0 || static_cast<std::size_t>(index) >= s.nodes.size()) {
      return Fail(absl::InvalidArgumentError("node index out of range"));
    }
    const auto& n = s.nodes[static_cast<std::size_t>(index)];
    *out = {n.node.value, n.total_frames, n.free_frames, n.used_frames, n.peak_used_frames};
    return Ok();
  });
}

const char* uvmem_last_error(void) { return last_error.c_str(); }

}  // extern "C"
