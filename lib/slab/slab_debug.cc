#include "slab/slab_debug.h"

#include <cstring>

#include "platform/report.h"

namespace uvmem::internal {
namespace {

std::uint64_t LoadTag(const SlabLayout& l, const char* object) {
  std::uint64_t tag;
  std::memcpy(&tag, object + l.tag_offset_bytes, sizeof(tag));
  return tag;
}

void StoreTag(const SlabLayout& l, char* object, std::uint64_t tag) {
  std::memcpy(object + l.tag_offset_bytes, &tag, sizeof(tag));
}

// Index of the first byte in [begin, begin + n) that differs from `value`, or -1.
long FirstMismatch(const char* begin, std::size_t n, std::uint8_t value) {
  for (std::size_t i = 0; i < n; ++i) {
    if (static_cast<std::uint8_t>(begin[i]) != value) return static_cast<long>(i);
  }
  return -1;
}

char* LeftRedzone(const SlabLayout& l, char* object) { return object - l.object_offset_bytes; }
char* RightRedzone(const SlabLayout& l, char* object) { return object + l.object_size_bytes; }

void SetRedzones(const SlabLayout& l, char* object, std::uint8_t value) {
  std::memset(LeftRedzone(l, object), value, l.object_offset_bytes);
  std::memset(RightRedzone(l, object), value, l.red_right_bytes);
}

void Poison(const SlabLayout& l, char* object) {
  std::memset(object, kPoisonFree, l.object_size_bytes - 1);
  object[l.object_size_bytes - 1] = static_cast<char>(kPoisonEnd);
}

// Reports the first redzone byte that is not `value`, naming the side; returns if both
// are intact. `state` is "allocated" or "free".
void CheckRedzones(const SlabLayout& l, std::string_view cache, char* object,
                   std::uint8_t value, const char* state) {
  const long right = FirstMismatch(RightRedzone(l, object), l.red_right_bytes, value);
  if (right >= 0) {
    ReportFatal(
        "slab cache '{}': write past the end of {} object {} (size {} bytes): redzone byte "
        "at object+{} is {:#04x}, expected {:#04x}",
        cache, state, static_cast<void*>(object), l.object_size_bytes,
        l.object_size_bytes + static_cast<std::size_t>(right),
        static_cast<std::uint8_t>(RightRedzone(l, object)[right]), value);
  }
  const long left = FirstMismatch(LeftRedzone(l, object), l.object_offset_bytes, value);
  if (left >= 0) {
    ReportFatal(
        "slab cache '{}': write before the start of {} object {} (size {} bytes): redzone "
        "byte at object-{} is {:#04x}, expected {:#04x}",
        cache, state, static_cast<void*>(object), l.object_size_bytes,
        l.object_offset_bytes - static_cast<std::size_t>(left),
        static_cast<std::uint8_t>(LeftRedzone(l, object)[left]), value);
  }
}

}  // namespace

void DebugInitFreeObject(const SlabLayout& l, char* object) {
  SetRedzones(l, object, kRedInactive);
  if (l.poison) Poison(l, object);
  StoreTag(l, object, kTagFree);
}

void DebugCheckAllocate(const SlabLayout& l, std::string_view cache, char* object) {
  const std::uint64_t tag = LoadTag(l, object);
  if (tag != kTagFree) {
    CheckRedzones(l, cache, object, kRedInactive, "free");
    ReportFatal("slab cache '{}': free object {} has a corrupted tag {:#018x} (freelist or "
                "metadata overwritten)",
                cache, static_cast<void*>(object), tag);
  }
  CheckRedzones(l, cache, object, kRedInactive, "free");
  if (l.poison) {
    long bad = FirstMismatch(object, l.object_size_bytes - 1, kPoisonFree);
    if (bad < 0 && static_cast<std::uint8_t>(object[l.object_size_bytes - 1]) != kPoisonEnd) {
      bad = static_cast<long>(l.object_size_bytes - 1);
    }
    if (bad >= 0) {
      ReportFatal(
          "slab cache '{}': use after free: free object {} (size {} bytes) was written: byte "
          "at object+{} is {:#04x}, expected poison {:#04x}",
          cache, static_cast<void*>(object), l.object_size_bytes, bad,
          static_cast<std::uint8_t>(object[bad]),
          static_cast<std::size_t>(bad) == l.object_size_bytes - 1 ? kPoisonEnd : kPoisonFree);
    }
    std::memset(object, kPoisonInUse, l.object_size_bytes);
  }
  SetRedzones(l, object, kRedActive);
  StoreTag(l, object, kTagAllocated);
}

void DebugCheckFree(const SlabLayout& l, std::string_view cache, char* object) {
  const std::uint64_t tag = LoadTag(l, object);
  if (tag == kTagFree) {
    ReportFatal("slab cache '{}': double free of object {} (size {} bytes): it is already free",
                cache, static_cast<void*>(object), l.object_size_bytes);
  }
  CheckRedzones(l, cache, object, kRedActive, "allocated");
  if (tag != kTagAllocated) {
    ReportFatal("slab cache '{}': free of object {}: its tag {:#018x} is neither allocated nor "
                "free (metadata after the redzone overwritten)",
                cache, static_cast<void*>(object), tag);
  }
  if (l.poison) Poison(l, object);
  SetRedzones(l, object, kRedInactive);
  StoreTag(l, object, kTagFree);
}

}  // namespace uvmem::internal
