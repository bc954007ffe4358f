// swap_device.h — SwapDevice: 4 KiB slots on a backing file, with clusters, reference
// counts and a checksum per slot.
//
// The device is the kernel's swap area (mm/swapfile.c) in miniature:
//   - a slot is a 4 KiB page of the file, named by SwapSlot (swp_entry_t's offset);
//   - slots are handed out from clusters of kClusterSlots consecutive slots, one cluster
//     at a time per allocation stream, so a reclaim batch lands sequentially on disk (the
//     kernel's swap cluster allocator, mm/swapfile.c `scan_swap_map_try_ssd_cluster`);
//     free clusters are taken before partly used ones are scanned;
//   - every slot has a reference count (the kernel's swap_map): the page that wrote it
//     holds one, and clones / forked children that share the page hold more; the slot is
//     free again when the count reaches zero;
//   - every slot records the XXH3-64 checksum (libxxhash) of the bytes written to it,
//     verified on every read: a mismatch is reported, never returned as data.
// I/O is synchronous preadv/pwritev on the calling thread: the reclaimer threads write,
// fault threads read; consecutive slots of one request go out as one system call.
//
// The slot map and checksums live in memory mapped directly (never the heap uvmem serves).
//
// Thread-safety: every method is thread-safe. Writing and reading one slot at once is the
// caller's business (the page table keeps them apart).
#ifndef UVMEM_VM_SWAP_DEVICE_H_
#define UVMEM_VM_SWAP_DEVICE_H_

#include <absl/status/statusor.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "platform/mutex.h"
#include "platform/swap_file.h"

namespace uvmem::internal {

struct SwapSlot {
  std::uint64_t value = 0;
  friend bool operator==(SwapSlot a, SwapSlot b) = default;
};

struct SwapDeviceOptions {
  // A directory (an unlinked O_TMPFILE file is made in it), an existing regular file or a
  // block device. Empty: $TMPDIR, else /tmp.
  std::string path;
  // Capacity in bytes (rounded down to slots; at least one cluster). 0: the size of an
  // existing file or device; for a directory, `default_bytes`.
  std::uint64_t max_bytes = 0;
  std::uint64_t default_bytes = std::uint64_t{256} << 20;
  int mode = 0600;  // of a file the device creates
};

// Cumulative counters (slots_* are current).
struct SwapDeviceStats {
  std::uint64_t slots_total = 0;
  std::uint64_t slots_used = 0;
  std::uint64_t slots_shared = 0;     // used slots with two or more references (clones)
  std::uint64_t bytes_written = 0;
  std::uint64_t bytes_read = 0;
  std::uint64_t write_errors = 0;     // pages whose write failed
  std::uint64_t read_errors = 0;      // pages whose read failed
  std::uint64_t checksum_errors = 0;  // pages read back with a wrong checksum
};

class SwapDevice {
 public:
  static constexpr std::uint64_t kClusterSlots = 256;  // 1 MiB, as SWAPFILE_CLUSTER

  // Opens or creates the backing file. Errors: InvalidArgument (a path that is not a
  // directory, regular file or block device; a capacity under one cluster),
  // PermissionDenied / NotFound / ResourceExhausted as the open(2) errno says, with the
  // path in the message.
  static absl::StatusOr<std::unique_ptr<SwapDevice>> Open(const SwapDeviceOptions& options);
  ~SwapDevice();
  SwapDevice(const SwapDevice&) = delete;
  SwapDevice& operator=(const SwapDevice&) = delete;

  // Allocates up to `count` free slots into out[0..n), consecutive where a cluster allows,
  // each with reference count 1. Returns n (0: the device is full).
  std::size_t Allocate(std::size_t count, SwapSlot* out);
  // Adds a reference to a used slot (a clone or child shares the page).
  void Ref(SwapSlot slot);
  // Drops a reference; the slot is free at zero. Fatal on a free slot (double free).
  void Unref(SwapSlot slot);
  std::uint32_t RefCount(SwapSlot slot) const;

  // Defers freeing: until the matching ReleaseHeldFrees, a slot whose last reference goes
  // keeps its bytes and is not handed out again (a forked child is still copying them,
  // fork_copy.h). Nests. False when the deferral list cannot be mapped (nothing held).
  bool HoldFrees();
  void ReleaseHeldFrees();

  // Writes pages[i] (4 KiB each, readable) to slots[i], i < count, and records their
  // checksums. Runs of consecutive slots are one pwritev each. errors[i] is 0 or the
  // errno of the failed write (ENOSPC, EIO, ...); a failed slot keeps its reference and
  // holds nothing valid. Returns the number of pages that failed.
  std::size_t Write(const SwapSlot* slots, const void* const* pages, std::size_t count,
                    int* errors);
  // Reads slots[i] into pages[i] and verifies each checksum. errors[i] is 0, the errno of
  // a failed read (EIO, or EIO for a short read), or EBADMSG for a checksum mismatch.
  // Returns the number of pages that failed.
  std::size_t Read(const SwapSlot* slots, void* const* pages, std::size_t count, int* errors);

  // True when the XXH3-64 of `page` (4 KiB) equals the checksum recorded when `slot` was
  // written: the slot holds these bytes (up to a 2^-64 collision). No I/O.
  bool Matches(SwapSlot slot, const void* page) const;

  SwapDeviceStats Stats() const;
  std::uint64_t slots_total() const;
  // "<dir> (O_TMPFILE)", or the path of the file or device.
  const std::string& description() const;
  // Bytes of the slot map and checksum table.
  std::uint64_t metadata_bytes() const;

  // Fault injection for tests (platform/swap_file.h): the file layer fails or corrupts
  // I/O as told.
  SwapFileFaults& faults();

 private:
  struct Impl;
  explicit SwapDevice(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_SWAP_DEVICE_H_
