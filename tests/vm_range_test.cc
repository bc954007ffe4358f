// Tests of VmRange's NUMA policy resolution per page, with synthetic node sets.
#include "vm/vm_range.h"

#include <gtest/gtest.h>

#include <map>

namespace uvmem::internal {
namespace {

class VmRangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FramePoolOptions options;
    options.bytes_per_node = 8 << 20;
    pool_ = std::move(*FramePool::Create(options, NumaTopology::Detect()));
    tables_ = std::move(*SlabCache::Create(pool_.get(), "test-pgtable", PageTable::kTableBytes,
                                           PageTable::kTableBytes));
  }
  static ResolvedPolicy Policy(NumaPolicy::Kind kind, std::initializer_list<int> nodes) {
    ResolvedPolicy p;
    p.kind = kind;
    for (int n : nodes) p.nodes[p.num_nodes++] = NodeId{n};
    return p;
  }
  std::unique_ptr<FramePool> pool_;
  std::unique_ptr<SlabCache> tables_;
};

TEST_F(VmRangeTest, InterleaveIsBalancedToWithinOnePage) {
  for (std::uint64_t pages : {1u, 2u, 3u, 1000u, 1001u}) {
    // Start at an odd page number: interleave follows the absolute page, like the kernel.
    VmRange range(tables_.get(), 0x7000'0000'1000, pages * kPageSize, "il",
                  Policy(NumaPolicy::Kind::kInterleave, {0, 1, 3}));
    std::map<int, std::uint64_t> per_node;
    for (std::uint64_t p = 0; p < pages; ++p) ++per_node[range.NodeForPage(p, NodeId{0}).value];
    EXPECT_EQ(per_node.size(), pages >= 3 ? 3u : pages) << "nodes used";
    std::uint64_t lo = pages, hi = 0;
    for (int node : {0, 1, 3}) {
      lo = std::min(lo, per_node[node]);
      hi = std::max(hi, per_node[node]);
    }
    EXPECT_LE(hi - lo, 1u) << pages << " pages";
    // Absolute page number modulo the node count, as interleave_nid() does.
    const std::uint64_t first = 0x7000'0000'1000 >> kPageShift;
    const int expect[3] = {0, 1, 3};
    EXPECT_EQ(range.NodeForPage(0, NodeId{0}).value, expect[first % 3]);
  }
}

// Before Linux 6.7 the kernel interleaves by the low 32 bits of the page number
// (offset_il_node: `(unsigned int)n % nnodes`); a range that follows it must too, or its
// COPY-filled pages land elsewhere than its frames. 0x7000'0000'1000 / 4 KiB =
// 0x7'0000'0001, whose low 32 bits are 1: with 3 nodes the two rules differ (2 vs 1 mod 3).
TEST_F(VmRangeTest, InterleaveFollowsTheKernels32BitOffsetWhenAsked) {
  ResolvedPolicy policy = Policy(NumaPolicy::Kind::kInterleave, {0, 1, 3});
  VmRange full(tables_.get(), 0x7000'0000'1000, 4 * kPageSize, "full", policy);
  policy.interleave_offset_32 = true;
  VmRange low32(tables_.get(), 0x7000'0000'1000, 4 * kPageSize, "low32", policy);
  const int nodes[3] = {0, 1, 3};
  const std::uint64_t first = std::uint64_t{0x7000'0000'1000} >> kPageShift;
  ASSERT_NE(first % 3, static_cast<std::uint32_t>(first) % 3) << "the rules must differ here";
  for (std::uint64_t p = 0; p < 4; ++p) {
    EXPECT_EQ(full.NodeForPage(p, NodeId{0}).value, nodes[(first + p) % 3]);
    EXPECT_EQ(low32.NodeForPage(p, NodeId{0}).value,
              nodes[static_cast<std::uint32_t>(first + p) % 3]);
  }
}

TEST_F(VmRangeTest, BindPreferredAndLocal) {
  VmRange bind(tables_.get(), 0x10000000, kPageSize * 4, "b", Policy(NumaPolicy::Kind::kBind, {2}));
  VmRange pref(tables_.get(), 0x20000000, kPageSize * 4, "p",
               Policy(NumaPolicy::Kind::kPreferred, {1}));
  VmRange local(tables_.get(), 0x30000000, kPageSize * 4, "l", Policy(NumaPolicy::Kind::kLocal, {}));
  for (std::uint64_t p = 0; p < 4; ++p) {
    EXPECT_EQ(bind.NodeForPage(p, NodeId{0}).value, 2);
    EXPECT_EQ(pref.NodeForPage(p, NodeId{0}).value, 1);
    EXPECT_EQ(local.NodeForPage(p, NodeId{5}).value, 5);
  }
  EXPECT_EQ(bind.name(), "b");
  EXPECT_EQ(bind.pages(), 4u);
}

TEST_F(VmRangeTest, LongNamesAreTruncatedNotOverflowed) {
  const std::string longname(200, 'x');
  VmRange range(tables_.get(), 0x10000000, kPageSize, longname, Policy(NumaPolicy::Kind::kLocal, {}));
  EXPECT_EQ(range.name().size(), VmRange::kMaxNameBytes);
}

}  // namespace
}  // namespace uvmem::internal
