// latency_histogram.h — LatencyHistogram: a lock-free histogram of durations in ns.
//
// Buckets are log2-linear (HdrHistogram's idea with 4 sub-buckets per power of two), so
// a percentile is exact to within 25 %. Recording is one relaxed atomic increment.
//
// Thread-safety: Record and Percentile are thread-safe; Percentile reads a racy snapshot.
#ifndef UVMEM_VM_LATENCY_HISTOGRAM_H_
#define UVMEM_VM_LATENCY_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace uvmem::internal {

// Nanoseconds of the monotonic clock (what the histograms record differences of).
inline std::uint64_t MonotonicNowNs() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

class LatencyHistogram {
 public:
  static constexpr int kSubBuckets = 4;
  static constexpr int kBuckets = 64 * kSubBuckets;

  void Record(std::uint64_t ns) {
    counts_[BucketOf(ns)].fetch_add(1, std::memory_order_relaxed);
  }

  // The smallest bucket bound below which `fraction` (0..1) of the samples fall; 0 when
  // there are none.
  std::uint64_t Percentile(double fraction) const {
    std::uint64_t total = 0;
    for (const auto& c : counts_) total += c.load(std::memory_order_relaxed);
    if (total == 0) return 0;
    const auto target = static_cast<std::uint64_t>(fraction * static_cast<double>(total - 1)) + 1;
    std::uint64_t seen = 0;
    for (int b = 0; b < kBuckets; ++b) {
      seen += counts_[b].load(std::memory_order_relaxed);
      if (seen >= target) return UpperBound(b);
    }
    return UpperBound(kBuckets - 1);
  }

  std::uint64_t count() const {
    std::uint64_t total = 0;
    for (const auto& c : counts_) total += c.load(std::memory_order_relaxed);
    return total;
  }

 private:
  static int BucketOf(std::uint64_t ns) {
    if (ns < kSubBuckets) return static_cast<int>(ns);
    const int log = 63 - __builtin_clzll(ns);  // >= 2
    const int sub = static_cast<int>((ns >> (log - 2)) & (kSubBuckets - 1));
    return (log - 1) * kSubBuckets + sub;
  }
  static std::uint64_t UpperBound(int bucket) {
    if (bucket < kSubBuckets) return static_cast<std::uint64_t>(bucket);
    const int log = bucket / kSubBuckets + 1;
    const int sub = bucket % kSubBuckets;
    return ((std::uint64_t{kSubBuckets} + sub + 1) << (log - 2)) - 1;
  }

  std::array<std::atomic<std::uint64_t>, kBuckets> counts_{};
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_LATENCY_HISTOGRAM_H_
