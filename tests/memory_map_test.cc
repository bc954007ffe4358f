// Tests of the virtual-memory calls: reserve/release, protection, discard, NUMA binding
// and asking where pages live (move_pages with nodes == NULL).
#include "platform/memory_map.h"

#include <gtest/gtest.h>

#include <numaif.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "platform/numa_topology.h"

namespace uvmem::internal {
namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

// A reservation released at scope exit.
class Reservation {
 public:
  Reservation(std::size_t length_bytes, std::size_t alignment_bytes) : length_(length_bytes) {
    absl::StatusOr<void*> r = ReserveAnonymous(length_bytes, alignment_bytes);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) base_ = static_cast<unsigned char*>(*r);
  }
  ~Reservation() {
    if (base_ != nullptr) {
      EXPECT_TRUE(ReleaseMapping(base_, length_).ok());
    }
  }
  unsigned char* base() const { return base_; }
  unsigned char* page(std::size_t i) const { return base_ + i * kPageSize; }

 private:
  unsigned char* base_ = nullptr;
  std::size_t length_;
};

int NodeOf(void* page) {
  void* pages[1] = {page};
  int status[1] = {12345};
  absl::Status s = QueryPageNodes(pages, status);
  EXPECT_TRUE(s.ok()) << s;
  return status[0];
}

TEST(ReserveAnonymous, HonoursAlignmentAndIsZeroFilled) {
  for (std::size_t alignment : {kPageSize, 64 * 1024ul, 2 * kMiB, 4 * kMiB}) {
    Reservation r(3 * kMiB, alignment);
    ASSERT_NE(r.base(), nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(r.base()) % alignment, 0u) << alignment;
    for (std::size_t off = 0; off < 3 * kMiB; off += 1024) {
      ASSERT_EQ(r.base()[off], 0) << "offset " << off;
    }
    // Readable and writable over its whole length.
    r.base()[0] = 1;
    r.base()[3 * kMiB - 1] = 2;
    EXPECT_EQ(r.base()[0] + r.base()[3 * kMiB - 1], 3);
  }
}

TEST(ReserveAnonymous, ReleaseUnmaps) {
  absl::StatusOr<void*> r = ReserveAnonymous(4 * kMiB, 4 * kMiB);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(ReleaseMapping(*r, 4 * kMiB).ok());
  EXPECT_EQ(NodeOf(*r), -EFAULT);  // no longer mapped
}

TEST(ReserveAnonymous, RejectsBadLengthsAndAlignments) {
  EXPECT_EQ(ReserveAnonymous(0, kPageSize).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReserveAnonymous(kPageSize + 1, kPageSize).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReserveAnonymous(kPageSize, 2048).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReserveAnonymous(kPageSize, 3 * kPageSize).status().code(),
            absl::StatusCode::kInvalidArgument);
  // length + alignment would wrap around: must not map a short region.
  EXPECT_EQ(ReserveAnonymous(SIZE_MAX - kPageSize + 1, 4 * kMiB).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Too large for the address space: an error, not a crash.
  EXPECT_FALSE(ReserveAnonymous(std::size_t{1} << 62, kPageSize).ok());
}

TEST(ReleaseMapping, RejectsMisalignedRanges) {
  Reservation r(kMiB, kPageSize);
  EXPECT_EQ(ReleaseMapping(r.base() + 1, kPageSize).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReleaseMapping(r.base(), kPageSize - 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReleaseMapping(r.base(), 0).code(), absl::StatusCode::kInvalidArgument);
}

TEST(DiscardPages, DropsContents) {
  Reservation r(4 * kPageSize, kPageSize);
  std::memset(r.base(), 0xab, 4 * kPageSize);
  ASSERT_EQ(DiscardPages(r.page(1), 2 * kPageSize), 0);
  EXPECT_EQ(r.page(0)[0], 0xab);
  EXPECT_EQ(r.page(1)[0], 0);
  EXPECT_EQ(r.page(2)[kPageSize - 1], 0);
  EXPECT_EQ(r.page(3)[0], 0xab);
  EXPECT_EQ(DiscardPages(r.page(0), kPageSize / 2), EINVAL);
  EXPECT_EQ(DiscardPages(r.base() + 8, kPageSize), EINVAL);
}

TEST(TouchPages, BacksPagesAndKeepsContent) {
  Reservation r(4 * kPageSize, kPageSize);
  r.page(2)[0] = 42;
  EXPECT_EQ(NodeOf(r.page(0)), -ENOENT);
  TouchPages(r.base(), 4 * kPageSize);
  EXPECT_EQ(r.page(2)[0], 42);
  for (int i = 0; i < 4; ++i) EXPECT_GE(NodeOf(r.page(i)), 0) << "page " << i;
}

TEST(ProtectNone, MakesPagesInaccessibleAndBack) {
  Reservation r(2 * kPageSize, kPageSize);
  ASSERT_TRUE(ProtectNone(r.base(), kPageSize).ok());
  EXPECT_DEATH(static_cast<volatile unsigned char*>(r.base())[0] = 1, "");
  ASSERT_TRUE(ProtectReadWrite(r.base(), kPageSize).ok());
  r.base()[0] = 1;
  EXPECT_EQ(r.base()[0], 1);
  EXPECT_EQ(ProtectNone(r.base() + 1, kPageSize).code(), absl::StatusCode::kInvalidArgument);
}

TEST(AdviseHugePages, AcceptsAlignedRanges) {
  Reservation r(4 * kMiB, 2 * kMiB);
  EXPECT_TRUE(AdviseHugePages(r.base(), 4 * kMiB, true).ok());
  EXPECT_TRUE(AdviseHugePages(r.base(), 4 * kMiB, false).ok());
  EXPECT_FALSE(AdviseHugePages(r.base(), 0, true).ok());
}

TEST(QueryPageNodes, UntouchedPageIsNotPresent) {
  Reservation r(2 * kPageSize, kPageSize);
  EXPECT_EQ(NodeOf(r.page(0)), -ENOENT);
  r.page(1)[0] = 1;
  EXPECT_EQ(NodeOf(r.page(0)), -ENOENT);  // touching a neighbour does not back this one
  EXPECT_GE(NodeOf(r.page(1)), 0);
}

TEST(QueryPageNodes, RejectsMismatchedSpans) {
  Reservation r(kPageSize, kPageSize);
  void* pages[2] = {r.base(), r.base()};
  int status[1];
  EXPECT_EQ(QueryPageNodes(pages, status).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(QueryPageNodes({}, {}).ok());
}

TEST(BindToNode, NodeZeroPlacesPagesOnNodeZero) {
  Reservation r(8 * kPageSize, kPageSize);
  ASSERT_TRUE(BindToNode(r.base(), 8 * kPageSize, NodeId{0}).ok());
  EXPECT_EQ(NodeOf(r.page(3)), -ENOENT);  // binding does not populate
  TouchPages(r.base(), 8 * kPageSize);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(NodeOf(r.page(i)), 0) << "page " << i;
}

TEST(BindToNode, MissingNodeIsInvalidArgument) {
  NumaTopology t = NumaTopology::Detect();
  if (t.has_node(NodeId{7})) GTEST_SKIP() << "this machine has a node 7";
  Reservation r(kPageSize, kPageSize);
  absl::Status s = BindToNode(r.base(), kPageSize, NodeId{7});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(BindToNode(r.base(), kPageSize, NodeId{-1}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BindToNode(r.base(), kPageSize, NodeId{1024}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BindToNode(r.base(), 100, NodeId{0}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(InterleaveOverNodes, AcceptsRealNodesRejectsEmpty) {
  Reservation r(4 * kPageSize, kPageSize);
  const NodeId nodes[] = {NodeId{0}};
  EXPECT_TRUE(InterleaveOverNodes(r.base(), 4 * kPageSize, nodes).ok());
  TouchPages(r.base(), 4 * kPageSize);
  EXPECT_EQ(NodeOf(r.page(2)), 0);
  EXPECT_EQ(InterleaveOverNodes(r.base(), 4 * kPageSize, {}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PreferPagesOnNode, PlacesLaterPagesAndRejectsMissingNodes) {
  Reservation r(8 * kPageSize, kPageSize);
  ASSERT_EQ(PreferPagesOnNode(r.page(2), 2 * kPageSize, NodeId{0}), 0);
  TouchPages(r.base(), 8 * kPageSize);
  EXPECT_EQ(NodeOf(r.page(2)), 0);
  EXPECT_EQ(NodeOf(r.page(3)), 0);
  EXPECT_EQ(PreferPagesOnNode(r.page(0), kPageSize, NodeId{-1}), EINVAL);
  EXPECT_EQ(PreferPagesOnNode(r.page(0), kPageSize, NodeId{1024}), EINVAL);
}

// The thread policy is what places UFFDIO_COPY's pages in local ranges (the only ones
// without a VMA policy).
TEST(ThreadMempolicy, PreferredNodePlacesThisThreadsPagesAndRestores) {
  ThreadMempolicy saved;
  ASSERT_EQ(GetThisThreadMempolicy(&saved), 0);
  ASSERT_EQ(PreferNodeForThisThread(NodeId{0}), 0);
  ThreadMempolicy now;
  ASSERT_EQ(GetThisThreadMempolicy(&now), 0);
  EXPECT_EQ(now.mode, MPOL_PREFERRED);
  EXPECT_EQ(now.nodes[0] & 1UL, 1UL);
  Reservation r(4 * kPageSize, kPageSize);
  TouchPages(r.base(), 4 * kPageSize);
  EXPECT_EQ(NodeOf(r.page(2)), 0);
  ASSERT_EQ(SetThisThreadMempolicy(saved), 0);
  ASSERT_EQ(GetThisThreadMempolicy(&now), 0);
  EXPECT_EQ(now.mode, saved.mode);
}

TEST(ThreadMempolicy, MissingNodeIsEinval) {
  NumaTopology t = NumaTopology::Detect();
  if (t.has_node(NodeId{7})) GTEST_SKIP() << "this machine has a node 7";
  EXPECT_EQ(PreferNodeForThisThread(NodeId{7}), EINVAL);
  EXPECT_EQ(PreferNodeForThisThread(NodeId{-1}), EINVAL);
  EXPECT_EQ(PreferNodeForThisThread(NodeId{1024}), EINVAL);
}

}  // namespace
}  // namespace uvmem::internal
