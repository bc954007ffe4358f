// swap_file.h — SwapFile: the backing store of the swap device, and the only code in uvmem
// that opens, sizes, reads or writes it (the vm layer's SwapDevice sits on top).
//
//   SwapFileFaults   test-only fault injection: failed or corrupted page I/O on demand.
//   SwapFile         a move-only owner of one fd: an unlinked O_TMPFILE file in a
//                    directory, an existing regular file, or a block device, used as an
//                    array of 4 KiB slots.
//
// Units: a slot is kSwapSlotBytes (4 KiB) of the file; slot n starts at byte n * 4096.
// Capacities are in bytes, always a multiple of 4 KiB.
//
// Thread-safety: WritePages and ReadPages may be called from any number of threads at once
// (pwritev/preadv carry their own offsets); the faults may be changed at any time. Moving,
// assigning or destroying a SwapFile is not thread-safe with respect to other uses.
#ifndef UVMEM_PLATFORM_SWAP_FILE_H_
#define UVMEM_PLATFORM_SWAP_FILE_H_

#include <absl/status/statusor.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace uvmem::internal {

inline constexpr std::uint64_t kSwapSlotBytes = 4096;

// Fault injection for tests; a default-constructed one injects nothing. Checked at the
// start of every WritePages / ReadPages call (one call = one run of consecutive slots).
struct SwapFileFaults {
  // Every WritePages fails with this errno without writing (0: none).
  std::atomic<int> write_error{0};
  // Every ReadPages fails with this errno without reading (0: none).
  std::atomic<int> read_error{0};
  // After a successful read, one byte of every page read is flipped.
  std::atomic<bool> corrupt_reads{false};
  // Pages that may still be written: a WritePages of more pages than remain fails with
  // ENOSPC (and leaves 0 remaining), as a file system filling up mid-run.
  std::atomic<std::uint64_t> writable_pages{~std::uint64_t{0}};
};

class SwapFile {
 public:
  // Opens the backing store at `path`:
  //   - empty: as the directory $TMPDIR, else /tmp;
  //   - a directory: a new unlinked file (O_TMPFILE; where the file system refuses it,
  //     mkstemp + unlink) with permissions exactly `mode`, sized sparsely to `max_bytes`,
  //     or `default_bytes` when max_bytes is 0; it vanishes with the process;
  //   - a regular file: capacity `max_bytes` (the file grows to it if smaller), or the
  //     file's size when max_bytes is 0; its contents are overwritten;
  //   - a block device: capacity its size (BLKGETSIZE64), capped by max_bytes if nonzero.
  // Capacity is rounded down to 4 KiB. Errors name the path: NotFound (ENOENT),
  // PermissionDenied (EACCES, EPERM, EROFS), ResourceExhausted (ENOSPC, EDQUOT, EMFILE,
  // ENFILE, ENOMEM, EFBIG), InvalidArgument (another kind of file, such as a character
  // device; a capacity under 4 KiB), Internal for anything else.
  static absl::StatusOr<SwapFile> Open(const std::string& path, std::uint64_t max_bytes,
                                       std::uint64_t default_bytes, int mode = 0600);

  SwapFile() = default;  // holds no fd
  SwapFile(SwapFile&& other) noexcept;
  SwapFile& operator=(SwapFile&& other) noexcept;
  SwapFile(const SwapFile&) = delete;
  SwapFile& operator=(const SwapFile&) = delete;
  ~SwapFile();

  // Writes pages[i] (4 KiB each) to slot first_slot + i, i < count, with pwritev: at most
  // kMaxIovecs pages per call, resuming after partial writes and EINTR. Returns 0 or an
  // errno (EIO for a write that makes no progress; ENOSPC, EIO, ... from the kernel or the
  // faults). On failure any of the pages may or may not have reached the file.
  // Hot path: never allocates. REQUIRES: the slots lie within capacity_bytes().
  [[nodiscard]] int WritePages(std::uint64_t first_slot, const void* const* pages,
                               std::size_t count);
  // Reads slot first_slot + i into pages[i] (4 KiB each, writable), i < count, with
  // preadv, as WritePages. Returns 0 or an errno (EIO for end of file / a short read that
  // makes no progress). Hot path: never allocates.
  [[nodiscard]] int ReadPages(std::uint64_t first_slot, void* const* pages, std::size_t count);

  std::uint64_t capacity_bytes() const { return capacity_bytes_; }
  int fd() const { return fd_; }
  // "<dir> (O_TMPFILE)", "<dir> (mkstemp, unlinked)", or the path of the file or device.
  // Where and how: "<dir> (O_TMPFILE), direct I/O", "<path>, buffered I/O" (a file
  // system that refuses O_DIRECT).
  const std::string& description() const { return description_; }
  // Test fault injection (see SwapFileFaults). Stable for the life of the object.
  SwapFileFaults& faults() { return *faults_; }

  // Pages per pwritev/preadv call (≤ IOV_MAX; 4 KiB of iovecs on the stack).
  static constexpr std::size_t kMaxIovecs = 256;

 private:
  SwapFile(int fd, std::uint64_t capacity_bytes, std::string description);

  int fd_ = -1;
  std::uint64_t capacity_bytes_ = 0;
  std::string description_;
  std::unique_ptr<SwapFileFaults> faults_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_PLATFORM_SWAP_FILE_H_
