// memory_budget.h — MemoryBudget: the resident-page limit of all ranges, with watermarks.
//
// A charge counter, as a memory cgroup's: every frame mapped into a range is charged
// before it is mapped and uncharged when it leaves (eviction, discard, release). The
// runtime's metadata is not charged. Watermarks follow the kernel's zone watermarks
// (mm/page_alloc.c) applied to the budget's free pages (budget − charged): below `low`
// the background reclaimer is woken; it evicts until `high` pages are free. A charge that
// does not fit fails, and the caller reclaims directly (reclaim.h) before trying again.
//
// Without a budget (0) the limit is unbounded: charges always succeed and nothing wakes.
//
// Thread-safety: every method is thread-safe (one relaxed atomic counter).
#ifndef UVMEM_VM_MEMORY_BUDGET_H_
#define UVMEM_VM_MEMORY_BUDGET_H_

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace uvmem::internal {

class MemoryBudget {
 public:
  static constexpr std::uint64_t kUnlimited = ~std::uint64_t{0};

  // `budget_pages` 0: unlimited. Watermarks: low = budget/32, high = budget/16 (at least
  // 32 and 64 pages), so a background pass frees about budget/32 pages at a time.
  explicit MemoryBudget(std::uint64_t budget_pages)
      : budget_(budget_pages == 0 ? kUnlimited : budget_pages),
        low_(budget_pages == 0 ? 0 : std::max<std::uint64_t>(budget_pages / 32, 32)),
        high_(budget_pages == 0 ? 0 : std::max<std::uint64_t>(budget_pages / 16, 64)) {}

  bool limited() const { return budget_ != kUnlimited; }
  std::uint64_t budget_pages() const { return budget_; }
  std::uint64_t low_pages() const { return low_; }
  std::uint64_t high_pages() const { return high_; }
  std::uint64_t charged_pages() const { return charged_.load(std::memory_order_relaxed); }
  std::uint64_t free_pages() const {
    const std::uint64_t c = charged_pages();
    return c >= budget_ ? 0 : budget_ - c;
  }

  // Charges `pages` if they fit under the budget. Returns false (nothing charged) if not.
  bool TryCharge(std::uint64_t pages) {
    std::uint64_t c = charged_.load(std::memory_order_relaxed);
    do {
      if (pages > budget_ || c > budget_ - pages) return false;
    } while (!charged_.compare_exchange_weak(c, c + pages, std::memory_order_relaxed));
    return true;
  }
  // Charges `pages` whatever the budget says: pages that must stay mapped (a writeback
  // that failed puts its page back).
  void ForceCharge(std::uint64_t pages) { charged_.fetch_add(pages, std::memory_order_relaxed); }
  void Uncharge(std::uint64_t pages) { charged_.fetch_sub(pages, std::memory_order_relaxed); }

  // True when free pages fell below the low watermark (the reclaimer should run).
  bool BelowLow() const { return limited() && free_pages() < low_; }
  // Pages to evict to bring free pages up to the high watermark (0: none).
  std::uint64_t ShortOfHigh() const {
    const std::uint64_t f = free_pages();
    return !limited() || f >= high_ ? 0 : high_ - f;
  }

 private:
  const std::uint64_t budget_;
  const std::uint64_t low_;
  const std::uint64_t high_;
  std::atomic<std::uint64_t> charged_{0};
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_MEMORY_BUDGET_H_
