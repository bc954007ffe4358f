// clone_bench — copy-on-write clones of a uvmem range (Range::Clone) against the kernel's
// copy-on-write after fork(), in one run.
//
// A range of N bytes (--bytes, default 1G) with every 4 KiB page present and written
// (512 words per page, distinct per page) is cloned, and the same N bytes of ordinary
// anonymous memory (mmap + memset, MADV_NOHUGEPAGE) are forked:
//
//   a) clone     Range::Clone of the populated range, --reps times (clone, then Release of
//                the untouched clone, timed separately); median and min. Between repetitions
//                every page of the source is written again (untimed here, reported as
//                "rewrite"), so that every clone finds a writable range, as the first did.
//   b) fork      fork() of this process holding the N bytes: from the call to its return in
//                the parent (the child _exits at once; waitpid is not timed), --reps times,
//                the pages written again between repetitions as for clones. Also with THP
//                (MADV_HUGEPAGE, 2 MiB aligned; --nothp to skip), whose AnonHugePages share
//                is reported.
//   c) memcpy    of the N bytes into a fresh buffer faulted in beforehand, --reps times.
//   d) first write per page after a clone / a fork: one byte written per page, pages in
//                order, ns per page —
//                  uvmem source   the range that was cloned writes its shared pages (each
//                                 preserves the original for the clone first);
//                  uvmem clone    the clone writes them (each gets its own copy);
//                  kernel parent  after fork(), the parent writes (the kernel's CoW fault),
//                                 the child alive and idle;
//                  kernel child   the child writes (timed in the child, sent through a pipe),
//                                 the parent idle.
//                Each trial has its own fresh clone / fork.
//   e) the same in a random (shuffled) page order (--norandom to skip): fault-around style
//                windows favour sequential passes.
// Extras: the clone's first read of every page after the source wrote them all (the clone is
// then the last range sharing each preserved page: a MOVE, not a copy), the cost of writing
// a page again once the clone is gone (uvmem) or the child has exited (kernel), and the
// runtime's CoW counters for every trial. Every uvmem trial is verified (untimed; --noverify):
// both sides keep their page stamps, and each side sees its own writes and not the other's.
//
// The kernel part and the uvmem part run one after the other in this process (--order), the
// other side's memory unmapped in between: the uvmem runtime does not exist yet (or was
// destroyed) when the process forks, so fork() copies the N bytes' page tables and nothing
// of uvmem's.
//
// Output: a table on stdout, progress on stderr, and all figures as one JSON object with
// --json=PATH. Exit status 3 if a verification found a mismatch, 1 on any other failure.
//
//   clone_bench [--bytes=1G] [--reps=5] [--write_reps=1] [--json=out.json]
//               [--order=kernel-first|uvmem-first] [--nothp] [--norandom] [--noverify]
//               [--parts=both|kernel|uvmem]
//               [--fault_around=0] [--readahead=PAGES] [--fault_threads=0] [--pool=BYTES]
//               [--prefault_pool]
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "json_record.h"
#include "uvmem/runtime.h"

ABSL_FLAG(std::string, bytes, "1G", "bytes of the range / of the forked memory (K, M, G suffixes)");
ABSL_FLAG(int, reps, 5, "repetitions of clone+release, fork and memcpy (median and min)");
ABSL_FLAG(int, write_reps, 1, "repetitions of each first-write trial (median)");
ABSL_FLAG(std::string, json, "", "write every figure as one JSON object to this file");
ABSL_FLAG(std::string, order, "kernel-first", "kernel-first | uvmem-first");
ABSL_FLAG(std::string, parts, "both", "both | kernel | uvmem (one side only: for debugging)");
ABSL_FLAG(bool, thp, true, "also fork a THP-backed (MADV_HUGEPAGE) copy of the N bytes");
ABSL_FLAG(bool, random, true, "also run the first-write trials in a shuffled page order");
ABSL_FLAG(bool, verify, true, "check both sides' bytes after every uvmem trial (untimed)");
ABSL_FLAG(std::size_t, fault_around, 0, "uvmem: the range's fault-around window in pages (0: runtime's)");
ABSL_FLAG(std::size_t, readahead, SIZE_MAX, "uvmem: the range's readahead in pages (default: runtime's)");
ABSL_FLAG(int, fault_threads, 0, "uvmem: RuntimeOptions::fault_threads (0: one per node)");
ABSL_FLAG(std::string, pool, "", "uvmem: RuntimeOptions::pool_bytes_total (default 2 N + N/8 + 64M)");
ABSL_FLAG(bool, prefault_pool, false, "uvmem: RuntimeOptions::prefault_pool");
ABSL_FLAG(std::uint64_t, seed, 42, "seed of the random page order");

namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kWords = kPage / sizeof(std::uint64_t);
constexpr std::size_t kMarkOff = 64;  // the byte a pass writes (word 8 of the page)

[[noreturn]] void Die(const std::string& what) {
  fmt::print(stderr, "clone_bench: {}\n", what);
  std::fflush(stdout);
  std::exit(1);
}

std::uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::uint64_t(ts.tv_sec) * 1000000000u + std::uint64_t(ts.tv_nsec);
}

std::optional<std::size_t> ParseBytes(const std::string& s) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end == s.c_str() || v <= 0) return std::nullopt;
  std::string suffix(end);
  for (char& c : suffix) c = char(std::toupper(static_cast<unsigned char>(c)));
  if (suffix.size() > 1 && suffix.back() == 'B') suffix.pop_back();   // "MB", "MiB"
  if (suffix.size() > 1 && suffix.back() == 'I') suffix.pop_back();
  double mult = 1;
  if (suffix.empty() || suffix == "B") mult = 1;
  else if (suffix == "K") mult = 1024.0;
  else if (suffix == "M") mult = 1024.0 * 1024;
  else if (suffix == "G") mult = 1024.0 * 1024 * 1024;
  else if (suffix == "T") mult = 1024.0 * 1024 * 1024 * 1024;
  else return std::nullopt;
  const auto bytes = std::size_t(v * mult);
  return (bytes + kPage - 1) / kPage * kPage;
}

// Word i of page p: distinct for every page and word, never zero.
std::uint64_t Pattern(std::size_t p, std::size_t i) {
  return ((std::uint64_t(p) * kWords + i) * 0x9e3779b97f4a7c15ull) | 1;
}

// Writes every word of every page, then the mark byte (1).
void Fill(char* base, std::size_t pages) {
  for (std::size_t p = 0; p < pages; ++p) {
    auto* w = reinterpret_cast<std::uint64_t*>(base + p * kPage);
    for (std::size_t i = 0; i < kWords; ++i) w[i] = Pattern(p, i);
    base[p * kPage + kMarkOff] = 1;
  }
}

// One byte written per page (`order`: page indices; null: 0..pages-1). ns. Allocates
// nothing: also runs in forked children.
std::uint64_t WritePass(char* base, std::size_t pages, const std::vector<std::uint32_t>* order,
                        std::uint8_t mark) {
  const std::uint64_t t0 = NowNs();
  if (order == nullptr) {
    for (std::size_t p = 0; p < pages; ++p) {
      *reinterpret_cast<volatile std::uint8_t*>(base + p * kPage + kMarkOff) = mark;
    }
  } else {
    for (std::uint32_t p : *order) {
      *reinterpret_cast<volatile std::uint8_t*>(base + std::size_t{p} * kPage + kMarkOff) = mark;
    }
  }
  return NowNs() - t0;
}

// One byte read per page. ns.
std::uint64_t ReadPass(const char* base, std::size_t pages, const std::vector<std::uint32_t>* order) {
  std::uint64_t sum = 0;
  const std::uint64_t t0 = NowNs();
  if (order == nullptr) {
    for (std::size_t p = 0; p < pages; ++p) {
      sum += *reinterpret_cast<const volatile std::uint8_t*>(base + p * kPage + kMarkOff);
    }
  } else {
    for (std::uint32_t p : *order) {
      sum += *reinterpret_cast<const volatile std::uint8_t*>(base + std::size_t{p} * kPage + kMarkOff);
    }
  }
  const std::uint64_t ns = NowNs() - t0;
  asm volatile("" : : "r"(sum) : "memory");
  return ns;
}

// Mismatches of `base` against the pattern with mark byte `mark` (first and last word of
// every page, and the mark byte). The first few are printed.
std::uint64_t Verify(const char* base, std::size_t pages, std::uint8_t mark, const std::string& what) {
  std::uint64_t bad = 0;
  for (std::size_t p = 0; p < pages; ++p) {
    const auto* w = reinterpret_cast<const std::uint64_t*>(base + p * kPage);
    const std::uint64_t w0 = w[0], wl = w[kWords - 1];
    const auto m = static_cast<std::uint8_t>(base[p * kPage + kMarkOff]);
    if (w0 != Pattern(p, 0) || wl != Pattern(p, kWords - 1) || m != mark) {
      if (++bad <= 5) {
        fmt::print(stderr,
                   "MISMATCH {} page {}: word0 {:#018x} (want {:#018x}), last {:#018x} (want "
                   "{:#018x}), mark {} (want {})\n",
                   what, p, w0, Pattern(p, 0), wl, Pattern(p, kWords - 1), m, mark);
      }
    }
  }
  if (bad > 5) fmt::print(stderr, "MISMATCH {}: {} pages in all\n", what, bad);
  return bad;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
std::vector<double> PerPage(std::vector<double> v, double pages) {
  for (double& x : v) x /= pages;
  return v;
}
double Min(const std::vector<double>& v) { return v.empty() ? 0 : *std::min_element(v.begin(), v.end()); }

using Json = uvmem::bench::JsonRecord;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "Key:   123 kB" of a /proc file → kB (0 when absent).
std::uint64_t ProcKb(const std::string& path, const std::string& key) {
  std::istringstream in(ReadFile(path));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::strtoull(line.c_str() + key.size() + 1, nullptr, 10);
  }
  return 0;
}

std::string FirstLine(const std::string& path) {
  std::istringstream in(ReadFile(path));
  std::string line;
  std::getline(in, line);
  return line;
}

// ----------------------------------------------------------------------------------------
// Kernel side: ordinary anonymous memory, fork().

struct AnonMap {
  char* raw = nullptr;
  std::size_t raw_len = 0;
  char* base = nullptr;
  ~AnonMap() {
    if (raw != nullptr) munmap(raw, raw_len);
  }
};

// N bytes of anonymous memory, 4 KiB pages (NOHUGEPAGE) or THP (2 MiB aligned, HUGEPAGE).
std::unique_ptr<AnonMap> MapAnon(std::size_t bytes, bool thp) {
  auto m = std::make_unique<AnonMap>();
  const std::size_t align = thp ? (std::size_t{2} << 20) : kPage;
  m->raw_len = bytes + (thp ? align : 0);
  void* p = mmap(nullptr, m->raw_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) Die(fmt::format("mmap {} bytes: {}", m->raw_len, std::strerror(errno)));
  m->raw = static_cast<char*>(p);
  m->base = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(p) + align - 1) & ~(align - 1));
  if (madvise(m->base, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0) {
    Die(fmt::format("madvise({}): {}", thp ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE", std::strerror(errno)));
  }
  return m;
}

void WaitChild(pid_t pid, const char* what) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) Die(fmt::format("waitpid ({}): {}", what, std::strerror(errno)));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    Die(fmt::format("{}: child ended with status {:#x}", what, status));
  }
}

// fork(): call to return in the parent. The child _exits at once.
std::uint64_t ForkOnce() {
  const std::uint64_t t0 = NowNs();
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  const std::uint64_t ns = NowNs() - t0;
  if (pid < 0) Die(fmt::format("fork: {}", std::strerror(errno)));
  WaitChild(pid, "fork");
  return ns;
}

// After fork(), the parent writes every page once (the child alive and idle). ns.
std::uint64_t KernelParentPass(char* base, std::size_t pages, const std::vector<std::uint32_t>* order,
                               std::uint8_t mark) {
  int fds[2];
  if (pipe(fds) != 0) Die(fmt::format("pipe: {}", std::strerror(errno)));
  const pid_t pid = fork();
  if (pid < 0) Die(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    close(fds[1]);
    char c;
    while (read(fds[0], &c, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  close(fds[0]);
  const std::uint64_t ns = WritePass(base, pages, order, mark);
  close(fds[1]);  // the child reads EOF and exits
  WaitChild(pid, "kernel parent pass");
  return ns;
}

// After fork(), the child writes every page once (the parent idle) and sends its time. ns.
std::uint64_t KernelChildPass(char* base, std::size_t pages, const std::vector<std::uint32_t>* order,
                              std::uint8_t mark) {
  int fds[2];
  if (pipe(fds) != 0) Die(fmt::format("pipe: {}", std::strerror(errno)));
  const pid_t pid = fork();
  if (pid < 0) Die(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    close(fds[0]);
    const std::uint64_t ns = WritePass(base, pages, order, mark);
    const char* p = reinterpret_cast<const char*>(&ns);
    std::size_t left = sizeof(ns);
    while (left > 0) {
      const ssize_t n = write(fds[1], p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) _exit(2);
      p += n;
      left -= std::size_t(n);
    }
    _exit(0);
  }
  close(fds[1]);
  std::uint64_t ns = 0;
  char* p = reinterpret_cast<char*>(&ns);
  std::size_t got = 0;
  while (got < sizeof(ns)) {
    const ssize_t n = read(fds[0], p + got, sizeof(ns) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += std::size_t(n);
  }
  close(fds[0]);
  WaitChild(pid, "kernel child pass");
  if (got != sizeof(ns)) Die("kernel child pass: no time from the child");
  return ns;
}

struct Results {
  std::size_t bytes = 0, pages = 0;
  Json json;
  std::uint64_t mismatches = 0;
};

std::uint8_t NextMark() {
  static unsigned k = 0;
  return static_cast<std::uint8_t>(2 + (k++ % 250));
}

struct ForkFigures {
  std::vector<double> fork_ns, rewrite_ns;
};

// fork() --reps times, the pages written again between repetitions.
ForkFigures TimeForks(char* base, std::size_t pages, int reps) {
  ForkFigures f;
  for (int r = 0; r < reps; ++r) {
    if (r > 0) f.rewrite_ns.push_back(double(WritePass(base, pages, nullptr, NextMark())));
    f.fork_ns.push_back(double(ForkOnce()));
  }
  return f;
}

void RunKernel(Results& res, const std::vector<std::uint32_t>& shuffled) {
  const std::size_t bytes = res.bytes, pages = res.pages;
  const int reps = absl::GetFlag(FLAGS_reps), write_reps = absl::GetFlag(FLAGS_write_reps);
  Json& j = res.json;
  const double np = double(pages);

  fmt::print(stderr, "[kernel] mmap + fill {} MiB (4 KiB pages)\n", bytes >> 20);
  auto mem = MapAnon(bytes, false);
  std::uint64_t t = NowNs();
  Fill(mem->base, pages);
  j.Num("kernel_fill_ms", double(NowNs() - t) / 1e6);

  fmt::print(stderr, "[kernel] fork x{}\n", reps);
  const ForkFigures f = TimeForks(mem->base, pages, reps);
  j.List("fork4k_ns", f.fork_ns);
  j.Num("fork4k_ms_median", Median(f.fork_ns) / 1e6);
  j.Num("fork4k_ms_min", Min(f.fork_ns) / 1e6);
  j.Num("kernel_rewrite_ns_per_page", Median(f.rewrite_ns) / np);

  fmt::print(stderr, "[kernel] memcpy x{}\n", reps);
  {
    auto dst = MapAnon(bytes, false);
    std::memset(dst->base, 0, bytes);  // faulted in beforehand, not timed
    std::vector<double> ns;
    for (int r = 0; r < reps; ++r) {
      const std::uint64_t t0 = NowNs();
      std::memcpy(dst->base, mem->base, bytes);
      asm volatile("" : : "r"(dst->base) : "memory");
      ns.push_back(double(NowNs() - t0));
    }
    if (std::memcmp(dst->base, mem->base, kPage) != 0) Die("memcpy: copy differs");
    j.List("memcpy_ns", ns);
    j.Num("memcpy_ms_median", Median(ns) / 1e6);
    j.Num("memcpy_ms_min", Min(ns) / 1e6);
    j.Num("memcpy_ns_per_page", Median(ns) / np);
    j.Num("memcpy_gb_per_s", double(bytes) / Median(ns));
  }

  struct Order {
    const char* name;
    const std::vector<std::uint32_t>* order;
  };
  std::vector<Order> orders = {{"seq", nullptr}};
  if (absl::GetFlag(FLAGS_random)) orders.push_back({"random", &shuffled});
  for (const Order& o : orders) {
    std::vector<double> parent, child;
    for (int r = 0; r < write_reps; ++r) {
      fmt::print(stderr, "[kernel] first write after fork, {}, parent\n", o.name);
      parent.push_back(double(KernelParentPass(mem->base, pages, o.order, NextMark())));
      fmt::print(stderr, "[kernel] first write after fork, {}, child\n", o.name);
      child.push_back(double(KernelChildPass(mem->base, pages, o.order, NextMark())));
    }
    j.Num(fmt::format("write_{}_kernel_parent_ns", o.name), Median(parent) / np);
    j.Num(fmt::format("write_{}_kernel_child_ns", o.name), Median(child) / np);
  }
  mem.reset();

  if (absl::GetFlag(FLAGS_thp)) {
    fmt::print(stderr, "[kernel] mmap + fill {} MiB (THP, MADV_HUGEPAGE)\n", bytes >> 20);
    const std::uint64_t huge0 = ProcKb("/proc/self/smaps_rollup", "AnonHugePages");
    auto thp = MapAnon(bytes, true);
    t = NowNs();
    Fill(thp->base, pages);
    j.Num("kernel_thp_fill_ms", double(NowNs() - t) / 1e6);
    const std::uint64_t huge1 = ProcKb("/proc/self/smaps_rollup", "AnonHugePages");
    const double share = double(huge1 > huge0 ? huge1 - huge0 : 0) * 1024.0 / double(bytes);
    j.Num("thp_share", share);
    fmt::print(stderr, "[kernel] THP share {:.0f} %; fork x{}\n", share * 100, reps);
    const ForkFigures ft = TimeForks(thp->base, pages, reps);
    j.List("forkthp_ns", ft.fork_ns);
    j.Num("forkthp_ms_median", Median(ft.fork_ns) / 1e6);
    j.Num("forkthp_ms_min", Min(ft.fork_ns) / 1e6);
    std::vector<double> parent, child;
    for (int r = 0; r < write_reps; ++r) {
      fmt::print(stderr, "[kernel] THP first write after fork, seq, parent and child\n");
      parent.push_back(double(KernelParentPass(thp->base, pages, nullptr, NextMark())));
      child.push_back(double(KernelChildPass(thp->base, pages, nullptr, NextMark())));
    }
    j.Num("write_seq_thp_parent_ns", Median(parent) / np);
    j.Num("write_seq_thp_child_ns", Median(child) / np);
  }
}

// ----------------------------------------------------------------------------------------
// uvmem side: Range::Clone.

struct CowDelta {
  std::uint64_t faults = 0, copies = 0, moves = 0, filled = 0, races = 0;
  std::uint64_t copies_source_side = 0, copies_clone_side = 0, rt_moves = 0;
};

void RunUvmem(Results& res, const std::vector<std::uint32_t>& shuffled) {
  const std::size_t bytes = res.bytes, pages = res.pages;
  const int reps = absl::GetFlag(FLAGS_reps), write_reps = absl::GetFlag(FLAGS_write_reps);
  const bool verify = absl::GetFlag(FLAGS_verify);
  Json& j = res.json;
  const double np = double(pages);

  uvmem::RuntimeOptions options;
  // The source, the copies of one trial (a whole second copy), and room for metadata.
  options.pool_bytes_total = 2 * bytes + bytes / 8 + (64u << 20);
  if (const std::string p = absl::GetFlag(FLAGS_pool); !p.empty()) {
    const auto v = ParseBytes(p);
    if (!v) Die(fmt::format("bad --pool '{}'", p));
    options.pool_bytes_total = *v;
  }
  j.Int("uvmem_pool_bytes", options.pool_bytes_total);
  options.fault_threads = absl::GetFlag(FLAGS_fault_threads);
  options.prefault_pool = absl::GetFlag(FLAGS_prefault_pool);
  auto rt = uvmem::Runtime::Create(options);
  if (!rt.ok()) Die(fmt::format("Runtime::Create: {}", rt.status().ToString()));
  std::unique_ptr<uvmem::Runtime> runtime = std::move(*rt);
  j.Bool("uvmem_move_path", runtime->uses_move());
  j.Int("uvmem_fault_around_pages", absl::GetFlag(FLAGS_fault_around) ? absl::GetFlag(FLAGS_fault_around)
                                                                       : runtime->fault_around_pages());
  uvmem::RangeOptions ro;
  ro.name = "clonebench";
  ro.fault_around_pages = absl::GetFlag(FLAGS_fault_around);
  if (absl::GetFlag(FLAGS_readahead) != SIZE_MAX) ro.readahead_pages = absl::GetFlag(FLAGS_readahead);

  {
    auto r = runtime->Reserve(bytes, ro);
    if (!r.ok()) Die(fmt::format("Reserve: {}", r.status().ToString()));
    uvmem::Range src = std::move(*r);
    char* const sbase = static_cast<char*>(src.data());

    fmt::print(stderr, "[uvmem] populate + fill {} MiB\n", bytes >> 20);
    std::uint64_t t = NowNs();
    if (auto s = src.Populate(0, bytes); !s.ok()) Die(fmt::format("Populate: {}", s.ToString()));
    Fill(sbase, pages);
    j.Num("uvmem_fill_ms", double(NowNs() - t) / 1e6);
    std::uint8_t src_mark = 1;
    if (src.Stats().resident_pages != pages) {
      Die(fmt::format("source: {} resident pages after populate + fill, want {}",
                      src.Stats().resident_pages, pages));
    }

    auto clone = [&](const std::string& what) {
      auto c = src.Clone("clonebench-clone");
      if (!c.ok()) Die(fmt::format("Clone ({}): {}", what, c.status().ToString()));
      return std::move(*c);
    };
    auto release = [&](uvmem::Range& c, const std::string& what) {
      if (auto s = c.Release(); !s.ok()) Die(fmt::format("Release ({}): {}", what, s.ToString()));
    };

    // a) clone + release.
    fmt::print(stderr, "[uvmem] clone + release x{}\n", reps);
    std::vector<double> clone_ns, release_ns, rewrite_ns;
    std::uint64_t shared_after_clone = 0, clone_shared_after_clone = 0, rewrite_faults = 0;
    for (int r = 0; r < reps; ++r) {
      if (r > 0) {
        src_mark = NextMark();
        const std::uint64_t f0 = src.Stats().faults;
        rewrite_ns.push_back(double(WritePass(sbase, pages, nullptr, src_mark)));
        rewrite_faults = src.Stats().faults - f0;
      }
      const std::uint64_t t0 = NowNs();
      auto c = src.Clone("clonebench-clone");
      const std::uint64_t t1 = NowNs();
      if (!c.ok()) Die(fmt::format("Clone (rep {}): {}", r, c.status().ToString()));
      clone_ns.push_back(double(t1 - t0));
      if (r == 0) {
        shared_after_clone = src.Stats().shared_pages;
        clone_shared_after_clone = c->Stats().shared_pages;
      }
      const std::uint64_t t2 = NowNs();
      const absl::Status s = c->Release();
      const std::uint64_t t3 = NowNs();
      if (!s.ok()) Die(fmt::format("Release (rep {}): {}", r, s.ToString()));
      release_ns.push_back(double(t3 - t2));
    }
    j.List("clone_ns", clone_ns);
    j.Num("clone_ms_median", Median(clone_ns) / 1e6);
    j.Num("clone_ms_min", Min(clone_ns) / 1e6);
    j.Num("clone_ms_first", clone_ns.front() / 1e6);
    j.List("release_ns", release_ns);
    j.Num("release_ms_median", Median(release_ns) / 1e6);
    j.Num("release_ms_min", Min(release_ns) / 1e6);
    j.Num("uvmem_rewrite_ns_per_page", Median(rewrite_ns) / np);
    j.Int("uvmem_rewrite_faults", rewrite_faults);  // fault messages of the last rewrite pass
    j.Int("clone_source_shared_pages", shared_after_clone);
    j.Int("clone_clone_shared_pages", clone_shared_after_clone);
    if (shared_after_clone != pages) {
      fmt::print(stderr, "note: source reports {} shared pages right after Clone, not {}\n",
                 shared_after_clone, pages);
    }

    auto stats_delta = [&](const uvmem::RangeStats& a0, const uvmem::RangeStats& a1,
                           const uvmem::CloneStats& c0, const uvmem::CloneStats& c1) {
      CowDelta d;
      d.faults = a1.faults - a0.faults;
      d.copies = a1.cow_copies - a0.cow_copies;
      d.moves = a1.cow_moves - a0.cow_moves;
      d.filled = a1.pages_filled - a0.pages_filled;
      d.races = a1.races_lost - a0.races_lost;
      d.copies_source_side = c1.cow_copies_source_side - c0.cow_copies_source_side;
      d.copies_clone_side = c1.cow_copies_clone_side - c0.cow_copies_clone_side;
      d.rt_moves = c1.cow_moves - c0.cow_moves;
      return d;
    };
    auto put_delta = [&](const std::string& prefix, const CowDelta& d) {
      j.Int(prefix + "_faults", d.faults);
      j.Num(prefix + "_pages_per_fault", d.faults ? np / double(d.faults) : 0);
      j.Int(prefix + "_range_cow_copies", d.copies);
      j.Int(prefix + "_range_cow_moves", d.moves);
      j.Int(prefix + "_pages_filled", d.filled);
      j.Int(prefix + "_races_lost", d.races);
      j.Int(prefix + "_rt_copies_source_side", d.copies_source_side);
      j.Int(prefix + "_rt_copies_clone_side", d.copies_clone_side);
      j.Int(prefix + "_rt_cow_moves", d.rt_moves);
    };

    struct Order {
      const char* name;
      const std::vector<std::uint32_t>* order;
    };
    std::vector<Order> orders = {{"seq", nullptr}};
    if (absl::GetFlag(FLAGS_random)) orders.push_back({"random", &shuffled});
    for (const Order& o : orders) {
      std::vector<double> src_ns, clone_ns_w, clone_read_ns, rel_after_src, rel_after_clone;
      CowDelta src_d, src_read_d, clone_d;
      for (int r = 0; r < write_reps; ++r) {
        // Source side: the range that was cloned writes every page once.
        {
          fmt::print(stderr, "[uvmem] first write after clone, {}, source\n", o.name);
          uvmem::Range c = clone("source trial");
          char* const cbase = static_cast<char*>(c.data());
          const std::uint8_t old_mark = src_mark;
          const std::uint8_t mark = NextMark();
          const auto s0 = src.Stats();
          const auto k0 = runtime->Stats().clone;
          src_ns.push_back(double(WritePass(sbase, pages, o.order, mark)));
          const auto s1 = src.Stats();
          const auto k1 = runtime->Stats().clone;
          src_d = stats_delta(s0, s1, k0, k1);
          src_mark = mark;
          // The clone reads every page: it is the last range sharing each preserved page.
          const auto c0 = c.Stats();
          clone_read_ns.push_back(double(ReadPass(cbase, pages, o.order)));
          const auto c1 = c.Stats();
          src_read_d = stats_delta(c0, c1, k1, runtime->Stats().clone);
          if (verify) {
            res.mismatches += Verify(sbase, pages, src_mark, fmt::format("source after its {} write pass", o.name));
            res.mismatches += Verify(cbase, pages, old_mark, fmt::format("clone after the source's {} write pass", o.name));
          }
          const std::uint64_t t0 = NowNs();
          release(c, "source trial");
          rel_after_src.push_back(double(NowNs() - t0));
        }
        // Clone side: the clone writes every page once.
        {
          fmt::print(stderr, "[uvmem] first write after clone, {}, clone\n", o.name);
          uvmem::Range c = clone("clone trial");
          char* const cbase = static_cast<char*>(c.data());
          const std::uint8_t mark = NextMark();
          const auto c0 = c.Stats();
          const auto k0 = runtime->Stats().clone;
          clone_ns_w.push_back(double(WritePass(cbase, pages, o.order, mark)));
          clone_d = stats_delta(c0, c.Stats(), k0, runtime->Stats().clone);
          if (verify) {
            res.mismatches += Verify(cbase, pages, mark, fmt::format("clone after its {} write pass", o.name));
            res.mismatches += Verify(sbase, pages, src_mark, fmt::format("source after the clone's {} write pass", o.name));
          }
          const std::uint64_t t0 = NowNs();
          release(c, "clone trial");
          rel_after_clone.push_back(double(NowNs() - t0));
        }
      }
      const std::string w = fmt::format("write_{}_", o.name);
      j.List(w + "uvmem_source_trials_ns_per_page", PerPage(src_ns, np));
      j.List(w + "uvmem_clone_trials_ns_per_page", PerPage(clone_ns_w, np));
      j.Num(w + "uvmem_source_ns", Median(src_ns) / np);
      j.Num(w + "uvmem_clone_ns", Median(clone_ns_w) / np);
      j.Num(fmt::format("read_{}_uvmem_clone_after_source_ns", o.name), Median(clone_read_ns) / np);
      j.Num(fmt::format("release_{}_after_source_pass_ms", o.name), Median(rel_after_src) / 1e6);
      j.Num(fmt::format("release_{}_after_clone_pass_ms", o.name), Median(rel_after_clone) / 1e6);
      put_delta(fmt::format("cow_{}_source", o.name), src_d);
      put_delta(fmt::format("cow_{}_clone_read_after_source", o.name), src_read_d);
      put_delta(fmt::format("cow_{}_clone", o.name), clone_d);
    }

    const uvmem::RuntimeStats st = runtime->Stats();
    j.Int("uvmem_clones", st.clone.clones);
    j.Int("uvmem_shared_frames_end", st.clone.shared_frames);
    j.Int("uvmem_fault_latency_p50_ns", st.fault_latency_p50_ns);
    j.Int("uvmem_fault_latency_p99_ns", st.fault_latency_p99_ns);
    if (auto s = src.Release(); !s.ok()) Die(fmt::format("Release (source): {}", s.ToString()));
  }
  runtime.reset();
}

// ----------------------------------------------------------------------------------------
// Report.

void PrintTable(const Results& res) {
  auto g = [&](const std::string& k) { return res.json.Get(k); };
  auto num = [](double v, const char* fmtspec) {
    return v < 0 ? std::string("—") : fmt::format(fmt::runtime(fmtspec), v);
  };
  const double fork4k = g("fork4k_ms_median");
  fmt::print("# clone_bench: {} MiB, {} pages of 4 KiB, every page present and written; --reps={}\n",
             res.bytes >> 20, res.pages, absl::GetFlag(FLAGS_reps));
  fmt::print("{:<42} {:>11} {:>11} {:>12}\n", "operation (whole range)", "median ms", "min ms", "vs fork-4k");
  auto row = [&](const std::string& name, double med, double mn) {
    fmt::print("{:<42} {:>11} {:>11} {:>12}\n", name, num(med, "{:.3f}"), num(mn, "{:.3f}"),
               med < 0 || fork4k <= 0 ? "" : fmt::format("{:.2f}x", med / fork4k));
  };
  row("uvmem Range::Clone", g("clone_ms_median"), g("clone_ms_min"));
  row("uvmem Release (untouched clone)", g("release_ms_median"), g("release_ms_min"));
  row("fork() 4 KiB pages (MADV_NOHUGEPAGE)", fork4k, g("fork4k_ms_min"));
  if (g("forkthp_ms_median") >= 0) {
    row(fmt::format("fork() THP ({:.0f} % huge)", g("thp_share") * 100), g("forkthp_ms_median"),
        g("forkthp_ms_min"));
  }
  row("memcpy of the N bytes (pre-faulted dest)", g("memcpy_ms_median"), g("memcpy_ms_min"));
  fmt::print("\n# first write per page after clone / fork, ns per page (one byte per page)\n");
  fmt::print("{:<8} {:>13} {:>12} {:>14} {:>13} {:>11} {:>11}\n", "order", "uvmem-source",
             "uvmem-clone", "kernel-parent", "kernel-child", "src/parent", "clone/child");
  for (const char* o : {"seq", "random"}) {
    const std::string w = fmt::format("write_{}_", o);
    const double us = g(w + "uvmem_source_ns"), uc = g(w + "uvmem_clone_ns");
    const double kp = g(w + "kernel_parent_ns"), kc = g(w + "kernel_child_ns");
    if (us < 0 && kp < 0) continue;
    auto ratio = [](double a, double b) { return a < 0 || b <= 0 ? std::string("—") : fmt::format("{:.2f}x", a / b); };
    fmt::print("{:<8} {:>13} {:>12} {:>14} {:>13} {:>11} {:>11}\n", o, num(us, "{:.1f}"),
               num(uc, "{:.1f}"), num(kp, "{:.1f}"), num(kc, "{:.1f}"), ratio(us, kp), ratio(uc, kc));
  }
  fmt::print("\n# extras, ns per page\n");
  auto extra = [&](const std::string& name, double v) {
    if (v >= 0) fmt::print("{:<62} {:>9.1f}\n", name, v);
  };
  extra("memcpy (per 4 KiB)", g("memcpy_ns_per_page"));
  extra("kernel THP, first write after fork, seq, parent", g("write_seq_thp_parent_ns"));
  extra("kernel THP, first write after fork, seq, child", g("write_seq_thp_child_ns"));
  extra("uvmem clone's first read after the source wrote all, seq", g("read_seq_uvmem_clone_after_source_ns"));
  extra("uvmem clone's first read after the source wrote all, random", g("read_random_uvmem_clone_after_source_ns"));
  extra("uvmem rewrite of the source after its clone was released", g("uvmem_rewrite_ns_per_page"));
  if (g("uvmem_rewrite_faults") >= 0) {
    fmt::print("{:<62} {:>9.0f}\n", "  (fault messages in that pass)", g("uvmem_rewrite_faults"));
  }
  extra("kernel rewrite in the parent after the child exited", g("kernel_rewrite_ns_per_page"));
  fmt::print("\n# uvmem CoW counters per trial (faults = round trips; pages/fault; copies; moves)\n");
  for (const char* o : {"seq", "random"}) {
    for (const char* side : {"source", "clone_read_after_source", "clone"}) {
      const std::string p = fmt::format("cow_{}_{}", o, side);
      if (g(p + "_faults") < 0) continue;
      fmt::print("{:<36} faults {:>8.0f}  pages/fault {:>6.1f}  range copies {:>8.0f}  moves {:>8.0f}  "
                 "(runtime: source-side {:.0f}, clone-side {:.0f}, moves {:.0f})\n",
                 p, g(p + "_faults"), g(p + "_pages_per_fault"), g(p + "_range_cow_copies"),
                 g(p + "_range_cow_moves"), g(p + "_rt_copies_source_side"),
                 g(p + "_rt_copies_clone_side"), g(p + "_rt_cow_moves"));
    }
  }
  fmt::print("\n# targets\n");
  const double cl = g("clone_ms_median");
  if (cl >= 0 && fork4k > 0) {
    fmt::print("clone <= fork (4 KiB): {:.3f} ms vs {:.3f} ms = {:.2f}x -> {}\n", cl, fork4k, cl / fork4k,
               cl <= fork4k ? "met" : "NOT met");
  }
  for (const char* o : {"seq", "random"}) {
    const std::string w = fmt::format("write_{}_", o);
    for (const auto& [u, k] : {std::pair<const char*, const char*>{"uvmem_source_ns", "kernel_parent_ns"},
                               {"uvmem_clone_ns", "kernel_child_ns"}}) {
      const double a = g(w + u), b = g(w + k);
      if (a < 0 || b <= 0) continue;
      fmt::print("first write {} {} <= 3x {}: {:.1f} vs {:.1f} ns = {:.2f}x -> {}\n", o, u, k, a, b, a / b,
                 a <= 3 * b ? "met" : "NOT met");
    }
  }
  if (res.mismatches > 0) fmt::print("\nVERIFICATION FAILED: {} mismatching pages (see stderr)\n", res.mismatches);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "copy-on-write clones of a uvmem range against fork(): clone time, memcpy, and first "
      "write per page on both sides (see the head of clone_bench.cc)");
  absl::ParseCommandLine(argc, argv);
  const auto bytes = ParseBytes(absl::GetFlag(FLAGS_bytes));
  if (!bytes) Die(fmt::format("bad --bytes '{}' (e.g. 256M, 1G)", absl::GetFlag(FLAGS_bytes)));
  if (absl::GetFlag(FLAGS_reps) < 1 || absl::GetFlag(FLAGS_write_reps) < 1) Die("--reps and --write_reps must be >= 1");
  const std::string order = absl::GetFlag(FLAGS_order);
  if (order != "kernel-first" && order != "uvmem-first") Die("bad --order (kernel-first or uvmem-first)");
  if (const std::string p = absl::GetFlag(FLAGS_parts); p != "both" && p != "kernel" && p != "uvmem") {
    Die("bad --parts (both, kernel or uvmem)");
  }

  Results res;
  res.bytes = *bytes;
  res.pages = *bytes / kPage;
  if (res.pages > (std::size_t{1} << 32)) Die("--bytes too large");

  utsname u{};
  uname(&u);
  Json& j = res.json;
  j.Int("bytes", res.bytes);
  j.Int("pages", res.pages);
  j.Int("reps", std::uint64_t(absl::GetFlag(FLAGS_reps)));
  j.Int("write_reps", std::uint64_t(absl::GetFlag(FLAGS_write_reps)));
  j.Str("order", order);
  j.Str("parts", absl::GetFlag(FLAGS_parts));
  j.Str("kernel", u.release);
  j.Int("cpus", std::uint64_t(sysconf(_SC_NPROCESSORS_ONLN)));
  j.Str("thp_enabled", FirstLine("/sys/kernel/mm/transparent_hugepage/enabled"));
  j.Str("loadavg_before", FirstLine("/proc/loadavg"));

  std::vector<std::uint32_t> shuffled(res.pages);
  std::iota(shuffled.begin(), shuffled.end(), 0u);
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937_64(absl::GetFlag(FLAGS_seed)));

  const std::string parts = absl::GetFlag(FLAGS_parts);
  const bool kernel = parts == "both" || parts == "kernel", uv = parts == "both" || parts == "uvmem";
  if (order == "kernel-first") {
    if (kernel) RunKernel(res, shuffled);
    if (uv) RunUvmem(res, shuffled);
  } else {
    if (uv) RunUvmem(res, shuffled);
    if (kernel) RunKernel(res, shuffled);
  }
  j.Str("loadavg_after", FirstLine("/proc/loadavg"));
  j.Int("mismatches", res.mismatches);
  j.Int("peak_rss_kb", ProcKb("/proc/self/status", "VmHWM"));

  PrintTable(res);
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream out(path);
    out << j.Dump(2) << "\n";
    if (!out) Die(fmt::format("cannot write {}", path));
  }
  return res.mismatches > 0 ? 3 : 0;
}
