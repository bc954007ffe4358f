// Range::Discard and Range::Populate (uvmem/runtime.h): frames given back and filled
// without faults, checked through the range's contents and counters.
#include <gtest/gtest.h>

#include <cstring>

#include "uvmem/runtime.h"

namespace {

constexpr std::size_t kPage = 4096;

class RangeDiscardPopulateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto rt = uvmem::Runtime::Create({.pool_bytes_total = 64 << 20});
    ASSERT_TRUE(rt.ok()) << rt.status();
    runtime_ = std::move(*rt);
  }
  std::unique_ptr<uvmem::Runtime> runtime_;
};

TEST_F(RangeDiscardPopulateTest, DiscardedPagesReadZeroAndLeaveTheResidentCount) {
  auto range = runtime_->Reserve(256 * kPage);
  ASSERT_TRUE(range.ok());
  auto* bytes = static_cast<unsigned char*>(range->data());
  std::memset(bytes, 0xab, 256 * kPage);
  const uvmem::RangeStats before = range->Stats();
  ASSERT_EQ(before.resident_pages, 256u);
  ASSERT_TRUE(range->Discard(64 * kPage, 128 * kPage).ok());
  const uvmem::RangeStats after = range->Stats();
  EXPECT_EQ(after.resident_pages, 128u);
  EXPECT_EQ(after.pages_discarded, 128u);
  for (std::size_t i = 0; i < 256 * kPage; i += 512) {
    const bool discarded = i >= 64 * kPage && i < 192 * kPage;
    ASSERT_EQ(bytes[i], discarded ? 0 : 0xab) << "byte " << i;
  }
  // The discarded pages fault again and are filled with zeros, then hold new data.
  std::memset(bytes + 64 * kPage, 0x5c, kPage);
  EXPECT_EQ(bytes[64 * kPage + 100], 0x5c);
  EXPECT_GT(range->Stats().faults, before.faults);
  ASSERT_TRUE(range->Release().ok());
}

TEST_F(RangeDiscardPopulateTest, PopulatedPagesAreResidentZeroAndNeedNoFault) {
  auto range = runtime_->Reserve(512 * kPage);
  ASSERT_TRUE(range.ok());
  ASSERT_TRUE(range->Populate(0, 100 * kPage).ok());
  const uvmem::RangeStats filled = range->Stats();
  EXPECT_EQ(filled.resident_pages, 100u);
  EXPECT_EQ(filled.pages_populated, 100u);
  EXPECT_EQ(filled.faults, 0u);
  auto* bytes = static_cast<unsigned char*>(range->data());
  for (std::size_t i = 0; i < 100 * kPage; i += kPage) ASSERT_EQ(bytes[i], 0) << i;
  std::memset(bytes, 7, 100 * kPage);
  EXPECT_EQ(range->Stats().faults, 0u);  // every page was there already
  // Populating present pages changes nothing.
  ASSERT_TRUE(range->Populate(0, 100 * kPage).ok());
  EXPECT_EQ(bytes[5 * kPage], 7);
  EXPECT_EQ(range->Stats().resident_pages, 100u);
  ASSERT_TRUE(range->Release().ok());
}

TEST_F(RangeDiscardPopulateTest, BadStretchesAreRefused) {
  auto range = runtime_->Reserve(16 * kPage);
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->Discard(1, kPage).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(range->Discard(8 * kPage, 16 * kPage).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(range->Populate(0, 17 * kPage).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(range->Release().ok());
  EXPECT_EQ(range->Discard(0, kPage).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(range->Populate(0, kPage).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
