// Tests of NumaTopology: this machine's topology (Detect) and the synthetic ones policy
// tests use (ForTest, TwoNodeForTest, FourNodeForTest).
#include "platform/numa_topology.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "platform/cpu.h"

namespace uvmem::internal {
namespace {

using Ints = std::vector<int>;

// Whether `text` contains `part`, with both shown on failure.
::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << part << "' not in:\n" << text;
}

TEST(NumaTopologyDetect, HasAtLeastOneNodeAndNodeZero) {
  NumaTopology t = NumaTopology::Detect();
  EXPECT_TRUE(t.real());
  ASSERT_GE(t.num_nodes(), 1);
  // Every Linux machine has node 0 (the kernel numbers the boot node 0).
  EXPECT_TRUE(t.has_node(NodeId{0}));
  EXPECT_EQ(t.index_of(NodeId{0}), 0);
  EXPECT_FALSE(t.has_node(NodeId{1000}));
  EXPECT_EQ(t.index_of(NodeId{-1}), -1);
}

TEST(NumaTopologyDetect, DistancesAreLocalOnTheDiagonal) {
  NumaTopology t = NumaTopology::Detect();
  for (int i = 0; i < t.num_nodes(); ++i) {
    EXPECT_EQ(t.distance(i, i), 10) << "node index " << i;
    for (int j = 0; j < t.num_nodes(); ++j) {
      if (j != i) {
        EXPECT_GT(t.distance(i, j), t.distance(i, i));
      }
    }
  }
}

TEST(NumaTopologyDetect, EveryConfiguredCpuMapsToANode) {
  NumaTopology t = NumaTopology::Detect();
  const int ncpus = ConfiguredCpuCount();
  ASSERT_GE(t.cpu_limit(), ncpus) << "cpu_limit must bound every configured CPU";
  std::vector<int> owners(static_cast<std::size_t>(t.cpu_limit()), 0);
  for (int i = 0; i < t.num_nodes(); ++i) {
    for (int cpu : t.cpus_of(i)) {
      ASSERT_GE(cpu, 0);
      ASSERT_LT(cpu, t.cpu_limit());
      ++owners[cpu];
      EXPECT_EQ(t.node_index_of_cpu(cpu), i);
    }
  }
  for (int cpu = 0; cpu < ncpus; ++cpu) {
    EXPECT_EQ(owners[cpu], 1) << "CPU " << cpu << " must belong to exactly one node";
  }
  // The CPU we run on is one of them.
  const int here = CurrentCpu();
  EXPECT_LT(here, t.cpu_limit());
}

TEST(NumaTopologyDetect, UnknownCpuFallsBackToIndexZero) {
  NumaTopology t = NumaTopology::Detect();
  EXPECT_EQ(t.node_index_of_cpu(-1), 0);
  EXPECT_EQ(t.node_index_of_cpu(t.cpu_limit() + 100), 0);
}

TEST(NumaTopologyDetect, ToStringMentionsEveryNode) {
  NumaTopology t = NumaTopology::Detect();
  const std::string s = t.ToString();
  for (int i = 0; i < t.num_nodes(); ++i) {
    EXPECT_TRUE(Contains(s, "node " + std::to_string(t.node_id(i).value) + ":"));
  }
}

TEST(NumaTopologyForTest, TwoNodes) {
  NumaTopology t = NumaTopology::TwoNodeForTest();
  EXPECT_FALSE(t.real());
  ASSERT_EQ(t.num_nodes(), 2);
  EXPECT_EQ(t.distance(0, 0), 10);
  EXPECT_EQ(t.distance(0, 1), 21);
  EXPECT_EQ(t.distance(1, 0), 21);
  EXPECT_EQ(t.distance(1, 1), 10);
  EXPECT_EQ(t.cpus_of(0), (Ints{0}));
  EXPECT_EQ(t.cpus_of(1), (Ints{1}));
  EXPECT_EQ(t.node_index_of_cpu(1), 1);
  EXPECT_EQ(t.cpu_limit(), 2);
  EXPECT_EQ(t.FallbackOrder(0), (Ints{0, 1}));
  EXPECT_EQ(t.FallbackOrder(1), (Ints{1, 0}));
}

TEST(NumaTopologyForTest, FourNodeRingFallbackOrder) {
  NumaTopology t = NumaTopology::FourNodeForTest();
  ASSERT_EQ(t.num_nodes(), 4);
  EXPECT_EQ(t.distance(0, 1), 16);
  EXPECT_EQ(t.distance(0, 2), 22);
  EXPECT_EQ(t.distance(0, 3), 16);
  // From 0: itself, then its neighbours 1 and 3 (16, ties by index), then 2 across (22).
  EXPECT_EQ(t.FallbackOrder(0), (Ints{0, 1, 3, 2}));
  EXPECT_EQ(t.FallbackOrder(1), (Ints{1, 0, 2, 3}));
  EXPECT_EQ(t.FallbackOrder(2), (Ints{2, 1, 3, 0}));
  EXPECT_EQ(t.FallbackOrder(3), (Ints{3, 0, 2, 1}));
}

TEST(NumaTopologyForTest, ToStringMentionsEachNodeAndItsDistances) {
  const std::string s = NumaTopology::FourNodeForTest().ToString();
  EXPECT_TRUE(Contains(s, "node 0: cpus 0, distances 10 16 22 16"));
  EXPECT_TRUE(Contains(s, "node 3: cpus 3, distances 16 22 16 10"));
}

TEST(NumaTopologyForTest, SortsCpusAndBuildsTheIndex) {
  absl::StatusOr<NumaTopology> t = NumaTopology::ForTest({{10, 20}, {20, 10}}, {{3, 0, 2}, {1}});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->cpus_of(0), (Ints{0, 2, 3}));
  EXPECT_EQ(t->cpu_limit(), 4);
  EXPECT_EQ(t->node_index_of_cpu(3), 0);
  EXPECT_EQ(t->node_index_of_cpu(1), 1);
  EXPECT_TRUE(Contains(t->ToString(), "node 0: cpus 0,2-3"));
}

TEST(NumaTopologyForTest, RejectsBadShapes) {
  // No nodes.
  EXPECT_FALSE(NumaTopology::ForTest({}, {}).ok());
  // Distance rows and CPU lists disagree.
  EXPECT_FALSE(NumaTopology::ForTest({{10, 20}, {20, 10}}, {{0}}).ok());
  // A short row.
  EXPECT_FALSE(NumaTopology::ForTest({{10, 20}, {20}}, {{0}, {1}}).ok());
  // A remote distance not larger than the local one.
  EXPECT_FALSE(NumaTopology::ForTest({{10, 10}, {20, 10}}, {{0}, {1}}).ok());
  EXPECT_FALSE(NumaTopology::ForTest({{10, 20}, {5, 10}}, {{0}, {1}}).ok());
  // A CPU listed twice, or negative.
  EXPECT_FALSE(NumaTopology::ForTest({{10, 20}, {20, 10}}, {{0, 1}, {1}}).ok());
  EXPECT_FALSE(NumaTopology::ForTest({{10}}, {{-1}}).ok());
  // And the error says why.
  absl::StatusOr<NumaTopology> bad = NumaTopology::ForTest({{10, 20}, {20, 10}}, {{0}});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(std::string(bad.status().message()), "2 distance rows but 1 CPU lists"));
}

TEST(NumaTopologyForTest, NodeWithoutCpusIsAllowed) {
  absl::StatusOr<NumaTopology> t = NumaTopology::ForTest({{10, 20}, {20, 10}}, {{0, 1}, {}});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->cpus_of(1).empty());
  EXPECT_TRUE(Contains(t->ToString(), "node 1: cpus none"));
}

}  // namespace
}  // namespace uvmem::internal
