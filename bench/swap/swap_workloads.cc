// swap_workloads — a working set larger than a resident budget: uvmem's swap against the
// kernel's, and the raw bandwidth of the file system both swap to. Driven by
// run_swap_bench.py (which sets up the kernel side: swap file, memory cgroup).
//
// Modes (one per process):
//   --mode=kernel  plain mmap(MAP_PRIVATE|MAP_ANONYMOUS) of W bytes (MADV_NOHUGEPAGE unless
//                  --kernel_thp). The budget is NOT enforced by this program: the driver
//                  starts it inside a memory cgroup limited to B, with a swap file swapon'd.
//   --mode=uvmem   a uvmem Runtime with budget_bytes = B, swap_path = --swap_path, and a
//                  Range of W bytes; the workload runs on the range's memory.
//   --mode=raw     O_DIRECT on a fresh file in --swap_path: sequential write and read in
//                  1 MiB requests, a read+write mix (1 MiB requests alternating between
//                  two regions, as a swap scan does), and 4 KiB random reads at queue
//                  depth 1 (the ceiling of a random page-in).
//
// Workloads (--workload), each after a populate phase that writes every byte of every page
// of W (512 words per page, non-zero, derived from the page index — nothing a swap layer
// could elide as a zero page), untimed apart from its own reported time:
//   seq      --passes passes over W in page order; each access reads and checks the page's
//            stamp and writes a new one (the first and last word of the page: one 64-byte
//            line at each end, the rest of the page keeps its populate pattern).
//   uniform  random pages, uniform over W; each access reads and checks the stamp, and
//            --write_pct percent of accesses write a new stamp.
//   zipf     as uniform, pages drawn from a Zipf distribution (s = --zipf_s, 0.99) over
//            ranks mapped to pages by a random permutation (hot pages spread over W, not
//            packed at its start where readahead would find them together).
// Random workloads run --warmup_per_page × pages untimed accesses first (steady state),
// then --accesses_per_page × pages timed ones (or stop at --max_seconds).
//
// Verification: the program keeps each page's current version (uint32 per page: 1 MiB
// for 1 GiB of W, plus the Zipf permutation as much again — they live in the process and
// so count against the kernel's cgroup, not against uvmem's budget). Every access checks
// the first word (the stamp of page+version), the last word (the same) and one populate
// word; after the timed phase every word of every page is checked (untimed; off with
// --noverify_all). Mismatches are counted and must be 0.
//
// Timing: every access is timed with clock_gettime(CLOCK_MONOTONIC) (≈20 ns each end, in
// the figures of both modes). Every --probe_every-th access first asks mincore() whether
// its page is resident; those found missing give the "page-in" percentiles — the latency
// an access that had to wait for swap sees, measured by the program the same way for the
// kernel and for uvmem. uvmem's own swap-in percentiles (fault → page mapped) are reported
// too.
//
// Output: one JSON object on stdout (progress on stderr).
//
//   swap_workloads --mode=kernel|uvmem --workload=seq|uniform|zipf --ws_mib=512
//                  --budget_mib=256 [--swap_path=/var/tmp] [--passes=3] ...
//   swap_workloads --mode=raw --swap_path=/var/tmp [--raw_mib=1024]
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "json_record.h"
#include "uvmem/runtime.h"

ABSL_FLAG(std::string, mode, "kernel", "kernel | uvmem | raw");
ABSL_FLAG(std::string, workload, "seq", "seq | uniform | zipf");
ABSL_FLAG(std::size_t, ws_mib, 512, "working set W in MiB");
ABSL_FLAG(std::size_t, budget_mib, 256,
          "resident budget B in MiB (uvmem: RuntimeOptions::budget_bytes; kernel: recorded "
          "only — the driver's cgroup enforces it)");
ABSL_FLAG(int, passes, 3, "seq: timed passes over W");
ABSL_FLAG(double, accesses_per_page, 2.0, "uniform/zipf: timed accesses = this × pages of W");
ABSL_FLAG(double, warmup_per_page, 0.5, "uniform/zipf: untimed accesses first, × pages of W");
ABSL_FLAG(int, write_pct, 50, "uniform/zipf: percent of accesses that write a new stamp");
ABSL_FLAG(double, zipf_s, 0.99, "zipf: exponent s");
ABSL_FLAG(double, max_seconds, 180, "a timed phase stops after this long (reported)");
ABSL_FLAG(int, probe_every, 8, "every Nth access is classified by mincore() (0: never)");
ABSL_FLAG(bool, verify_all, true, "after the timed phase check every word of W (untimed)");
ABSL_FLAG(bool, kernel_thp, false, "kernel mode: leave THP to the system (else NOHUGEPAGE)");
ABSL_FLAG(std::uint64_t, seed, 1, "random seed");
ABSL_FLAG(std::string, swap_path, "/var/tmp",
          "uvmem: RuntimeOptions::swap_path (a directory: an O_TMPFILE file is made there); "
          "raw: the directory of the test file");
ABSL_FLAG(std::size_t, swap_max_mib, 0, "uvmem: RuntimeOptions::swap_max_bytes (0: 2 × W)");
ABSL_FLAG(std::size_t, pool_mib, 0,
          "uvmem: pool_bytes_total (0: B + max(16 MiB, W / 64): the budget plus room for the "
          "runtime's metadata; frames the pool got back stay resident, so the pool bounds RSS)");
ABSL_FLAG(std::size_t, readahead_pages, SIZE_MAX, "uvmem: readahead_pages (default: runtime's)");
ABSL_FLAG(std::size_t, raw_mib, 1024, "raw: bytes of the test file, in MiB");
ABSL_FLAG(double, raw_random_seconds, 3.0, "raw: seconds of 4 KiB random reads");

namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kWords = kPage / sizeof(std::uint64_t);

std::uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::uint64_t(ts.tv_sec) * 1000000000u + std::uint64_t(ts.tv_nsec);
}

std::uint64_t Mix(std::uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
// The populate pattern of word i (1..kWords-2) of a page, and the stamp of a version.
std::uint64_t Fill(std::uint64_t page, std::size_t i) { return Mix(page * kWords + i) | 1; }
std::uint64_t Stamp(std::uint64_t page, std::uint32_t version) {
  return Mix((page << 24) ^ version ^ 0x5157a9b0000000ull) | 2;
}

// Log-linear latency histogram in ns: exact below 64, then 32 buckets per power of two
// (≤ 3 % error). Small enough to live in the process without weighing on its budget.
class Histogram {
 public:
  void Add(std::uint64_t ns) {
    ++count_;
    ++buckets_[Index(ns)];
  }
  std::uint64_t count() const { return count_; }
  std::uint64_t Percentile(double q) const {
    if (count_ == 0) return 0;
    const std::uint64_t rank = std::min<std::uint64_t>(count_ - 1, std::uint64_t(q * count_));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < buckets_.size(); ++i) {
      seen += buckets_[i];
      if (seen > rank) return Mid(i);
    }
    return Mid(buckets_.size() - 1);
  }

 private:
  static std::size_t Index(std::uint64_t v) {
    if (v < 64) return v;
    const int e = 63 - __builtin_clzll(v);  // >= 6
    const std::size_t sub = (v >> (e - 5)) & 31;
    return std::min<std::size_t>(64 + std::size_t(e - 6) * 32 + sub, kBuckets - 1);
  }
  static std::uint64_t Mid(std::size_t i) {
    if (i < 64) return i;
    const int e = int((i - 64) / 32) + 6;
    const std::uint64_t sub = (i - 64) % 32;
    const std::uint64_t lo = (std::uint64_t{32} + sub) << (e - 5);
    return lo + ((std::uint64_t{1} << (e - 5)) / 2);
  }
  static constexpr std::size_t kBuckets = 64 + 58 * 32;
  std::array<std::uint64_t, kBuckets> buckets_{};
  std::uint64_t count_ = 0;
};

// Zipf over [0, n) with exponent theta (Gray et al., "Quickly generating billion-record
// synthetic databases", SIGMOD 1994; as YCSB's ZipfianGenerator). Rank 0 is the hottest.
class Zipf {
 public:
  Zipf(std::uint64_t n, double theta) : n_(n), theta_(theta) {
    double zetan = 0;
    for (std::uint64_t i = 1; i <= n; ++i) zetan += 1.0 / std::pow(double(i), theta);
    const double zeta2 = 1.0 + 1.0 / std::pow(2.0, theta);
    zetan_ = zetan;
    alpha_ = 1.0 / (1.0 - theta);
    eta_ = (1.0 - std::pow(2.0 / double(n), 1.0 - theta)) / (1.0 - zeta2 / zetan);
    half_pow_theta_ = 1.0 + std::pow(0.5, theta);
  }
  std::uint64_t operator()(double u) const {
    const double uz = u * zetan_;
    if (uz < 1.0) return 0;
    if (uz < half_pow_theta_) return 1;
    const auto r = std::uint64_t(double(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_));
    return std::min(r, n_ - 1);
  }

 private:
  std::uint64_t n_;
  double theta_, zetan_ = 0, alpha_ = 0, eta_ = 0, half_pow_theta_ = 0;
};

using Json = uvmem::bench::JsonRecord;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "key value" lines (/proc/vmstat, memory.stat) → map.
std::map<std::string, std::uint64_t> KeyValues(const std::string& path) {
  std::map<std::string, std::uint64_t> m;
  std::istringstream in(ReadFile(path));
  std::string k;
  std::uint64_t v;
  while (in >> k >> v) m[k] = v;
  return m;
}

// "key: value" lines (/proc/self/io) → map.
std::map<std::string, std::uint64_t> KeyValuesColon(const std::string& path) {
  std::map<std::string, std::uint64_t> m;
  std::istringstream in(ReadFile(path));
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon != std::string::npos) {
      m[line.substr(0, colon)] = std::strtoull(line.c_str() + colon + 1, nullptr, 10);
    }
  }
  return m;
}

// "Key:   123 kB" lines of /proc/self/status → kB.
std::uint64_t StatusKb(const std::string& key) {
  std::istringstream in(ReadFile("/proc/self/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::strtoull(line.c_str() + key.size() + 1, nullptr, 10);
  }
  return 0;
}

// The memory cgroup (v1 or v2) this process is in, as a directory, or "".
std::string MemoryCgroupDir() {
  std::istringstream in(ReadFile("/proc/self/cgroup"));
  std::string line;
  std::string v2;
  while (std::getline(in, line)) {
    // "N:controllers:/path"
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string ctl = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    std::istringstream cs(ctl);
    std::string c;
    while (std::getline(cs, c, ',')) {
      if (c == "memory") return "/sys/fs/cgroup/memory" + path;
    }
    if (ctl.empty()) v2 = path;
  }
  if (!v2.empty()) {
    for (const char* root : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
      const std::string d = std::string(root) + v2;
      if (access((d + "/memory.max").c_str(), F_OK) == 0) return d;
    }
  }
  return "";
}

// Sectors read and written on the block device holding `path` (/sys/dev/block/M:m/stat).
struct DiskIo {
  std::uint64_t read_bytes = 0, written_bytes = 0;
};
std::optional<DiskIo> DiskCounters(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return std::nullopt;
  std::istringstream in(ReadFile(fmt::format("/sys/dev/block/{}:{}/stat", major(st.st_dev),
                                             minor(st.st_dev))));
  std::vector<std::uint64_t> f;
  std::uint64_t v;
  while (in >> v) f.push_back(v);
  if (f.size() < 7) return std::nullopt;
  return DiskIo{f[2] * 512, f[6] * 512};
}

[[noreturn]] void Die(const std::string& what) {
  fmt::print(stderr, "swap_workloads: {}\n", what);
  std::exit(1);
}

// ----------------------------------------------------------------------------------------
// The workloads.

struct Memory {
  char* base = nullptr;
  std::size_t pages = 0;
  std::uint64_t* Page(std::size_t p) const {
    return reinterpret_cast<std::uint64_t*>(base + p * kPage);
  }
};

struct Checker {
  std::vector<std::uint32_t> version;
  std::uint64_t mismatches = 0;
  void Report(std::size_t page, const char* where, std::uint64_t got, std::uint64_t want) {
    if (++mismatches <= 10) {
      fmt::print(stderr, "MISMATCH page {} ({}): read {:#018x}, expected {:#018x}\n", page,
                 where, got, want);
    }
  }
};

void Populate(const Memory& m, Checker& c) {
  for (std::size_t p = 0; p < m.pages; ++p) {
    std::uint64_t* w = m.Page(p);
    const std::uint64_t s = Stamp(p, 0);
    w[0] = s;
    for (std::size_t i = 1; i + 1 < kWords; ++i) w[i] = Fill(p, i);
    w[kWords - 1] = s;
    c.version[p] = 0;
  }
}

// One access: read and check the page, maybe write a new stamp.
inline void Access(const Memory& m, Checker& c, std::size_t p, bool write) {
  volatile std::uint64_t* w = m.Page(p);
  const std::uint64_t want = Stamp(p, c.version[p]);
  const std::uint64_t head = w[0];
  if (head != want) c.Report(p, "first word", head, want);
  const std::size_t mid = 1 + p % (kWords - 2);
  const std::uint64_t fill = w[mid];
  if (fill != Fill(p, mid)) c.Report(p, "populate word", fill, Fill(p, mid));
  const std::uint64_t tail = w[kWords - 1];
  if (tail != want) c.Report(p, "last word", tail, want);
  if (write) {
    const std::uint64_t s = Stamp(p, ++c.version[p]);
    w[0] = s;
    w[kWords - 1] = s;
  }
}

std::uint64_t VerifyAll(const Memory& m, Checker& c) {
  std::uint64_t bad_pages = 0;
  for (std::size_t p = 0; p < m.pages; ++p) {
    const std::uint64_t* w = m.Page(p);
    const std::uint64_t want = Stamp(p, c.version[p]);
    bool bad = false;
    if (w[0] != want) { c.Report(p, "verify first", w[0], want); bad = true; }
    if (w[kWords - 1] != want) { c.Report(p, "verify last", w[kWords - 1], want); bad = true; }
    for (std::size_t i = 1; i + 1 < kWords; ++i) {
      if (w[i] != Fill(p, i)) { c.Report(p, "verify fill", w[i], Fill(p, i)); bad = true; break; }
    }
    bad_pages += bad;
  }
  return bad_pages;
}

struct PhaseResult {
  double seconds = 0;
  std::uint64_t accesses = 0;
  bool truncated = false;
  Histogram all, paged_in, resident;
};

bool Resident(const Memory& m, std::size_t p) {
  unsigned char v = 0;
  if (mincore(m.Page(p), kPage, &v) != 0) return true;
  return v & 1;
}

template <typename NextPage>
PhaseResult Run(const Memory& m, Checker& c, std::uint64_t n, NextPage next, std::mt19937_64& rng,
                int write_pct, double max_seconds, int probe_every, bool timed) {
  PhaseResult r;
  const std::uint64_t t0 = NowNs();
  const std::uint64_t deadline = t0 + std::uint64_t(max_seconds * 1e9);
  std::uint64_t probe_countdown = probe_every > 0 ? std::uint64_t(probe_every) : 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::size_t p = next(i);
    const bool write = write_pct >= 100 || (write_pct > 0 && int(rng() % 100) < write_pct);
    int probed = -1;
    if (timed && probe_countdown && --probe_countdown == 0) {
      probe_countdown = std::uint64_t(probe_every);
      probed = Resident(m, p);
    }
    const std::uint64_t a = timed ? NowNs() : 0;
    Access(m, c, p, write);
    if (timed) {
      const std::uint64_t b = NowNs();
      r.all.Add(b - a);
      if (probed == 0) r.paged_in.Add(b - a);
      if (probed == 1) r.resident.Add(b - a);
      if ((i & 1023) == 1023 && b > deadline) {
        r.accesses = i + 1;
        r.truncated = i + 1 < n;
        r.seconds = double(b - t0) / 1e9;
        return r;
      }
    }
  }
  r.accesses = n;
  r.seconds = double(NowNs() - t0) / 1e9;
  return r;
}

void AddPhase(Json& j, const std::string& prefix, const PhaseResult& r) {
  j.Num(prefix + "seconds", r.seconds);
  j.Int(prefix + "accesses", r.accesses);
  j.Bool(prefix + "truncated", r.truncated);
  j.Num(prefix + "accesses_per_s", r.seconds > 0 ? double(r.accesses) / r.seconds : 0);
  j.Num(prefix + "mb_per_s", r.seconds > 0 ? double(r.accesses) * kPage / 1e6 / r.seconds : 0);
  j.Int(prefix + "access_p50_ns", r.all.Percentile(0.50));
  j.Int(prefix + "access_p99_ns", r.all.Percentile(0.99));
  j.Int(prefix + "probed_pagein", r.paged_in.count());
  j.Int(prefix + "probed_resident", r.resident.count());
  j.Int(prefix + "pagein_p50_ns", r.paged_in.Percentile(0.50));
  j.Int(prefix + "pagein_p99_ns", r.paged_in.Percentile(0.99));
  j.Int(prefix + "resident_p50_ns", r.resident.Percentile(0.50));
}

void AddSwapStats(Json& j, const std::string& prefix, const uvmem::SwapStats& s) {
  j.Int(prefix + "pages_swapped_out", s.pages_swapped_out);
  j.Int(prefix + "pages_swapped_in", s.pages_swapped_in);
  j.Int(prefix + "bytes_written", s.bytes_written);
  j.Int(prefix + "bytes_read", s.bytes_read);
  j.Int(prefix + "clean_pages_dropped", s.clean_pages_dropped);
  j.Int(prefix + "refaults", s.refaults);
  j.Int(prefix + "readahead_pages", s.readahead_pages);
  j.Int(prefix + "readahead_hits", s.readahead_hits);
  j.Int(prefix + "direct_reclaims", s.direct_reclaims);
  j.Int(prefix + "reclaim_passes", s.reclaim_passes);
  j.Int(prefix + "write_errors", s.write_errors);
  j.Int(prefix + "read_errors", s.read_errors);
  j.Int(prefix + "checksum_errors", s.checksum_errors);
  j.Int(prefix + "budget_exhausted", s.budget_exhausted);
}

uvmem::SwapStats Delta(const uvmem::SwapStats& b, const uvmem::SwapStats& a) {
  uvmem::SwapStats d = b;
  d.pages_swapped_out -= a.pages_swapped_out;
  d.pages_swapped_in -= a.pages_swapped_in;
  d.bytes_written -= a.bytes_written;
  d.bytes_read -= a.bytes_read;
  d.clean_pages_dropped -= a.clean_pages_dropped;
  d.refaults -= a.refaults;
  d.readahead_pages -= a.readahead_pages;
  d.readahead_hits -= a.readahead_hits;
  d.direct_reclaims -= a.direct_reclaims;
  d.reclaim_passes -= a.reclaim_passes;
  return d;
}

int RunWorkload(const std::string& mode) {
  const std::string workload = absl::GetFlag(FLAGS_workload);
  if (workload != "seq" && workload != "uniform" && workload != "zipf") Die("bad --workload");
  const std::size_t ws = absl::GetFlag(FLAGS_ws_mib) << 20;
  const std::size_t budget = absl::GetFlag(FLAGS_budget_mib) << 20;
  const std::size_t pages = ws / kPage;
  const std::string swap_path = absl::GetFlag(FLAGS_swap_path);
  const int write_pct = absl::GetFlag(FLAGS_write_pct);
  const double max_seconds = absl::GetFlag(FLAGS_max_seconds);
  const int probe_every = absl::GetFlag(FLAGS_probe_every);
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));

  Json j;
  j.Str("mode", mode);
  j.Str("workload", workload);
  j.Int("ws_bytes", ws);
  j.Int("budget_bytes", budget);
  j.Int("pages", pages);
  j.Str("cgroup", MemoryCgroupDir());

  Checker checker;
  checker.version.assign(pages, 0);
  std::vector<std::uint32_t> perm;
  std::optional<Zipf> zipf;
  if (workload == "zipf") {
    perm.resize(pages);
    std::iota(perm.begin(), perm.end(), 0u);
    std::shuffle(perm.begin(), perm.end(), rng);
    zipf.emplace(pages, absl::GetFlag(FLAGS_zipf_s));
  }
  j.Int("bookkeeping_bytes", pages * sizeof(std::uint32_t) * (zipf ? 2 : 1));

  Memory mem;
  mem.pages = pages;
  std::unique_ptr<uvmem::Runtime> runtime;
  uvmem::Range range;
  void* mapping = nullptr;
  if (mode == "kernel") {
    mapping = mmap(nullptr, ws, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping == MAP_FAILED) Die(fmt::format("mmap: {}", std::strerror(errno)));
    if (!absl::GetFlag(FLAGS_kernel_thp)) madvise(mapping, ws, MADV_NOHUGEPAGE);
    mem.base = static_cast<char*>(mapping);
  } else {
    uvmem::RuntimeOptions o;
    o.budget_bytes = budget;
    o.swap_path = swap_path;
    const std::size_t swap_max = absl::GetFlag(FLAGS_swap_max_mib) << 20;
    o.swap_max_bytes = swap_max ? swap_max : 2 * ws;
    const std::size_t pool = absl::GetFlag(FLAGS_pool_mib) << 20;
    o.pool_bytes_total = pool ? pool : budget + std::max<std::size_t>(16u << 20, ws / 64);
    if (absl::GetFlag(FLAGS_readahead_pages) != SIZE_MAX) {
      o.readahead_pages = absl::GetFlag(FLAGS_readahead_pages);
    }
    auto rt = uvmem::Runtime::Create(o);
    if (!rt.ok()) Die(fmt::format("Runtime::Create: {}", rt.status().ToString()));
    runtime = std::move(*rt);
    auto r = runtime->Reserve(ws, {.name = "swapbench"});
    if (!r.ok()) Die(fmt::format("Reserve: {}", r.status().ToString()));
    range = std::move(*r);
    mem.base = static_cast<char*>(range.data());
    const uvmem::RuntimeStats s = runtime->Stats();
    j.Bool("uvmem_swap_enabled", s.swap.enabled);
    j.Str("uvmem_swap_device", s.swap.device);
    j.Int("uvmem_budget_pages", s.swap.budget_pages);
    j.Int("uvmem_slots_total", s.swap.slots_total);
    j.Int("uvmem_pool_bytes", o.pool_bytes_total);
    j.Int("uvmem_readahead_pages", o.readahead_pages);
  }

  const auto vm0 = KeyValues("/proc/vmstat");
  const auto disk0 = DiskCounters(swap_path);
  fmt::print(stderr, "[{} {} W={} MiB B={} MiB] populate\n", mode, workload, ws >> 20, budget >> 20);
  std::uint64_t t = NowNs();
  Populate(mem, checker);
  j.Num("populate_seconds", double(NowNs() - t) / 1e9);

  uvmem::SwapStats sw0;
  if (runtime) sw0 = runtime->Stats().swap;
  // This process's storage reads (/proc/self/io read_bytes: bios it submitted, O_DIRECT and
  // the kernel's swap-ins alike), unlike the device counters untouched by other processes.
  auto io0 = KeyValuesColon("/proc/self/io");

  PhaseResult timed;
  if (workload == "seq") {
    fmt::print(stderr, "[{} {}] {} sequential passes\n", mode, workload, absl::GetFlag(FLAGS_passes));
    const std::uint64_t n = std::uint64_t(absl::GetFlag(FLAGS_passes)) * pages;
    timed = Run(mem, checker, n, [&](std::uint64_t i) { return std::size_t(i % pages); }, rng, 100,
                max_seconds, probe_every, true);
  } else {
    std::uniform_real_distribution<double> u01(0.0, 1.0);
    auto next = [&](std::uint64_t) -> std::size_t {
      if (zipf) return perm[(*zipf)(u01(rng))];
      return std::size_t(rng() % pages);
    };
    const auto warm = std::uint64_t(absl::GetFlag(FLAGS_warmup_per_page) * double(pages));
    fmt::print(stderr, "[{} {}] warm-up {} accesses\n", mode, workload, warm);
    Run(mem, checker, warm, next, rng, write_pct, 1e9, 0, false);
    if (runtime) sw0 = runtime->Stats().swap;
    io0 = KeyValuesColon("/proc/self/io");
    const auto n = std::uint64_t(absl::GetFlag(FLAGS_accesses_per_page) * double(pages));
    fmt::print(stderr, "[{} {}] {} timed accesses\n", mode, workload, n);
    timed = Run(mem, checker, n, next, rng, write_pct, max_seconds, probe_every, true);
  }
  AddPhase(j, "", timed);
  j.Int("mismatches_timed", checker.mismatches);
  {
    auto io1 = KeyValuesColon("/proc/self/io");
    j.Int("process_read_bytes", io1["read_bytes"] - io0["read_bytes"]);
    j.Int("process_write_bytes", io1["write_bytes"] - io0["write_bytes"]);
  }

  // Memory the process holds, read before verification and release.
  j.Int("vm_rss_kib", StatusKb("VmRSS"));
  j.Int("vm_hwm_kib", StatusKb("VmHWM"));
  j.Int("vm_swap_kib", StatusKb("VmSwap"));
  const std::string cg = MemoryCgroupDir();
  if (!cg.empty()) {
    const auto ms = KeyValues(cg + "/memory.stat");
    auto get = [&](const char* k) { auto it = ms.find(k); return it == ms.end() ? 0 : it->second; };
    j.Int("cgroup_rss_bytes", get("rss") + get("anon"));
    j.Int("cgroup_cache_bytes", get("cache") + get("file"));
    j.Int("cgroup_swap_bytes", get("swap"));
    std::string peak = ReadFile(cg + "/memory.max_usage_in_bytes");
    if (peak.empty()) peak = ReadFile(cg + "/memory.peak");
    j.Int("cgroup_peak_bytes", std::strtoull(peak.c_str(), nullptr, 10));
    std::string limit = ReadFile(cg + "/memory.limit_in_bytes");
    if (limit.empty()) limit = ReadFile(cg + "/memory.max");
    j.Str("cgroup_limit", limit.substr(0, limit.find('\n')));
  }
  const auto vm1 = KeyValues("/proc/vmstat");
  auto vmd = [&](const char* k) {
    auto a = vm0.find(k), b = vm1.find(k);
    return (a == vm0.end() || b == vm1.end()) ? 0 : b->second - a->second;
  };
  j.Int("kernel_pswpin", vmd("pswpin"));
  j.Int("kernel_pswpout", vmd("pswpout"));
  if (const auto disk1 = DiskCounters(swap_path); disk0 && disk1) {
    j.Int("disk_read_bytes", disk1->read_bytes - disk0->read_bytes);
    j.Int("disk_written_bytes", disk1->written_bytes - disk0->written_bytes);
  }
  if (runtime) {
    const uvmem::RuntimeStats s = runtime->Stats();
    AddSwapStats(j, "uvmem_timed_", Delta(s.swap, sw0));
    AddSwapStats(j, "uvmem_total_", s.swap);
    j.Int("uvmem_swapin_p50_ns", s.swap.swapin_latency_p50_ns);
    j.Int("uvmem_swapin_p99_ns", s.swap.swapin_latency_p99_ns);
    j.Int("uvmem_fault_p50_ns", s.fault_latency_p50_ns);
    j.Int("uvmem_fault_p99_ns", s.fault_latency_p99_ns);
    j.Int("uvmem_resident_pages", s.resident_pages);
    std::uint64_t peak = 0;
    for (const auto& n : s.nodes) peak += n.peak_used_frames;
    j.Int("uvmem_peak_used_frames", peak);
    j.Int("uvmem_metadata_bytes", s.metadata_bytes);
    j.Int("uvmem_slots_used", s.swap.slots_used);
    const auto rs = range.Stats();
    j.Int("uvmem_range_peak_resident_pages", rs.peak_resident_pages);
    j.Int("uvmem_range_swapped_pages", rs.swapped_pages);
    j.Int("uvmem_range_oom_kills", rs.oom_kills);
  }

  std::uint64_t bad_pages = 0;
  if (absl::GetFlag(FLAGS_verify_all)) {
    fmt::print(stderr, "[{} {}] verify every page\n", mode, workload);
    t = NowNs();
    bad_pages = VerifyAll(mem, checker);
    j.Num("verify_seconds", double(NowNs() - t) / 1e9);
  }
  j.Int("verify_bad_pages", bad_pages);
  j.Int("mismatches", checker.mismatches);
  if (runtime) {
    const uvmem::RuntimeStats s = runtime->Stats();
    j.Int("uvmem_final_checksum_errors", s.swap.checksum_errors);
    j.Int("uvmem_final_read_errors", s.swap.read_errors);
    j.Int("uvmem_final_swapin_p50_ns", s.swap.swapin_latency_p50_ns);
    j.Int("uvmem_final_swapin_p99_ns", s.swap.swapin_latency_p99_ns);
    if (auto st = range.Release(); !st.ok()) Die(fmt::format("Release: {}", st.ToString()));
  }
  if (mapping) munmap(mapping, ws);
  fmt::print("{}\n", j.Dump());
  std::fflush(stdout);
  return checker.mismatches == 0 ? 0 : 3;
}

// ----------------------------------------------------------------------------------------
// Raw bandwidth of the file system under --swap_path.

int RunRaw() {
  const std::string dir = absl::GetFlag(FLAGS_swap_path);
  const std::size_t bytes = absl::GetFlag(FLAGS_raw_mib) << 20;
  constexpr std::size_t kReq = 1 << 20;
  const std::size_t reqs = bytes / kReq;
  std::string name = dir + "/uvmem-swapbench-raw.XXXXXX";
  const int fd = mkstemp(name.data());
  if (fd < 0) Die(fmt::format("mkstemp {}: {}", name, std::strerror(errno)));
  unlink(name.c_str());  // gone with the process, whatever happens
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_DIRECT) != 0) {
    Die(fmt::format("O_DIRECT on {}: {}", dir, std::strerror(errno)));
  }
  void* buf = nullptr;
  if (posix_memalign(&buf, kPage, 2 * kReq) != 0) Die("posix_memalign");
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  for (std::size_t i = 0; i < 2 * kReq / 8; ++i) static_cast<std::uint64_t*>(buf)[i] = rng();
  char* b = static_cast<char*>(buf);

  auto io = [&](bool write, std::size_t off, char* p, std::size_t len) {
    const ssize_t n = write ? pwrite(fd, p, len, off) : pread(fd, p, len, off);
    if (n != ssize_t(len)) Die(fmt::format("{} at {}: {}", write ? "pwrite" : "pread", off,
                                           n < 0 ? std::strerror(errno) : "short"));
  };
  Json j;
  j.Str("mode", "raw");
  j.Str("dir", dir);
  j.Int("file_bytes", bytes);
  j.Int("request_bytes", kReq);

  fmt::print(stderr, "[raw] sequential write {} MiB (fresh file, O_DIRECT, 1 MiB)\n", bytes >> 20);
  std::uint64_t t = NowNs();
  for (std::size_t i = 0; i < reqs; ++i) io(true, i * kReq, b, kReq);
  if (fdatasync(fd) != 0) Die("fdatasync");
  double s = double(NowNs() - t) / 1e9;
  j.Num("seq_write_mb_per_s", double(bytes) / 1e6 / s);

  fmt::print(stderr, "[raw] sequential read\n");
  t = NowNs();
  for (std::size_t i = 0; i < reqs; ++i) io(false, i * kReq, b + kReq, kReq);
  s = double(NowNs() - t) / 1e9;
  j.Num("seq_read_mb_per_s", double(bytes) / 1e6 / s);

  // A swap scan: read 1 MiB from one half while writing 1 MiB to the other, alternating.
  fmt::print(stderr, "[raw] read+write mix\n");
  const std::size_t half = reqs / 2;
  t = NowNs();
  for (std::size_t i = 0; i < half; ++i) {
    io(false, i * kReq, b + kReq, kReq);
    io(true, (half + i) * kReq, b, kReq);
  }
  if (fdatasync(fd) != 0) Die("fdatasync");
  s = double(NowNs() - t) / 1e9;
  j.Num("rw_mix_read_mb_per_s", double(half * kReq) / 1e6 / s);
  j.Num("rw_mix_total_mb_per_s", double(2 * half * kReq) / 1e6 / s);

  fmt::print(stderr, "[raw] 4 KiB random reads, QD1\n");
  Histogram h;
  const std::uint64_t deadline = NowNs() + std::uint64_t(absl::GetFlag(FLAGS_raw_random_seconds) * 1e9);
  const std::uint64_t t0 = NowNs();
  std::uint64_t n = 0;
  for (std::uint64_t now = t0; now < deadline; ++n) {
    const std::size_t off = (rng() % (bytes / kPage)) * kPage;
    io(false, off, b + kReq, kPage);
    const std::uint64_t end = NowNs();
    h.Add(end - now);
    now = end;
  }
  s = double(NowNs() - t0) / 1e9;
  j.Num("rand4k_read_iops", double(n) / s);
  j.Int("rand4k_read_p50_ns", h.Percentile(0.5));
  j.Int("rand4k_read_p99_ns", h.Percentile(0.99));
  close(fd);
  free(buf);
  fmt::print("{}\n", j.Dump());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "swap workloads over a working set larger than a budget: --mode=kernel|uvmem|raw");
  absl::ParseCommandLine(argc, argv);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "raw") return RunRaw();
  if (mode == "kernel" || mode == "uvmem") return RunWorkload(mode);
  Die("bad --mode (kernel, uvmem or raw)");
}
