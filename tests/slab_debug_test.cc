// Tests of debug caches (slub_debug): poison and redzone bytes are where the layout
// says, and every misuse is reported with the cache name, the address and the cause.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "platform/numa_topology.h"
#include "slab/slab_cache.h"
#include "slab/slab_debug.h"

namespace uvmem::internal {
namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

class SlabDebugTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    FramePoolOptions options;
    options.bytes_per_node = 4 * kMiB;
    auto pool = FramePool::Create(options, NumaTopology::Detect());
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = std::move(*pool);
  }

  std::unique_ptr<SlabCache> Make(std::string_view name, std::size_t size,
                                  std::size_t align = 0, void (*ctor)(void*) = nullptr) {
    SlabCacheOptions options;
    options.debug = true;
    options.constructor = ctor;
    auto cache = SlabCache::Create(pool_.get(), name, size, align, options);
    EXPECT_TRUE(cache.ok()) << cache.status();
    return std::move(*cache);
  }

  static bool All(const unsigned char* p, std::size_t n, unsigned char value) {
    for (std::size_t i = 0; i < n; ++i) {
      if (p[i] != value) return false;
    }
    return true;
  }

  std::unique_ptr<FramePool> pool_;
};

TEST_F(SlabDebugTest, NewObjectsArePoisonedWith5aAndFreeOnesWith6b) {
  auto cache = Make("poison", 40);
  const SlabLayout& l = cache->layout();
  auto* p = static_cast<unsigned char*>(cache->Allocate());
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(All(p, 40, kPoisonInUse)) << "new objects read 0x5a";
  EXPECT_TRUE(All(p - l.object_offset_bytes, l.object_offset_bytes, kRedActive));
  EXPECT_TRUE(All(p + 40, l.red_right_bytes, kRedActive));
  std::memset(p, 0x11, 40);  // the whole object is the caller's
  cache->Free(p);
  // The memory stays in the pool (not unmapped), so the freed bytes can be looked at.
  EXPECT_TRUE(All(p, 39, kPoisonFree));
  EXPECT_EQ(p[39], kPoisonEnd);
  EXPECT_TRUE(All(p + 40, l.red_right_bytes, kRedInactive));
  // Reuse passes the poison check and repoisons.
  auto* q = static_cast<unsigned char*>(cache->Allocate());
  EXPECT_EQ(q, p) << "LIFO reuse";
  EXPECT_TRUE(All(q, 40, kPoisonInUse));
  cache->Free(q);
}

TEST_F(SlabDebugTest, ConstructorObjectsAreNotPoisonedButHaveRedzones) {
  auto ctor = [](void* object) { std::memset(object, 0x77, 24); };
  auto cache = Make("ctor_debug", 24, 8, ctor);
  auto* p = static_cast<unsigned char*>(cache->Allocate());
  EXPECT_TRUE(All(p, 24, 0x77));
  EXPECT_TRUE(All(p + 24, cache->layout().red_right_bytes, kRedActive));
  cache->Free(p);
  EXPECT_TRUE(All(p, 24, 0x77)) << "constructed state survives a free";
}

TEST_F(SlabDebugTest, DoubleFreeIsFatal) {
  auto cache = Make("dbl", 64);
  void* a = cache->Allocate();
  void* b = cache->Allocate();
  cache->Free(a);
  cache->Free(b);  // `a` is no longer the freelist head: still caught (by its tag)
  EXPECT_DEATH(cache->Free(a), "slab cache 'dbl': double free of object 0x[0-9a-f]+ \\(size 64");
}

TEST_F(SlabDebugTest, WritePastTheEndIsFoundAtFree) {
  auto cache = Make("overflow", 24);
  auto* p = static_cast<char*>(cache->Allocate());
  p[24] = 'X';  // one byte past the end
  EXPECT_DEATH(cache->Free(p),
               "slab cache 'overflow': write past the end of allocated object 0x[0-9a-f]+ "
               "\\(size 24 bytes\\): redzone byte at object\\+24 is 0x58, expected 0xcc");
  p[24] = static_cast<char>(kRedActive);
  cache->Free(p);
}

TEST_F(SlabDebugTest, WriteBeforeTheStartIsFoundAtFree) {
  auto cache = Make("underflow", 32);
  auto* p = static_cast<char*>(cache->Allocate());
  p[-1] = 0;
  EXPECT_DEATH(cache->Free(p), "'underflow': write before the start of allocated object .* "
                               "object-1 is 0x00");
  p[-1] = static_cast<char>(kRedActive);
  cache->Free(p);
}

TEST_F(SlabDebugTest, UseAfterFreeIsFoundAtTheNextAllocation) {
  auto cache = Make("uaf", 48);
  auto* p = static_cast<char*>(cache->Allocate());
  cache->Free(p);
  p[5] = 1;  // write to a free object
  EXPECT_DEATH((void)cache->Allocate(),
               "'uaf': use after free: free object .* byte at object\\+5 is 0x01, expected "
               "poison 0x6b");
  p[5] = static_cast<char>(kPoisonFree);
  cache->Free(cache->Allocate());
}

TEST_F(SlabDebugTest, ForeignPointersAreFatal) {
  auto cache = Make("mine", 64);
  auto other = Make("theirs", 64);
  auto* p = static_cast<char*>(cache->Allocate());
  void* q = other->Allocate();
  int on_stack = 0;
  EXPECT_DEATH(cache->Free(&on_stack), "'mine': free of 0x[0-9a-f]+: not a slab object "
                                       "\\(outside the frame pool\\)");
  EXPECT_DEATH(cache->Free(p + 1), "'mine': free of .*pointer into the middle of an object "
                                   "\\(offset 1 of object");
  EXPECT_DEATH(cache->Free(p + 66), "'mine': free of .*not the start of an object \\(it is 2 "
                                    "bytes past the end of object");  // in the right redzone
  EXPECT_DEATH(cache->Free(p - 1), "'mine': free of .*left redzone");
  EXPECT_DEATH(cache->Free(q), "'mine': free of .*belongs to slab cache 'theirs'");
  const std::optional<FrameNumber> frame = pool_->Allocate(Order{0}, NodeId{0});
  EXPECT_DEATH(cache->Free(static_cast<char*>(pool_->FrameAddress(*frame)) + 64),
               "'mine': free of .*not a slab object \\(frame [0-9]+ is not part of a slab\\)");
  pool_->Free(*frame, Order{0});
  // The tail of a slab, past its last object.
  const SlabLayout& l = cache->layout();
  if (l.waste_bytes >= 8) {
    char* base = p - l.object_offset_bytes;  // first object of a fresh slab
    EXPECT_DEATH(cache->Free(base + l.objects_per_slab * l.slot_bytes),
                 "'mine': free of .*unused tail of the slab");
  }
  cache->Free(p);
  other->Free(q);
}

TEST_F(SlabDebugTest, DestroyWithLiveObjectsIsFatal) {
  auto cache = Make("live", 64);
  void* p = cache->Allocate();
  EXPECT_DEATH(cache.reset(), "'live': destroyed with 1 objects remaining in 1 slabs");
  cache->Free(p);
}

}  // namespace
}  // namespace uvmem::internal
