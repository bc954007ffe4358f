#include "vm/swap_device.h"

#include <xxhash.h>

#include <absl/status/status.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "platform/memory_map.h"
#include "platform/report.h"
#include "uvmem/types.h"

namespace uvmem::internal {
namespace {

static_assert(kSwapSlotBytes == kPageSize);

constexpr std::uint16_t kMaxRefCount = 0x7fff;
// swap_map value of a slot whose last reference went while frees were held (HoldFrees):
// owned by nobody, not free either.
constexpr std::uint16_t kHeldSlot = 0x8000;
constexpr std::uint32_t kNoCluster = ~std::uint32_t{0};
// A batch of pages written or verified at once: checksums of one batch sit on the stack.
constexpr std::size_t kBatchPages = SwapDevice::kClusterSlots;

// The checksum kept for a slot. 0 is reserved for "holds nothing valid" (never written,
// freed, or its last write failed), so a real XXH3 of 0 is stored as 1.
std::uint64_t PageChecksum(const void* page) {
  const XXH64_hash_t h = XXH3_64bits(page, kSwapSlotBytes);
  return h != 0 ? h : 1;
}

// Length of the run of consecutive slots starting at slots[i], at most `limit` long.
std::size_t RunLength(const SwapSlot* slots, std::size_t i, std::size_t count,
                      std::size_t limit) {
  std::size_t n = 1;
  while (i + n < count && n < limit && slots[i + n].value == slots[i].value + n) ++n;
  return n;
}

}  // namespace

struct SwapDevice::Impl {
  SwapFile file;
  std::uint64_t slots_total = 0;
  std::uint32_t clusters_total = 0;

  // One anonymous mapping of metadata_bytes holds the four arrays below.
  void* metadata = nullptr;
  std::size_t metadata_bytes = 0;
  // Per slot: XXH3 of the bytes last written (0: nothing valid). Written outside the lock
  // by Write (the caller keeps one slot's Write, Read and free apart) and reset under it.
  std::uint64_t* checksums = nullptr;

  mutable Mutex mu;
  // Per slot: the reference count, 0 when free (the kernel's swap_map).
  std::uint16_t* swap_map ABSL_GUARDED_BY(mu) = nullptr;
  // Per cluster: slots in use.
  std::uint16_t* cluster_used ABSL_GUARDED_BY(mu) = nullptr;
  // A stack of wholly free clusters (used 0), other than the current one; the top is
  // free_clusters[free_cluster_count - 1]. Filled so that cluster 0 comes out first.
  std::uint32_t* free_clusters ABSL_GUARDED_BY(mu) = nullptr;
  std::uint32_t free_cluster_count ABSL_GUARDED_BY(mu) = 0;
  // The cluster handed out sequentially (kNoCluster: none) and its next slot to try.
  std::uint32_t current_cluster ABSL_GUARDED_BY(mu) = kNoCluster;
  std::uint32_t current_next ABSL_GUARDED_BY(mu) = 0;
  // Where the scan of partly used clusters resumes.
  std::uint32_t scan_cluster ABSL_GUARDED_BY(mu) = 0;
  std::uint64_t slots_used ABSL_GUARDED_BY(mu) = 0;
  std::uint64_t slots_shared ABSL_GUARDED_BY(mu) = 0;  // reference count ≥ 2

  std::atomic<std::uint64_t> bytes_written{0};
  std::atomic<std::uint64_t> bytes_read{0};
  std::atomic<std::uint64_t> write_errors{0};
  std::atomic<std::uint64_t> read_errors{0};
  std::atomic<std::uint64_t> checksum_errors{0};

  // Deferred frees (HoldFrees): slots whose last reference went while a forked child may
  // still read them. Guarded by mu; `held` is mapped on first use (slots_total entries).
  int hold_depth = 0;
  std::uint64_t* held = nullptr;
  std::uint64_t held_count = 0;

  ~Impl() {
    if (metadata != nullptr) {
      absl::Status s = ReleaseMapping(metadata, metadata_bytes);
      if (!s.ok()) ReportWarning("swap device: releasing metadata: {}", s.ToString());
    }
    if (held != nullptr) (void)ReleaseMapping(held, slots_total * sizeof(std::uint64_t));
  }

  // The slot's last reference is gone: it is free. REQUIRES: mu held.
  void FreeSlot(std::uint64_t slot) {
    checksums[slot] = 0;
    --slots_used;
    const auto cluster = static_cast<std::uint32_t>(slot / kClusterSlots);
    if (--cluster_used[cluster] == 0 && cluster != current_cluster) {
      free_clusters[free_cluster_count++] = cluster;
    }
  }

  std::uint32_t ClusterSlots(std::uint32_t cluster) const {
    return static_cast<std::uint32_t>(
        std::min<std::uint64_t>(kClusterSlots, slots_total - std::uint64_t{cluster} * kClusterSlots));
  }

  void CheckSlot(SwapSlot slot, const char* what) const {
    if (slot.value >= slots_total) {
      ReportFatal("swap device: {} of slot {} beyond the device's {} slots", what, slot.value,
                  slots_total);
    }
  }

  void TakeSlot(std::uint64_t slot, SwapSlot* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    swap_map[slot] = 1;
    ++cluster_used[slot / kClusterSlots];
    ++slots_used;
    out->value = slot;
  }

  // Allocates from the current cluster, then from wholly free ones, sequentially.
  std::size_t AllocateSequential(std::size_t count, SwapSlot* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::size_t n = 0;
    while (n < count) {
      if (current_cluster == kNoCluster) {
        if (free_cluster_count == 0) break;
        current_cluster = free_clusters[--free_cluster_count];
        current_next = 0;
      }
      const std::uint64_t base = std::uint64_t{current_cluster} * kClusterSlots;
      const std::uint32_t size = ClusterSlots(current_cluster);
      // Slots from current_next on are free: the cluster was wholly free when it became
      // current and only this loop allocates from it while it is current.
      while (n < count && current_next < size) TakeSlot(base + current_next++, &out[n++]);
      if (current_next == size) {
        // Retired; if everything in it was freed meanwhile it is a free cluster again.
        if (cluster_used[current_cluster] == 0) free_clusters[free_cluster_count++] = current_cluster;
        current_cluster = kNoCluster;
      }
    }
    return n;
  }

  // Scans partly used clusters for free slots (scan_swap_map), from scan_cluster on.
  // Only called with no current cluster and no wholly free cluster.
  std::size_t AllocateScanning(std::size_t count, SwapSlot* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::size_t n = 0;
    for (std::uint32_t scanned = 0; scanned < clusters_total && n < count; ++scanned) {
      const std::uint32_t c = scan_cluster;
      const std::uint32_t size = ClusterSlots(c);
      const std::uint64_t base = std::uint64_t{c} * kClusterSlots;
      for (std::uint32_t i = 0; i < size && n < count && cluster_used[c] < size; ++i) {
        if (swap_map[base + i] == 0) TakeSlot(base + i, &out[n++]);
      }
      if (n < count) scan_cluster = (c + 1) % clusters_total;
    }
    return n;
  }
};

absl::StatusOr<std::unique_ptr<SwapDevice>> SwapDevice::Open(const SwapDeviceOptions& options) {
  absl::StatusOr<SwapFile> file =
      SwapFile::Open(options.path, options.max_bytes, options.default_bytes, options.mode);
  if (!file.ok()) return file.status();
  const std::uint64_t slots = file->capacity_bytes() / kSwapSlotBytes;
  if (slots < kClusterSlots) {
    return absl::InvalidArgumentError(fmt::format(
        "swap device {}: capacity {} bytes is under one cluster ({} bytes); give a larger size",
        file->description(), file->capacity_bytes(), kClusterSlots * kSwapSlotBytes));
  }
  const std::uint64_t clusters = (slots + kClusterSlots - 1) / kClusterSlots;
  if (clusters > kNoCluster) {
    return absl::InvalidArgumentError(fmt::format(
        "swap device {}: capacity {} bytes is too large", file->description(),
        file->capacity_bytes()));
  }

  auto impl = std::make_unique<Impl>();
  // Layout, largest alignment first: checksums, free_clusters, swap_map, cluster_used.
  const std::uint64_t bytes = slots * sizeof(std::uint64_t) + clusters * sizeof(std::uint32_t) +
                              slots * sizeof(std::uint16_t) + clusters * sizeof(std::uint16_t);
  impl->metadata_bytes = (bytes + kPageSize - 1) & ~(kPageSize - 1);
  absl::StatusOr<void*> metadata = ReserveAnonymous(impl->metadata_bytes, kPageSize);
  if (!metadata.ok()) return metadata.status();
  impl->metadata = *metadata;
  impl->file = *std::move(file);
  impl->slots_total = slots;
  impl->clusters_total = static_cast<std::uint32_t>(clusters);

  MutexLock lock(&impl->mu);
  auto* p = static_cast<char*>(impl->metadata);
  impl->checksums = reinterpret_cast<std::uint64_t*>(p);
  p += slots * sizeof(std::uint64_t);
  impl->free_clusters = reinterpret_cast<std::uint32_t*>(p);
  p += clusters * sizeof(std::uint32_t);
  impl->swap_map = reinterpret_cast<std::uint16_t*>(p);
  p += slots * sizeof(std::uint16_t);
  impl->cluster_used = reinterpret_cast<std::uint16_t*>(p);
  // Anonymous memory reads zero: every slot free, every checksum "nothing valid".
  for (std::uint32_t i = 0; i < clusters; ++i) {
    impl->free_clusters[i] = static_cast<std::uint32_t>(clusters - 1 - i);
  }
  impl->free_cluster_count = static_cast<std::uint32_t>(clusters);
  return std::unique_ptr<SwapDevice>(new SwapDevice(std::move(impl)));
}

SwapDevice::SwapDevice(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SwapDevice::~SwapDevice() = default;

std::size_t SwapDevice::Allocate(std::size_t count, SwapSlot* out) {
  Impl& d = *impl_;
  MutexLock lock(&d.mu);
  if (d.slots_used == d.slots_total) return 0;
  std::size_t n = d.AllocateSequential(count, out);
  if (n < count) n += d.AllocateScanning(count - n, out + n);
  return n;
}

void SwapDevice::Ref(SwapSlot slot) {
  Impl& d = *impl_;
  d.CheckSlot(slot, "Ref");
  MutexLock lock(&d.mu);
  std::uint16_t& count = d.swap_map[slot.value];
  if (count == 0 || count == kHeldSlot) {
    ReportFatal("swap device: Ref of free swap slot {}", slot.value);
  }
  if (count == kMaxRefCount) {
    ReportFatal("swap device: reference count of swap slot {} overflows {}", slot.value,
                kMaxRefCount);
  }
  if (++count == 2) ++d.slots_shared;
}

void SwapDevice::Unref(SwapSlot slot) {
  Impl& d = *impl_;
  d.CheckSlot(slot, "Unref");
  MutexLock lock(&d.mu);
  std::uint16_t& count = d.swap_map[slot.value];
  if (count == 0 || count == kHeldSlot) {
    ReportFatal("swap device: Unref of free swap slot {} (double free of a swap slot)",
                slot.value);
  }
  if (count == 1 && d.hold_depth > 0 && d.held != nullptr) {
    count = kHeldSlot;  // not free until ReleaseHeldFrees; listed once
    d.held[d.held_count++] = slot.value;
    return;
  }
  if (count == 2) --d.slots_shared;
  if (--count != 0) return;
  d.FreeSlot(slot.value);
}

bool SwapDevice::HoldFrees() {
  Impl& d = *impl_;
  MutexLock lock(&d.mu);
  if (d.held == nullptr) {
    auto memory = ReserveAnonymous(d.slots_total * sizeof(std::uint64_t), 4096);
    if (!memory.ok()) return false;
    d.held = static_cast<std::uint64_t*>(*memory);
  }
  ++d.hold_depth;
  return true;
}

void SwapDevice::ReleaseHeldFrees() {
  Impl& d = *impl_;
  MutexLock lock(&d.mu);
  if (d.hold_depth == 0 || --d.hold_depth != 0) return;
  for (std::uint64_t i = 0; i < d.held_count; ++i) {
    const std::uint64_t slot = d.held[i];
    d.swap_map[slot] = 0;
    d.FreeSlot(slot);
  }
  d.held_count = 0;
}

std::uint32_t SwapDevice::RefCount(SwapSlot slot) const {
  Impl& d = *impl_;
  d.CheckSlot(slot, "RefCount");
  MutexLock lock(&d.mu);
  return d.swap_map[slot.value];
}

std::size_t SwapDevice::Write(const SwapSlot* slots, const void* const* pages, std::size_t count,
                              int* errors) {
  Impl& d = *impl_;
  std::size_t failed = 0;
  std::uint64_t sums[kBatchPages];
  for (std::size_t i = 0; i < count;) {
    const std::size_t n = RunLength(slots, i, count, kBatchPages);
    d.CheckSlot(slots[i], "Write");
    d.CheckSlot(slots[i + n - 1], "Write");
    // Checksums of the bytes handed to the kernel, kept only once they are on the file.
    for (std::size_t k = 0; k < n; ++k) sums[k] = PageChecksum(pages[i + k]);
    const int err = d.file.WritePages(slots[i].value, pages + i, n);
    for (std::size_t k = 0; k < n; ++k) {
      d.checksums[slots[i + k].value] = err == 0 ? sums[k] : 0;
      errors[i + k] = err;
    }
    if (err == 0) {
      d.bytes_written.fetch_add(n * kSwapSlotBytes, std::memory_order_relaxed);
    } else {
      d.write_errors.fetch_add(n, std::memory_order_relaxed);
      failed += n;
    }
    i += n;
  }
  return failed;
}

std::size_t SwapDevice::Read(const SwapSlot* slots, void* const* pages, std::size_t count,
                             int* errors) {
  Impl& d = *impl_;
  std::size_t failed = 0;
  for (std::size_t i = 0; i < count;) {
    const std::size_t n = RunLength(slots, i, count, count);
    d.CheckSlot(slots[i], "Read");
    d.CheckSlot(slots[i + n - 1], "Read");
    const int err = d.file.ReadPages(slots[i].value, pages + i, n);
    if (err != 0) {
      std::fill(errors + i, errors + i + n, err);
      d.read_errors.fetch_add(n, std::memory_order_relaxed);
      failed += n;
    } else {
      d.bytes_read.fetch_add(n * kSwapSlotBytes, std::memory_order_relaxed);
      std::size_t bad = 0;
      for (std::size_t k = 0; k < n; ++k) {
        const bool ok = PageChecksum(pages[i + k]) == d.checksums[slots[i + k].value];
        errors[i + k] = ok ? 0 : EBADMSG;
        bad += ok ? 0 : 1;
      }
      if (bad != 0) d.checksum_errors.fetch_add(bad, std::memory_order_relaxed);
      failed += bad;
    }
    i += n;
  }
  return failed;
}

bool SwapDevice::Matches(SwapSlot slot, const void* page) const {
  const std::uint64_t sum = impl_->checksums[slot.value];
  return sum != 0 && PageChecksum(page) == sum;
}

SwapDeviceStats SwapDevice::Stats() const {
  const Impl& d = *impl_;
  SwapDeviceStats stats;
  stats.slots_total = d.slots_total;
  {
    MutexLock lock(&d.mu);
    stats.slots_used = d.slots_used;
    stats.slots_shared = d.slots_shared;
  }
  stats.bytes_written = d.bytes_written.load(std::memory_order_relaxed);
  stats.bytes_read = d.bytes_read.load(std::memory_order_relaxed);
  stats.write_errors = d.write_errors.load(std::memory_order_relaxed);
  stats.read_errors = d.read_errors.load(std::memory_order_relaxed);
  stats.checksum_errors = d.checksum_errors.load(std::memory_order_relaxed);
  return stats;
}

std::uint64_t SwapDevice::slots_total() const { return impl_->slots_total; }
const std::string& SwapDevice::description() const { return impl_->file.description(); }
std::uint64_t SwapDevice::metadata_bytes() const { return impl_->metadata_bytes; }
SwapFileFaults& SwapDevice::faults() { return impl_->file.faults(); }

}  // namespace uvmem::internal
