// Tests of PageTable: sparse growth, lookups, concurrent creation, walk and teardown.
#include "vm/page_table.h"

#include <gtest/gtest.h>

#include <barrier>
#include <thread>
#include <vector>

namespace uvmem::internal {
namespace {

class PageTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FramePoolOptions options;
    options.bytes_per_node = 16 << 20;
    pool_ = std::move(*FramePool::Create(options, NumaTopology::Detect()));
    tables_ = std::move(*SlabCache::Create(pool_.get(), "test-pgtable", PageTable::kTableBytes,
                                           PageTable::kTableBytes));
  }
  std::unique_ptr<FramePool> pool_;
  std::unique_ptr<SlabCache> tables_;
};

TEST_F(PageTableTest, DepthFollowsTheRangeSize) {
  EXPECT_EQ(PageTable(tables_.get(), 1).levels(), 1);
  EXPECT_EQ(PageTable(tables_.get(), 512).levels(), 1);
  EXPECT_EQ(PageTable(tables_.get(), 513).levels(), 2);
  EXPECT_EQ(PageTable(tables_.get(), std::uint64_t{1} << 28).levels(), 4);  // 1 TiB
}

TEST_F(PageTableTest, GrowsOnlyWhereTouched) {
  PageTable table(tables_.get(), std::uint64_t{1} << 28);
  EXPECT_EQ(table.Lookup(12345), nullptr);
  EXPECT_EQ(table.table_bytes(), 0u);
  std::atomic<Pte>* e = table.LookupOrCreate(12345);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(table.table_bytes(), 4 * PageTable::kTableBytes);
  e->store(MakePresentPte(FrameNumber{77}));
  EXPECT_EQ(table.Lookup(12345), e);
  EXPECT_EQ(table.Lookup(12346), e + 1) << "neighbours share the leaf";
  EXPECT_EQ(table.Lookup(1u << 20), nullptr);
  EXPECT_EQ(PteFrame(table.Lookup(12345)->load()).value, 77u);
  table.LookupOrCreate(12346);
  EXPECT_EQ(table.table_bytes(), 4 * PageTable::kTableBytes) << "same leaf, no new table";
}

TEST_F(PageTableTest, ForEachVisitsEntriesInOrderAndDestroyFreesTables) {
  {
    PageTable table(tables_.get(), 1u << 20);
    for (std::uint64_t page : {900000u, 3u, 512u, 70000u}) {
      table.LookupOrCreate(page)->store(MakePresentPte(FrameNumber{page}));
    }
    std::vector<std::uint64_t> seen;
    table.ForEach([&](std::uint64_t page, Pte pte) {
      EXPECT_EQ(PteFrame(pte).value, page);
      seen.push_back(page);
    });
    EXPECT_EQ(seen, (std::vector<std::uint64_t>{3, 512, 70000, 900000}));
  }
  EXPECT_EQ(tables_->Stats().active_objects, 0u) << "every table went back to the slab";
}

TEST_F(PageTableTest, ConcurrentCreationYieldsOneEntryPerPage) {
  PageTable table(tables_.get(), 1u << 24);
  constexpr int kThreads = 4;
  std::barrier start(kThreads);
  std::vector<std::vector<std::atomic<Pte>*>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      // Stride 97: about 780 leaf tables, well inside the 16 MiB pool.
      for (std::uint64_t p = 0; p < 4096; ++p) got[t].push_back(table.LookupOrCreate(p * 97));
    });
  }
  for (auto& th : threads) th.join();
  for (std::atomic<Pte>* e : got[0]) ASSERT_NE(e, nullptr);
  for (int t = 1; t < kThreads; ++t) EXPECT_EQ(got[t], got[0]);
}

TEST_F(PageTableTest, NextTouchedSkipsUntouchedSubtrees) {
  PageTable table(tables_.get(), std::uint64_t{1} << 24);  // 64 GiB of pages, 3 levels
  EXPECT_EQ(table.NextTouched(0), table.pages()) << "nothing touched";
  const std::uint64_t far = (std::uint64_t{5} << 18) + 700;  // in a distant subtree
  ASSERT_NE(table.LookupOrCreate(1000), nullptr);
  ASSERT_NE(table.LookupOrCreate(far), nullptr);
  EXPECT_EQ(table.NextTouched(0), 512u) << "the leaf holding page 1000 starts at 512";
  EXPECT_EQ(table.NextTouched(900), 900u) << "inside a touched leaf";
  EXPECT_EQ(table.NextTouched(1024), far & ~std::uint64_t{511});
  EXPECT_EQ(table.NextTouched(far + 400), table.pages());
}

}  // namespace
}  // namespace uvmem::internal
