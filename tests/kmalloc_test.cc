// Tests of KmallocCaches: the size-class map, natural alignment, kfree without a size
// against a reference model, node placement, slabinfo, and misuse.
#include "frame_pool_test_util.h"
#include "slab/kmalloc.h"

#include <absl/random/random.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

#include "platform/numa_topology.h"
#include "slab/slab_debug.h"

namespace uvmem::internal {
namespace {

using testing::ExpectWhole;
using testing::kMiB;
using testing::MakePool;




TEST(KmallocTest, EverySizeMapsToTheSmallestClassThatFits) {
  EXPECT_EQ(KmallocCaches::SizeClass(0), 0);
  for (std::size_t size = 1; size <= KmallocCaches::kMaxSizeBytes; ++size) {
    const int c = KmallocCaches::SizeClass(size);
    ASSERT_GE(c, 0) << size;
    ASSERT_LT(c, KmallocCaches::kNumClasses) << size;
    ASSERT_GE(KmallocCaches::ClassSize(c), size) << size;
    if (c > 0) {
      ASSERT_LT(KmallocCaches::ClassSize(c - 1), size) << size;
    }
  }
  EXPECT_EQ(KmallocCaches::SizeClass(KmallocCaches::kMaxSizeBytes + 1), -1);
  EXPECT_EQ(KmallocCaches::SizeClass(std::size_t{1} << 40), -1);
  // The kernel's odd classes.
  EXPECT_EQ(KmallocCaches::ClassSize(KmallocCaches::SizeClass(65)), 96u);
  EXPECT_EQ(KmallocCaches::ClassSize(KmallocCaches::SizeClass(97)), 128u);
  EXPECT_EQ(KmallocCaches::ClassSize(KmallocCaches::SizeClass(129)), 192u);
  EXPECT_EQ(KmallocCaches::ClassSize(KmallocCaches::SizeClass(193)), 256u);
}

TEST(KmallocTest, CachesAreNamedAndSizedLikeTheKernels) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  ASSERT_NE(pool, nullptr);
  auto k = KmallocCaches::Create(pool.get());
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ((*k)->cache(0).name(), "kmalloc-8");
  EXPECT_EQ((*k)->cache(4).name(), "kmalloc-96");
  EXPECT_EQ((*k)->cache(9).name(), "kmalloc-1k");
  EXPECT_EQ((*k)->cache(12).name(), "kmalloc-8k");
  EXPECT_EQ((*k)->cache(12).layout().order.value, 3) << "8 KiB objects in 32 KiB slabs";
  for (int c = 0; c < KmallocCaches::kNumClasses; ++c) {
    const SlabLayout& l = (*k)->cache(c).layout();
    EXPECT_LE(l.waste_bytes, l.slab_bytes() / 8) << (*k)->cache(c).name();
  }
  EXPECT_EQ(KmallocCaches::Create(nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KmallocTest, TooLargeIsRejectedWithNullptr) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  auto k = *KmallocCaches::Create(pool.get());
  EXPECT_EQ(k->Allocate(KmallocCaches::kMaxSizeBytes + 1), nullptr);
  EXPECT_EQ(k->Allocate(std::size_t{1} << 30, NodeId{0}), nullptr);
  void* zero = k->Allocate(0);
  ASSERT_NE(zero, nullptr);
  EXPECT_EQ(k->UsableSize(zero), 8u);
  k->Free(zero);
  k->Free(nullptr);
}

// Random sizes, random frees without sizes; objects are distinct, sized and aligned as
// their class, inside a slab of that class's cache, and keep their contents.
TEST(KmallocTest, RandomizedAgainstModel) {
  auto pool = MakePool(NumaTopology::Detect(), 64 * kMiB);
  auto k = *KmallocCaches::Create(pool.get());
  absl::BitGen bits(std::seed_seq{3});
  struct Entry {
    std::size_t size;
    std::uint8_t tag;
  };
  std::map<std::uintptr_t, Entry> live;
  for (int step = 0; step < 20000; ++step) {
    if (live.empty() || absl::Bernoulli(bits, 0.55)) {
      const std::size_t size = absl::Bernoulli(bits, 0.8)
                                   ? absl::Uniform<std::size_t>(bits, 1, 300)
                                   : absl::Uniform<std::size_t>(bits, 1, 8193);
      auto* p = static_cast<unsigned char*>(k->Allocate(size));
      ASSERT_NE(p, nullptr);
      const auto addr = reinterpret_cast<std::uintptr_t>(p);
      const int c = KmallocCaches::SizeClass(size);
      const std::size_t class_size = KmallocCaches::ClassSize(c);
      ASSERT_EQ(k->UsableSize(p), class_size);
      ASSERT_EQ(addr % 8, 0u);
      if (std::has_single_bit(class_size)) {
        ASSERT_EQ(addr % std::min<std::size_t>(class_size, kPageSize), 0u) << "natural alignment";
      }
      const FrameDescriptor& d = pool->Descriptor(*pool->FrameOf(p));
      ASSERT_EQ(d.owner, k->cache(c).frame_owner());
      auto next = live.lower_bound(addr);
      ASSERT_TRUE(next == live.end() || next->first >= addr + size);
      if (next != live.begin()) {
        ASSERT_LE(std::prev(next)->first + std::prev(next)->second.size, addr);
      }
      const auto tag = static_cast<std::uint8_t>(absl::Uniform<int>(bits, 0, 256));
      std::memset(p, tag, size);
      live[addr] = {size, tag};
    } else {
      auto it = live.begin();
      std::advance(it, absl::Uniform<long>(bits, 0, static_cast<long>(live.size())));
      auto* p = reinterpret_cast<unsigned char*>(it->first);
      for (std::size_t i = 0; i < it->second.size; i += 7) ASSERT_EQ(p[i], it->second.tag);
      live.erase(it);
      k->Free(p);
    }
  }
  std::uint64_t active = 0;
  for (const SlabCacheStats& s : k->Stats()) active += s.active_objects;
  EXPECT_EQ(active, live.size());
  for (auto& [addr, entry] : live) k->Free(reinterpret_cast<void*>(addr));
  for (const SlabCacheStats& s : k->Stats()) EXPECT_EQ(s.active_objects, 0u) << s.name;
  k.reset();
  ExpectWhole(*pool);
}

TEST(KmallocTest, NamedNodeOnTwoNodes) {
  auto pool = MakePool(NumaTopology::TwoNodeForTest(), 8 * kMiB);
  auto k = *KmallocCaches::Create(pool.get());
  std::vector<void*> objects;
  for (std::size_t size : {8u, 100u, 1000u, 8000u}) {
    for (int node = 0; node < 2; ++node) {
      void* p = k->Allocate(size, NodeId{node});
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(pool->NodeOf(*pool->FrameOf(p)), NodeId{node}) << size;
      objects.push_back(p);
    }
  }
  // Freed by another thread: back to their own node's slabs.
  std::thread([&] {
    for (void* p : objects) k->Free(p);
  }).join();
  for (const SlabCacheStats& s : k->Stats()) EXPECT_EQ(s.active_objects, 0u) << s.name;
  k.reset();
  ExpectWhole(*pool);
}

TEST(KmallocTest, SlabInfoListsTheThirteenCaches) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  auto k = *KmallocCaches::Create(pool.get());
  void* p = k->Allocate(5000);
  const std::string info = k->SlabInfo();
  EXPECT_NE(info.find("kmalloc-8k             1      4   8192    4    8"), std::string::npos)
      << info;
  EXPECT_NE(info.find("kmalloc-8  "), std::string::npos) << info;
  EXPECT_EQ(std::count(info.begin(), info.end(), '\n'), 2 + KmallocCaches::kNumClasses);
  k->Free(p);
}

TEST(KmallocTest, DebugClassesArePoisonedAndCheckTheirRedzones) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  KmallocOptions options;
  options.debug = true;
  auto k = *KmallocCaches::Create(pool.get(), options);
  auto* p = static_cast<unsigned char*>(k->Allocate(90));  // kmalloc-96
  for (int i = 0; i < 96; ++i) ASSERT_EQ(p[i], kPoisonInUse);
  std::memset(p, 0, 96);  // the class slack is the caller's (ksize)
  k->Free(p);
  auto* q = static_cast<unsigned char*>(k->Allocate(4096));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(q) % 4096, 0u) << "natural alignment in debug too";
  k->Free(q);
}

class KmallocDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(KmallocDeathTest, KfreeOfAForeignPointerIsFatal) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  auto k = *KmallocCaches::Create(pool.get());
  auto other = *SlabCache::Create(pool.get(), "range_desc", 64);
  void* q = other->Allocate();
  int on_stack = 0;
  EXPECT_DEATH(k->Free(&on_stack), "kfree of 0x[0-9a-f]+: not a kmalloc object \\(outside");
  EXPECT_DEATH(k->Free(q), "kfree of .*belongs to slab cache 'range_desc'");
  const std::optional<FrameNumber> frame = pool->Allocate(Order{0}, NodeId{0});
  EXPECT_DEATH(k->Free(pool->FrameAddress(*frame)), "kfree of .*not part of a slab");
  pool->Free(*frame, Order{0});
  other->Free(q);
}

TEST_F(KmallocDeathTest, DebugOverflowPastTheClassIsFatal) {
  auto pool = MakePool(NumaTopology::Detect(), 4 * kMiB);
  KmallocOptions options;
  options.debug = true;
  auto k = *KmallocCaches::Create(pool.get(), options);
  auto* p = static_cast<char*>(k->Allocate(90));
  p[96] = 1;
  EXPECT_DEATH(k->Free(p), "'kmalloc-96': write past the end of allocated object");
  p[96] = static_cast<char>(kRedActive);
  k->Free(p);
}

}  // namespace
}  // namespace uvmem::internal
