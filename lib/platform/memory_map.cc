#include "platform/memory_map.h"

#include <numaif.h>
#include <sys/mman.h>

#include <absl/status/status.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "platform/report.h"

namespace uvmem::internal {
namespace {

absl::Status ErrnoStatus(int err, std::string_view what) {
  std::string message = fmt::format("{}: {}", what, std::strerror(err));
  switch (err) {
    case ENOMEM:
      return absl::ResourceExhaustedError(message);
    case EINVAL:
      return absl::InvalidArgumentError(message);
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

bool PageAligned(const void* addr, std::size_t length) {
  return (reinterpret_cast<std::uintptr_t>(addr) % kPageSize) == 0 && length % kPageSize == 0 &&
         length > 0;
}

// The shared rule of this file: page-aligned address, length a positive multiple of 4 KiB.
absl::Status CheckRange(const void* addr, std::size_t length, std::string_view what) {
  if (PageAligned(addr, length)) return absl::OkStatus();
  return absl::InvalidArgumentError(fmt::format(
      "{}: address {} / length {} bytes not page aligned, or length 0", what, addr, length));
}

// A node mask for mbind(2): kMaxNodes bits. maxnode passed to the kernel is kMaxNodes + 1
// because the kernel drops the last bit (the classic mbind off-by-one, as libnuma does).
constexpr int kMaxNodes = 1024;
constexpr int kBitsPerWord = 8 * sizeof(unsigned long);
using NodeMask = unsigned long[kMaxNodes / kBitsPerWord];

}  // namespace

void* ReserveAnonymousNoAlloc(std::size_t length_bytes, std::size_t alignment_bytes) {
  UVMEM_DCHECK(length_bytes != 0 && length_bytes % kPageSize == 0);
  UVMEM_DCHECK(alignment_bytes >= kPageSize && (alignment_bytes & (alignment_bytes - 1)) == 0);
  const std::size_t padded = length_bytes + alignment_bytes - kPageSize;
  void* raw = ::mmap(nullptr, padded, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  auto base = reinterpret_cast<std::uintptr_t>(raw);
  auto aligned = (base + alignment_bytes - 1) & ~(alignment_bytes - 1);
  // Trim the head and tail so exactly one aligned VMA remains.
  if (aligned > base) ::munmap(raw, aligned - base);
  const std::uintptr_t end = aligned + length_bytes;
  if (base + padded > end) ::munmap(reinterpret_cast<void*>(end), base + padded - end);
  return reinterpret_cast<void*>(aligned);
}

absl::StatusOr<void*> ReserveAnonymous(std::size_t length_bytes, std::size_t alignment_bytes) {
  if (length_bytes == 0 || length_bytes % kPageSize != 0) {
    return absl::InvalidArgumentError(
        fmt::format("reserve: length {} bytes is not a positive multiple of 4096", length_bytes));
  }
  if (alignment_bytes < kPageSize || (alignment_bytes & (alignment_bytes - 1)) != 0) {
    return absl::InvalidArgumentError(
        fmt::format("reserve: alignment {} is not a power of two >= 4096", alignment_bytes));
  }
  if (length_bytes > SIZE_MAX - alignment_bytes) {
    return absl::InvalidArgumentError(fmt::format(
        "reserve: length {} plus alignment {} bytes overflows", length_bytes, alignment_bytes));
  }
  void* memory = ReserveAnonymousNoAlloc(length_bytes, alignment_bytes);
  if (memory == nullptr) {
    return ErrnoStatus(errno,
                       fmt::format("mmap of {} bytes", length_bytes + alignment_bytes - kPageSize));
  }
  return memory;
}

absl::Status ReleaseMapping(void* addr, std::size_t length_bytes) {
  if (absl::Status s = CheckRange(addr, length_bytes, "munmap"); !s.ok()) return s;
  if (::munmap(addr, length_bytes) != 0) return ErrnoStatus(errno, "munmap");
  return absl::OkStatus();
}

absl::Status ProtectNone(void* addr, std::size_t length_bytes) {
  if (absl::Status s = CheckRange(addr, length_bytes, "mprotect(NONE)"); !s.ok()) return s;
  if (::mprotect(addr, length_bytes, PROT_NONE) != 0) return ErrnoStatus(errno, "mprotect(NONE)");
  return absl::OkStatus();
}

absl::Status ProtectReadWrite(void* addr, std::size_t length_bytes) {
  if (absl::Status s = CheckRange(addr, length_bytes, "mprotect(READ|WRITE)"); !s.ok()) return s;
  if (::mprotect(addr, length_bytes, PROT_READ | PROT_WRITE) != 0) {
    return ErrnoStatus(errno, "mprotect(READ|WRITE)");
  }
  return absl::OkStatus();
}

int DiscardPages(void* addr, std::size_t length_bytes) {
  // madvise would round a partial length up and drop more than asked.
  if (!PageAligned(addr, length_bytes)) return EINVAL;
  return ::madvise(addr, length_bytes, MADV_DONTNEED) == 0 ? 0 : errno;
}

int PopulateWrite(void* addr, std::size_t length_bytes) {
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  return ::madvise(addr, length_bytes, MADV_POPULATE_WRITE) == 0 ? 0 : errno;
}

absl::Status AdviseHugePages(void* addr, std::size_t length_bytes, bool enable) {
  if (absl::Status s = CheckRange(addr, length_bytes, "madvise"); !s.ok()) return s;
  if (::madvise(addr, length_bytes, enable ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) {
    return ErrnoStatus(errno, enable ? "madvise(MADV_HUGEPAGE)" : "madvise(MADV_NOHUGEPAGE)");
  }
  return absl::OkStatus();
}

namespace {
// mbind of a stretch to one node with `mode` (MPOL_BIND, MPOL_PREFERRED).
absl::Status MbindOneNode(void* addr, std::size_t length_bytes, NodeId node, int mode,
                          unsigned flags, const char* what) {
  if (absl::Status s = CheckRange(addr, length_bytes, "mbind"); !s.ok()) return s;
  if (node.value < 0 || node.value >= kMaxNodes) {
    return absl::InvalidArgumentError(fmt::format("mbind: node {} out of range", node.value));
  }
  NodeMask mask = {};
  mask[node.value / kBitsPerWord] |= 1UL << (node.value % kBitsPerWord);
  if (::mbind(addr, length_bytes, mode, mask, kMaxNodes + 1, flags) != 0) {
    return ErrnoStatus(errno, fmt::format("mbind({}, node {})", what, node.value));
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status BindToNode(void* addr, std::size_t length_bytes, NodeId node) {
  return MbindOneNode(addr, length_bytes, node, MPOL_BIND, MPOL_MF_STRICT | MPOL_MF_MOVE,
                      "MPOL_BIND");
}

absl::Status PreferNode(void* addr, std::size_t length_bytes, NodeId node) {
  return MbindOneNode(addr, length_bytes, node, MPOL_PREFERRED, 0, "MPOL_PREFERRED");
}

absl::Status InterleaveOverNodes(void* addr, std::size_t length_bytes,
                                 absl::Span<const NodeId> nodes) {
  if (absl::Status s = CheckRange(addr, length_bytes, "mbind"); !s.ok()) return s;
  if (nodes.empty()) return absl::InvalidArgumentError("mbind(MPOL_INTERLEAVE): no nodes");
  NodeMask mask = {};
  for (NodeId node : nodes) {
    if (node.value < 0 || node.value >= kMaxNodes) {
      return absl::InvalidArgumentError(fmt::format("mbind: node {} out of range", node.value));
    }
    mask[node.value / kBitsPerWord] |= 1UL << (node.value % kBitsPerWord);
  }
  if (::mbind(addr, length_bytes, MPOL_INTERLEAVE, mask, kMaxNodes + 1, 0) != 0) {
    return ErrnoStatus(errno, "mbind(MPOL_INTERLEAVE)");
  }
  return absl::OkStatus();
}

int PreferPagesOnNode(void* addr, std::size_t length_bytes, NodeId node) {
  if (node.value < 0 || node.value >= kMaxNodes) return EINVAL;
  NodeMask mask = {};
  mask[node.value / kBitsPerWord] |= 1UL << (node.value % kBitsPerWord);
  return ::mbind(addr, length_bytes, MPOL_PREFERRED, mask, kMaxNodes + 1, 0) == 0 ? 0 : errno;
}

int GetThisThreadMempolicy(ThreadMempolicy* out) {
  static_assert(sizeof(out->nodes) * 8 == kMaxNodes);
  return ::get_mempolicy(&out->mode, out->nodes, kMaxNodes, nullptr, 0) == 0 ? 0 : errno;
}

int SetThisThreadMempolicy(const ThreadMempolicy& policy) {
  // MPOL_DEFAULT takes no mask; the others take the saved one.
  const bool no_mask = policy.mode == MPOL_DEFAULT;
  return ::set_mempolicy(policy.mode, no_mask ? nullptr : policy.nodes,
                         no_mask ? 0 : kMaxNodes + 1) == 0
             ? 0
             : errno;
}

int PreferNodeForThisThread(NodeId node) {
  if (node.value < 0 || node.value >= kMaxNodes) return EINVAL;
  NodeMask mask = {};
  mask[node.value / kBitsPerWord] |= 1UL << (node.value % kBitsPerWord);
  return ::set_mempolicy(MPOL_PREFERRED, mask, kMaxNodes + 1) == 0 ? 0 : errno;
}

absl::Status QueryPageNodes(absl::Span<void* const> pages, absl::Span<int> out_status) {
  if (pages.size() != out_status.size()) {
    return absl::InvalidArgumentError("move_pages: pages and status differ in size");
  }
  if (pages.empty()) return absl::OkStatus();
  // move_pages(2) only reads the array (its prototype lacks the const): no copy, so no
  // allocation here.
  long rc = ::move_pages(0, pages.size(), const_cast<void**>(pages.data()), nullptr,
                         out_status.data(), 0);
  if (rc < 0) return ErrnoStatus(errno, "move_pages(query)");
  return absl::OkStatus();
}

void TouchPages(void* addr, std::size_t length_bytes) {
  auto* p = static_cast<volatile unsigned char*>(addr);
  for (std::size_t off = 0; off < length_bytes; off += kPageSize) p[off] = p[off];
}

bool IsPageResident(const void* page) {
  unsigned char vec = 0;
  return mincore(const_cast<void*>(page), 4096, &vec) == 0 && (vec & 1) != 0;
}

}  // namespace uvmem::internal
