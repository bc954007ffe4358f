// uvmem::NodeAllocator (uvmem/malloc.h): STL containers on one NUMA node's heap.
#include <gtest/gtest.h>
#include <numaif.h>

#include <map>
#include <stdexcept>
#include <vector>

#include "uvmem/malloc.h"

namespace {

int NodeOfPage(const void* p) {
  void* page = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{4095});
  int status = -1;
  if (move_pages(0, 1, &page, nullptr, &status, 0) != 0) return -1;
  return status;
}

TEST(NodeAllocatorTest, AVectorLivesInTheHeapOnItsNode) {
  const uvmem::MallocStats before = uvmem::GetMallocStats();
  std::vector<double, uvmem::NodeAllocator<double>> v(1 << 20, 1.5,
                                                      uvmem::NodeAllocator<double>(0));
  double sum = 0;
  for (double x : v) sum += x;
  EXPECT_EQ(sum, 1.5 * (1 << 20));
  EXPECT_EQ(NodeOfPage(v.data()), 0);
  EXPECT_EQ(NodeOfPage(v.data() + v.size() - 1), 0);
  const uvmem::MallocStats after = uvmem::GetMallocStats();
  EXPECT_TRUE(after.paged) << after.mode;
  EXPECT_GT(after.malloc_calls, before.malloc_calls);
}

TEST(NodeAllocatorTest, NodeBasedContainersRebindAndCompare) {
  using Alloc = uvmem::NodeAllocator<std::pair<const int, int>>;
  std::map<int, int, std::less<int>, Alloc> m{Alloc(0)};
  for (int i = 0; i < 10000; ++i) m[i] = i * 2;
  long total = 0;
  for (const auto& [k, v] : m) total += v - 2 * k;
  EXPECT_EQ(total, 0);
  EXPECT_EQ(uvmem::NodeAllocator<int>(0), uvmem::NodeAllocator<double>(0));
  EXPECT_FALSE(uvmem::NodeAllocator<int>(0) == uvmem::NodeAllocator<int>(1));
}

TEST(NodeAllocatorTest, AMissingNodeThrowsInvalidArgument) {
  uvmem::NodeAllocator<int> a(999);
  EXPECT_THROW((void)a.allocate(10), std::invalid_argument);
}

TEST(NodeAllocatorTest, ExhaustionThrowsBadAlloc) {
  uvmem::NodeAllocator<char> a(0);
  EXPECT_THROW((void)a.allocate(std::size_t{1} << 62), std::bad_alloc);
}

}  // namespace
