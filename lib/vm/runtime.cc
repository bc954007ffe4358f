// The public uvmem::Runtime and uvmem::Range: thin handles over RuntimeImpl.
#include "uvmem/runtime.h"

#include <fmt/format.h>

#include "platform/report.h"
#include "vm/runtime_impl.h"

namespace uvmem {

Range::Range(Range&& other) noexcept : runtime_(other.runtime_), range_(other.range_) {
  other.runtime_ = nullptr;
  other.range_ = nullptr;
}

Range& Range::operator=(Range&& other) noexcept {
  if (this != &other) {
    if (range_) {
      if (absl::Status status = Release(); !status.ok()) {
        internal::ReportWarning("releasing a range on assignment failed: {}",
                                std::string(status.message()));
      }
    }
    runtime_ = other.runtime_;
    range_ = other.range_;
    other.runtime_ = nullptr;
    other.range_ = nullptr;
  }
  return *this;
}

Range::~Range() {
  if (range_ == nullptr) return;
  if (absl::Status status = Release(); !status.ok()) {
    internal::ReportWarning("releasing a range in its destructor failed: {}",
                            std::string(status.message()));
  }
}

void* Range::data() const { return range_ ? reinterpret_cast<void*>(range_->start()) : nullptr; }

std::size_t Range::size() const { return range_ ? range_->length_bytes() : 0; }

absl::Status Range::Release() {
  if (range_ == nullptr) return absl::FailedPreconditionError("Release: the range was released");
  absl::Status status = runtime_->Release(range_);
  if (status.ok() || status.code() == absl::StatusCode::kFailedPrecondition) {
    range_ = nullptr;
    runtime_ = nullptr;
  }  // else the range is still live and served: the handle keeps it
  return status;
}

RangeStats Range::Stats() const { return range_ ? runtime_->StatsOf(*range_) : RangeStats{}; }

absl::Status Range::Discard(std::size_t offset_bytes, std::size_t length_bytes) {
  if (range_ == nullptr) return absl::FailedPreconditionError("Discard: the range was released");
  if ((offset_bytes | length_bytes) % kPageSize != 0) {
    return absl::InvalidArgumentError(
        fmt::format("Discard: offset {} and length {} must be multiples of 4096 bytes",
                    offset_bytes, length_bytes));
  }
  auto freed = runtime_->Discard(*range_, offset_bytes >> kPageShift, length_bytes >> kPageShift);
  return freed.ok() ? absl::OkStatus() : freed.status();
}

absl::StatusOr<Range> Range::Clone(std::string_view name) const {
  if (range_ == nullptr) return absl::FailedPreconditionError("Clone: the range was released");
  auto clone = runtime_->Clone(*range_, name);
  if (!clone.ok()) return clone.status();
  return Range(runtime_, *clone);
}

absl::Status Range::Populate(std::size_t offset_bytes, std::size_t length_bytes) {
  if (range_ == nullptr) {
    return absl::FailedPreconditionError("Populate: the range was released");
  }
  if ((offset_bytes | length_bytes) % kPageSize != 0) {
    return absl::InvalidArgumentError(
        fmt::format("Populate: offset {} and length {} must be multiples of 4096 bytes",
                    offset_bytes, length_bytes));
  }
  auto claimed =
      runtime_->Populate(*range_, offset_bytes >> kPageShift, length_bytes >> kPageShift);
  return claimed.ok() ? absl::OkStatus() : claimed.status();
}

Runtime::Runtime(std::unique_ptr<internal::RuntimeImpl> impl) : impl_(std::move(impl)) {}
Runtime::~Runtime() = default;

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Create(const RuntimeOptions& options) {
  auto impl = internal::RuntimeImpl::Create(options);
  if (!impl.ok()) return impl.status();
  return std::unique_ptr<Runtime>(new Runtime(std::move(*impl)));
}

absl::StatusOr<Range> Runtime::Reserve(std::size_t length_bytes, const RangeOptions& options) {
  auto range = impl_->Reserve(length_bytes, options);
  if (!range.ok()) return range.status();
  return Range(impl_.get(), *range);
}

RuntimeStats Runtime::Stats() const { return impl_->Stats(); }
std::size_t Runtime::fault_around_pages() const { return impl_->fault_around_pages(); }
bool Runtime::uses_move() const { return impl_->uses_move(); }

}  // namespace uvmem
