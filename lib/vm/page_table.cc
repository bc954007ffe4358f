#include "vm/page_table.h"

#include <algorithm>
#include <cstring>

#include "platform/report.h"

namespace uvmem::internal {
namespace {

int LevelsFor(std::uint64_t pages) {
  int levels = 1;
  while (levels < 4 && (std::uint64_t{1} << (levels * PageTable::kBitsPerLevel)) < pages) ++levels;
  return levels;
}

}  // namespace

PageTable::PageTable(SlabCache* tables, std::uint64_t pages)
    : tables_(tables), pages_(pages), levels_(LevelsFor(pages)) {
  UVMEM_CHECK(pages > 0 && pages <= (std::uint64_t{1} << (4 * kBitsPerLevel)));
}

PageTable::~PageTable() { Destroy(); }

PageTable::Slot* PageTable::NewTable() {
  void* memory = tables_->Allocate();
  if (memory == nullptr) return nullptr;
  std::memset(memory, 0, kTableBytes);
  tables_allocated_.fetch_add(1, std::memory_order_relaxed);
  return static_cast<Slot*>(memory);
}

std::atomic<Pte>* PageTable::Lookup(std::uint64_t page) const {
  Slot* table = root_.load(std::memory_order_acquire);
  for (int level = levels_ - 1; table != nullptr; --level) {
    const auto index = (page >> (level * kBitsPerLevel)) & (kEntriesPerTable - 1);
    if (level == 0) return &table[index];
    table = reinterpret_cast<Slot*>(table[index].load(std::memory_order_acquire));
  }
  return nullptr;
}

std::atomic<Pte>* PageTable::LookupOrCreate(std::uint64_t page) {
  UVMEM_DCHECK(page < pages_);
  Slot* table = root_.load(std::memory_order_acquire);
  if (table == nullptr) {
    Slot* fresh = NewTable();
    if (fresh == nullptr) return nullptr;
    if (root_.compare_exchange_strong(table, fresh, std::memory_order_acq_rel)) {
      table = fresh;
    } else {
      tables_->Free(fresh);  // another thread won; `table` holds its root
      tables_allocated_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  for (int level = levels_ - 1;; --level) {
    const auto index = (page >> (level * kBitsPerLevel)) & (kEntriesPerTable - 1);
    if (level == 0) return &table[index];
    std::uint64_t child = table[index].load(std::memory_order_acquire);
    if (child == 0) {
      Slot* fresh = NewTable();
      if (fresh == nullptr) return nullptr;
      const auto fresh_bits = reinterpret_cast<std::uint64_t>(fresh);
      if (table[index].compare_exchange_strong(child, fresh_bits, std::memory_order_acq_rel)) {
        child = fresh_bits;
      } else {
        tables_->Free(fresh);
        tables_allocated_.fetch_sub(1, std::memory_order_relaxed);
      }
    }
    table = reinterpret_cast<Slot*>(child);
  }
}

std::uint64_t PageTable::NextTouched(std::uint64_t page) const {
  const Slot* root = root_.load(std::memory_order_acquire);
  if (root == nullptr || page >= pages_) return pages_;
  const std::uint64_t found = FindTouched(root, levels_ - 1, 0, page);
  return std::min(found, pages_);
}

std::uint64_t PageTable::FindTouched(const Slot* table, int level, std::uint64_t base,
                                     std::uint64_t page) const {
  if (level == 0) return std::max(base, page);
  const int shift = level * kBitsPerLevel;
  const std::uint64_t first = page > base ? ((page - base) >> shift) : 0;
  for (std::uint64_t i = first; i < kEntriesPerTable; ++i) {
    const std::uint64_t child = table[i].load(std::memory_order_acquire);
    if (child == 0) continue;
    const std::uint64_t child_base = base + (i << shift);
    const std::uint64_t found =
        FindTouched(reinterpret_cast<const Slot*>(child), level - 1, child_base,
                    std::max(page, child_base));
    if (found != kNone) return found;
  }
  return kNone;
}

void PageTable::FreeTree(Slot* table, int level) {
  if (level > 0) {
    for (int i = 0; i < kEntriesPerTable; ++i) {
      const std::uint64_t child = table[i].load(std::memory_order_relaxed);
      if (child != 0) FreeTree(reinterpret_cast<Slot*>(child), level - 1);
    }
  }
  tables_->Free(table);
  tables_allocated_.fetch_sub(1, std::memory_order_relaxed);
}

void PageTable::Destroy() {
  Slot* root = root_.exchange(nullptr, std::memory_order_acq_rel);
  if (root) FreeTree(root, levels_ - 1);
}

}  // namespace uvmem::internal
