// numa_bench — memory bandwidth and latency by NUMA placement: uvmem's ranges against the
// kernel's own memory placed by mbind, in one run.
//
// For each provider and placement it maps three buffers of N bytes (--size_mb, default
// 256 MiB each), touches every page once (untimed: the first touch places the memory, and
// uvmem's pages come through its fault threads), checks where the pages landed, then
// times, best of --reps:
//   memset   each thread sets its slice of buffer a                  bytes counted: 1 × N
//   memcpy   a → b, slice by slice                                   2 × N
//   triad    a[i] = b[i] + s × c[i] over doubles (STREAM's triad)    3 × N
//   chase    one thread follows a random cyclic permutation of the 64-byte lines of
//            buffer a (each load depends on the one before): ns per load
// GB/s are 10^9 bytes per second, counted as STREAM does (no write-allocate traffic).
//
// Providers:
//   kernel   mmap + mbind (MPOL_BIND to one node, MPOL_INTERLEAVE over all) before the
//            first touch; 4 KiB pages (MADV_NOHUGEPAGE) like uvmem's, unless --kernel_thp.
//   uvmem    Runtime::Reserve ranges with NumaPolicy::Bind(node) / Interleave(all nodes),
//            one runtime whose pool holds 3 N + 32 MiB per node.
// Placements, all from the CPUs of the home node (--home_node, default 0):
//   local       memory on the home node
//   remote      memory on the node farthest from it by numa_distance (ties: the next
//               node number after home), or --remote_node
//   interleave  pages spread over every node with memory
// remote and interleave need two nodes; on a one-node machine only local runs, and the
// output says so.
//
// Threads (--threads, default 1) are pinned one per CPU of the home node (round robin) with
// numa_sched_setaffinity; bandwidth tests split the buffers among them, the chase runs on
// the first.
//
// Placement is checked after the first touch and again after the tests with move_pages(2)
// (status query, every page of the three buffers). A placement with less than
// --min_fraction of its pages on the intended node(s) — for interleave also a node holding
// less than half its share — is marked WRONG, and with --check the exit status is 1. (With
// the kernel's NUMA balancing on, uvmem's pages have been seen to migrate to the home node
// during a run: docs/benchmarks.md#numa.) Data is checked too (the first touch's bytes,
// memcpy pages, triad values, the chase returning to its start): a mismatch is reported
// and the exit status is 1.
//
// Output: a table on stdout (and the ratios remote/local, interleave/local per provider and
// uvmem/kernel per test and placement), progress on stderr; --csv=FILE writes one row per
// (provider, placement, test): provider,placement,memory_nodes,cpu_node,test,value,unit
// (memory_nodes joined with '+', e.g. 0+1; tests memset, memcpy, triad in GB/s, chase in
// ns, placement as the fraction of pages on the intended nodes and placement_ok as 1 or 0,
// the check's verdict); --json=FILE writes every figure as one JSON object.
// bench/numa/run_numa_bench.sh runs it and plots the CSV.
//
//   numa_bench [--size_mb=256] [--reps=5] [--threads=1] [--home_node=0] [--remote_node=-1]
//              [--providers=kernel,uvmem] [--csv=FILE] [--json=FILE] [--quick] [--check]
//              [--kernel_thp] [--nokernel_mbind] [--nouse_move] [--min_fraction=0.99]
//              [--seed=42]
//
// It reads nothing from /proc or /sys itself (libnuma does) but kernel.numa_balancing, for
// the report, and goes on without it: it runs in a minimal guest.
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <fmt/format.h>
#include <numa.h>
#include <numaif.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "json_record.h"
#include "uvmem/runtime.h"

ABSL_FLAG(int, size_mb, 256, "MiB per buffer (three buffers per placement; the chase uses one)");
ABSL_FLAG(int, reps, 5, "repetitions of each test; the best is reported");
ABSL_FLAG(int, threads, 1, "threads, pinned to the CPUs of --home_node (the chase uses one)");
ABSL_FLAG(int, home_node, 0, "the node whose CPUs run the tests ('local' memory is there)");
ABSL_FLAG(int, remote_node, -1, "memory node of 'remote' (-1: the farthest from home)");
ABSL_FLAG(std::vector<std::string>, providers, std::vector<std::string>({"kernel", "uvmem"}),
          "providers to run, comma-separated, in this order: kernel, uvmem");
ABSL_FLAG(std::string, csv, "", "write one row per (provider, placement, test) to this file");
ABSL_FLAG(std::string, json, "", "write every figure as one JSON object to this file");
ABSL_FLAG(bool, quick, false, "smoke run: --size_mb=8 --reps=1 (the test suite runs this)");
ABSL_FLAG(bool, check, false, "exit 1 when a placement is wrong or a provider cannot run");
ABSL_FLAG(bool, kernel_thp, false, "kernel provider: MADV_HUGEPAGE instead of MADV_NOHUGEPAGE");
ABSL_FLAG(bool, kernel_mbind, true,
          "kernel provider: mbind before the first touch (false: the node of the touching CPU "
          "decides, so remote and interleave come out wrong: a test of the placement check)");
ABSL_FLAG(bool, use_move, true, "uvmem: RuntimeOptions::use_move (false: the UFFDIO_COPY path)");
ABSL_FLAG(double, min_fraction, 0.99, "least fraction of pages on the intended node(s)");
ABSL_FLAG(std::uint64_t, seed, 42, "seed of the chase's random cycle");

namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kLine = 64;
constexpr double kTriadScalar = 3.0;

[[noreturn]] void Die(const std::string& what) {
  std::fflush(stdout);
  fmt::print(stderr, "numa_bench: {}\n", what);
  std::exit(1);
}

std::uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::uint64_t(ts.tv_sec) * 1000000000u + std::uint64_t(ts.tv_nsec);
}

std::string JoinNodes(const std::vector<int>& nodes, const char* sep) {
  std::string s;
  for (int n : nodes) s += (s.empty() ? "" : sep) + std::to_string(n);
  return s;
}

// ----------------------------------------------------------------------------------------
// The machine, as libnuma sees it.

struct Machine {
  bool numa = false;                     // numa_available() >= 0
  std::vector<int> nodes;                // configured nodes (numa_nodes_ptr up to numa_max_node())
  std::vector<int> memory_nodes;         // of those, the ones with memory this process may use
  std::map<int, std::vector<int>> cpus;  // node -> its CPUs this process may run on
  int Distance(int a, int b) const {
    const int d = numa ? numa_distance(a, b) : 0;
    return d > 0 ? d : (a == b ? 10 : 20);
  }
};

Machine DetectMachine() {
  Machine m;
  m.numa = numa_available() >= 0;
  const int ncpus = int(sysconf(_SC_NPROCESSORS_CONF));
  if (!m.numa) {
    m.nodes = m.memory_nodes = {0};
    for (int c = 0; c < ncpus; ++c) m.cpus[0].push_back(c);
    return m;
  }
  bitmask* allowed = numa_allocate_cpumask();
  if (numa_sched_getaffinity(0, allowed) < 0)
    Die(fmt::format("numa_sched_getaffinity: {}", std::strerror(errno)));
  bitmask* node_cpus = numa_allocate_cpumask();
  // numa_max_possible_node() is 1023 on a one-node machine: iterate configured nodes only.
  const int max_node = numa_max_node();
  for (int n = 0; n <= max_node; ++n) {
    if (!numa_bitmask_isbitset(numa_nodes_ptr, unsigned(n))) continue;
    m.nodes.push_back(n);
    long long free_bytes = 0;
    if (numa_bitmask_isbitset(numa_all_nodes_ptr, unsigned(n)) &&
        numa_node_size64(n, &free_bytes) > 0) {
      m.memory_nodes.push_back(n);
    }
    numa_bitmask_clearall(node_cpus);
    if (numa_node_to_cpus(n, node_cpus) == 0) {
      for (unsigned c = 0; c < node_cpus->size; ++c) {
        if (numa_bitmask_isbitset(node_cpus, c) && numa_bitmask_isbitset(allowed, c))
          m.cpus[n].push_back(int(c));
      }
    }
  }
  numa_free_cpumask(node_cpus);
  numa_free_cpumask(allowed);
  if (m.nodes.empty()) m.nodes = {0};
  return m;
}

// ----------------------------------------------------------------------------------------
// A team of pinned threads that run one job at a time.

class Team {
 public:
  // Starts `n` threads, thread i pinned to cpus[i % cpus.size()] (none when `pin` is false).
  Team(int n, const std::vector<int>& cpus, bool pin)
      : n_(n), start_(n + 1), done_(n + 1), begin_ns_(n), end_ns_(n), pin_errors_(0) {
    for (int i = 0; i < n; ++i) {
      const int cpu = cpus.empty() ? -1 : cpus[std::size_t(i) % cpus.size()];
      threads_.emplace_back([this, i, cpu, pin] { Loop(i, pin ? cpu : -1); });
    }
    Run([](int, int) {});  // every thread pinned before the first real job
    if (pin_errors_.load() > 0) Die("numa_sched_setaffinity refused to pin a thread to its CPU");
  }
  ~Team() {
    stop_ = true;
    start_.arrive_and_wait();
    for (auto& t : threads_) t.join();
  }
  Team(const Team&) = delete;
  Team& operator=(const Team&) = delete;

  int size() const { return n_; }

  // Runs job(thread, threads) on every thread at once; returns ns from the first thread's
  // start to the last thread's end.
  std::uint64_t Run(const std::function<void(int, int)>& job) {
    job_ = &job;
    start_.arrive_and_wait();
    done_.arrive_and_wait();
    return *std::max_element(end_ns_.begin(), end_ns_.end()) -
           *std::min_element(begin_ns_.begin(), begin_ns_.end());
  }

 private:
  void Loop(int i, int cpu) {
    if (cpu >= 0) {
      bitmask* mask = numa_allocate_cpumask();
      numa_bitmask_setbit(mask, unsigned(cpu));
      if (numa_sched_setaffinity(0, mask) < 0) pin_errors_.fetch_add(1);
      numa_free_cpumask(mask);
    }
    for (;;) {
      start_.arrive_and_wait();
      if (stop_) return;
      begin_ns_[std::size_t(i)] = NowNs();
      (*job_)(i, n_);
      end_ns_[std::size_t(i)] = NowNs();
      done_.arrive_and_wait();
    }
  }

  const int n_;
  std::barrier<> start_, done_;
  const std::function<void(int, int)>* job_ = nullptr;
  bool stop_ = false;  // written before start_'s phase completes; read after it
  std::vector<std::uint64_t> begin_ns_, end_ns_;
  std::atomic<int> pin_errors_;
  std::vector<std::thread> threads_;
};

// Thread t's share [first, second) of `units` units.
std::pair<std::size_t, std::size_t> Slice(std::size_t units, int t, int n) {
  return {units * std::size_t(t) / std::size_t(n), units * std::size_t(t + 1) / std::size_t(n)};
}

// ----------------------------------------------------------------------------------------
// Placements and providers.

struct Placement {
  std::string name;        // local, remote, interleave
  std::vector<int> nodes;  // memory nodes: one for bind, all for interleave
  bool interleave = false;
};

// One buffer of N bytes from a provider; unmapped / released when destroyed.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual char* data() const = 0;
};

class KernelBuffer : public Buffer {
 public:
  KernelBuffer(char* p, std::size_t n) : p_(p), n_(n) {}
  ~KernelBuffer() override { munmap(p_, n_); }
  char* data() const override { return p_; }

 private:
  char* p_;
  std::size_t n_;
};

class UvmemBuffer : public Buffer {
 public:
  explicit UvmemBuffer(uvmem::Range r) : r_(std::move(r)) {}
  ~UvmemBuffer() override {
    if (auto s = r_.Release(); !s.ok())
      fmt::print(stderr, "numa_bench: Range::Release: {}\n", s.ToString());
  }
  char* data() const override { return static_cast<char*>(r_.data()); }
  const uvmem::Range& range() const { return r_; }

 private:
  uvmem::Range r_;
};

// mmap + mbind before any page exists, so the first touch allocates by the policy.
std::unique_ptr<Buffer> KernelAlloc(const Machine& m, const Placement& pl, std::size_t bytes,
                                    bool thp) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) Die(fmt::format("mmap of {} bytes: {}", bytes, std::strerror(errno)));
  // Fails only on kernels without THP, where there is nothing to turn off.
  (void)madvise(p, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  if (m.numa && absl::GetFlag(FLAGS_kernel_mbind)) {
    bitmask* mask = numa_allocate_nodemask();
    for (int n : pl.nodes) numa_bitmask_setbit(mask, unsigned(n));
    // maxnode is one more than the mask's bits, as libnuma passes it.
    const long rc = mbind(p, bytes, pl.interleave ? MPOL_INTERLEAVE : MPOL_BIND, mask->maskp,
                          mask->size + 1, 0);
    const int err = errno;
    numa_free_nodemask(mask);
    if (rc != 0)
      Die(fmt::format("mbind ({} to node(s) {}): {}", pl.name, JoinNodes(pl.nodes, ","),
                      std::strerror(err)));
  }
  return std::make_unique<KernelBuffer>(static_cast<char*>(p), bytes);
}

std::unique_ptr<Buffer> UvmemAlloc(uvmem::Runtime& rt, const Machine& m, const Placement& pl,
                                   std::size_t bytes, const char* name) {
  uvmem::NumaPolicy policy;
  if (!m.numa) {
    policy = uvmem::NumaPolicy::Local();
  } else if (pl.interleave) {
    std::vector<uvmem::NodeId> ids;
    for (int n : pl.nodes) ids.push_back(uvmem::NodeId{n});
    policy = uvmem::NumaPolicy::Interleave(std::move(ids));
  } else {
    policy = uvmem::NumaPolicy::Bind(uvmem::NodeId{pl.nodes[0]});
  }
  auto r = rt.Reserve(
      bytes, {.name = fmt::format("numa-{}-{}", pl.name, name), .numa = std::move(policy)});
  if (!r.ok()) Die(fmt::format("uvmem Reserve ({} {}): {}", pl.name, name, r.status().ToString()));
  return std::make_unique<UvmemBuffer>(std::move(*r));
}

// ----------------------------------------------------------------------------------------
// Placement check: move_pages(2) with nodes = NULL reports the node of every page.

struct PlacementCheck {
  bool checked = false;
  std::uint64_t pages = 0;                // pages queried
  std::map<int, std::uint64_t> per_node;  // node -> pages there
  std::uint64_t missing = 0;              // pages with no node (not present, or an error)
  std::uint64_t hinted = 0;               // pages with no node until read once (below)
  int first_error = 0;                    // errno of the first page without a node
  std::string missing_where;              // "buffer b, pages 1024-2047" for the first few runs
  double fraction = 0;                    // pages on the intended node(s)
  bool ok = true;
  std::string why;  // when not ok
};

void QueryPages(const char* base, std::size_t bytes, char name, PlacementCheck& pc) {
  constexpr std::size_t kBatch = 4096;
  std::vector<void*> pages(kBatch);
  std::vector<int> status(kBatch);
  char run_name = 0;
  std::size_t run_begin = 0, run_end = 0;
  int runs = 0;
  auto flush = [&] {
    if (run_name == 0) return;
    if (++runs <= 4) {
      pc.missing_where += fmt::format("{}{} pages {}-{}", pc.missing_where.empty() ? "" : ", ",
                                      run_name, run_begin, run_end - 1);
    } else if (runs == 5) {
      pc.missing_where += ", ...";
    }
    run_name = 0;
  };
  for (std::size_t off = 0; off < bytes; off += kBatch * kPage) {
    const std::size_t n = std::min(kBatch, (bytes - off) / kPage);
    for (std::size_t i = 0; i < n; ++i) pages[i] = const_cast<char*>(base + off + i * kPage);
    if (move_pages(0, n, pages.data(), nullptr, status.data(), 0) != 0) {
      Die(fmt::format("move_pages (status query of {} pages): {}", n, std::strerror(errno)));
    }
    // A page without a node may be present all the same: the kernel's NUMA balancing
    // turns PTEs into PROT_NONE hinting entries, which move_pages reports as -ENOENT on
    // some kernels (seen on 6.1). Reading the page takes the hinting fault (the kernel may
    // migrate the page then: the query below sees where it is); ask again.
    std::vector<std::size_t> again;
    for (std::size_t i = 0; i < n; ++i) {
      if (status[i] < 0) again.push_back(i);
    }
    if (!again.empty()) {
      std::vector<void*> retry_pages;
      std::vector<int> retry_status(again.size());
      for (std::size_t i : again) {
        (void)*static_cast<const volatile char*>(pages[i]);
        retry_pages.push_back(pages[i]);
      }
      if (move_pages(0, retry_pages.size(), retry_pages.data(), nullptr, retry_status.data(), 0) !=
          0) {
        Die(fmt::format("move_pages (status query of {} pages): {}", retry_pages.size(),
                        std::strerror(errno)));
      }
      for (std::size_t k = 0; k < again.size(); ++k) {
        if (retry_status[k] >= 0) ++pc.hinted;
        status[again[k]] = retry_status[k];
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (status[i] >= 0) {
        ++pc.per_node[status[i]];
        continue;
      }
      ++pc.missing;
      if (pc.first_error == 0) pc.first_error = -status[i];
      // Runs of pages without a node, for the report: "b 1024-2047".
      const std::size_t page = off / kPage + i;
      if (run_end == page && run_name == name) {
        run_end = page + 1;
      } else {
        flush();
        run_name = name;
        run_begin = page;
        run_end = page + 1;
      }
    }
    pc.pages += n;
  }
  flush();
}

PlacementCheck CheckPlacement(const Machine& m, const Placement& pl,
                              const std::vector<const char*>& bufs, std::size_t bytes,
                              double min_fraction) {
  PlacementCheck pc;
  if (!m.numa) {
    pc.why = "not checked: no NUMA support in this kernel";
    return pc;
  }
  pc.checked = true;
  for (std::size_t i = 0; i < bufs.size(); ++i) QueryPages(bufs[i], bytes, char('a' + i), pc);
  std::uint64_t on_target = 0;
  for (int n : pl.nodes) on_target += pc.per_node.count(n) ? pc.per_node.at(n) : 0;
  pc.fraction = pc.pages ? double(on_target) / double(pc.pages) : 0;
  if (pc.fraction < min_fraction) {
    pc.ok = false;
    pc.why = fmt::format("only {:.1f} % of the pages on node(s) {}", pc.fraction * 100,
                         JoinNodes(pl.nodes, ","));
  } else if (pl.interleave && pl.nodes.size() > 1) {
    const double share = 1.0 / double(pl.nodes.size());
    for (int n : pl.nodes) {
      const double f = pc.per_node.count(n) ? double(pc.per_node.at(n)) / double(pc.pages) : 0;
      if (f < share / 2) {
        pc.ok = false;
        pc.why = fmt::format("node {} holds {:.1f} % of the pages, not about {:.1f} %", n, f * 100,
                             share * 100);
        break;
      }
    }
  }
  return pc;
}

// "node 0: 100.0 %" or "0: 50.1 %, 1: 49.9 %", plus pages without a node.
std::string Distribution(const PlacementCheck& pc) {
  if (!pc.checked) return "not checked";
  std::string s;
  for (const auto& [node, n] : pc.per_node) {
    s += fmt::format("{}{}: {:.1f} %", s.empty() ? "" : ", ", node,
                     100.0 * double(n) / double(pc.pages));
  }
  if (pc.hinted > 0) {
    s += fmt::format("{}{} pages had no node until read (NUMA-balancing hinting)",
                     s.empty() ? "" : "; ", pc.hinted);
  }
  if (pc.missing > 0) {
    s += fmt::format("{}no node: {:.1f} % ({}: {})", s.empty() ? "" : ", ",
                     100.0 * double(pc.missing) / double(pc.pages), std::strerror(pc.first_error),
                     pc.missing_where);
  }
  return s;
}

// ----------------------------------------------------------------------------------------
// The tests.

struct Result {
  std::string provider;
  Placement placement;
  PlacementCheck check;
  double first_touch_ms = 0;
  std::vector<double> memset_gbs, memcpy_gbs, triad_gbs, chase_ns;  // every repetition
  double Best(const std::vector<double>& v, bool lower) const {
    if (v.empty()) return -1;
    return lower ? *std::min_element(v.begin(), v.end()) : *std::max_element(v.begin(), v.end());
  }
  double best_memset() const { return Best(memset_gbs, false); }
  double best_memcpy() const { return Best(memcpy_gbs, false); }
  double best_triad() const { return Best(triad_gbs, false); }
  double best_chase() const { return Best(chase_ns, true); }
  std::uint64_t data_errors = 0;
  std::string uvmem_counters;  // the ranges' fault counters (uvmem only)
  std::string check_after;     // the pages by node after the tests
};

// The chase's cycle: next[i] is the line after line i, one cycle through every line
// (Sattolo's algorithm).
std::vector<std::uint32_t> MakeCycle(std::size_t lines, std::uint64_t seed) {
  std::vector<std::uint32_t> next(lines);
  for (std::size_t i = 0; i < lines; ++i) next[i] = std::uint32_t(i);
  std::mt19937_64 rng(seed);
  for (std::size_t i = lines - 1; i > 0; --i) {
    const std::size_t j = std::uniform_int_distribution<std::size_t>(0, i - 1)(rng);
    std::swap(next[i], next[j]);
  }
  return next;
}

double Gbs(double bytes, std::uint64_t ns) { return ns ? bytes / double(ns) : 0; }

// Runs every test on three touched buffers a, b, c of `bytes` each.
void RunTests(Team& team, char* a, char* b, char* c, std::size_t bytes, int reps,
              const std::vector<std::uint32_t>& cycle, Result& res) {
  const std::size_t lines = bytes / kLine;
  const std::size_t pages = bytes / kPage;
  const std::size_t doubles = bytes / sizeof(double);

  // memset: thread t sets its pages of a.
  for (int r = 0; r < reps; ++r) {
    const int value = 0x11 + r;
    const std::uint64_t ns = team.Run([&](int t, int n) {
      auto [p0, p1] = Slice(pages, t, n);
      std::memset(a + p0 * kPage, value, (p1 - p0) * kPage);
    });
    res.memset_gbs.push_back(Gbs(double(bytes), ns));
  }
  // memcpy: a -> b.
  for (int r = 0; r < reps; ++r) {
    const std::uint64_t ns = team.Run([&](int t, int n) {
      auto [p0, p1] = Slice(pages, t, n);
      std::memcpy(b + p0 * kPage, a + p0 * kPage, (p1 - p0) * kPage);
    });
    res.memcpy_gbs.push_back(Gbs(2.0 * double(bytes), ns));
  }
  for (std::size_t p = 0; p < pages; p += 61) {
    if (std::memcmp(a + p * kPage, b + p * kPage, kPage) != 0) ++res.data_errors;
  }

  // triad: a = b + s * c over doubles; b and c set first (untimed).
  auto* da = reinterpret_cast<double*>(a);
  auto* db = reinterpret_cast<double*>(b);
  auto* dc = reinterpret_cast<double*>(c);
  team.Run([&](int t, int n) {
    auto [i0, i1] = Slice(doubles, t, n);
    for (std::size_t i = i0; i < i1; ++i) {
      db[i] = double(i & 1023);
      dc[i] = 0.5;
    }
  });
  for (int r = 0; r < reps; ++r) {
    const std::uint64_t ns = team.Run([&](int t, int n) {
      auto [i0, i1] = Slice(doubles, t, n);
      double* __restrict x = da;
      const double* __restrict y = db;
      const double* __restrict z = dc;
      for (std::size_t i = i0; i < i1; ++i) x[i] = y[i] + kTriadScalar * z[i];
    });
    res.triad_gbs.push_back(Gbs(3.0 * double(bytes), ns));
  }
  for (std::size_t i = 0; i < doubles; i += 4099) {
    if (da[i] != double(i & 1023) + kTriadScalar * 0.5) ++res.data_errors;
  }

  // chase: line i of a holds the address of line cycle[i] (written untimed, in order).
  team.Run([&](int t, int n) {
    auto [l0, l1] = Slice(lines, t, n);
    for (std::size_t i = l0; i < l1; ++i) {
      *reinterpret_cast<char**>(a + i * kLine) = a + std::size_t{cycle[i]} * kLine;
    }
  });
  for (int r = 0; r < reps; ++r) {
    char* end = nullptr;
    const std::uint64_t ns = team.Run([&](int t, int) {
      if (t != 0) return;
      char* p = a;
      for (std::size_t i = 0; i < lines; ++i) p = *reinterpret_cast<char* const*>(p);
      end = p;
    });
    res.chase_ns.push_back(double(ns) / double(lines));
    if (end != a) ++res.data_errors;  // one whole cycle comes back to where it started
  }
}

// Maps three buffers for `pl` (allocate), touches them, checks placement, runs the tests.
Result RunPlacement(const std::string& provider, const Machine& m, const Placement& pl, Team& team,
                    std::size_t bytes, int reps, const std::vector<std::uint32_t>& cycle,
                    const std::function<std::unique_ptr<Buffer>(const char*)>& allocate) {
  Result res;
  res.provider = provider;
  res.placement = pl;
  fmt::print(stderr, "[{} {}] memory on node(s) {}\n", provider, pl.name, JoinNodes(pl.nodes, ","));
  std::unique_ptr<Buffer> bufs[3] = {allocate("a"), allocate("b"), allocate("c")};
  char* a = bufs[0]->data();
  char* b = bufs[1]->data();
  char* c = bufs[2]->data();
  const std::size_t pages = bytes / kPage;
  // First touch: every page written by the thread that will use it.
  const std::uint64_t touch_ns = team.Run([&](int t, int n) {
    auto [p0, p1] = Slice(pages, t, n);
    for (char* buf : {a, b, c}) std::memset(buf + p0 * kPage, 1, (p1 - p0) * kPage);
  });
  res.first_touch_ms = double(touch_ns) / 1e6;
  res.check = CheckPlacement(m, pl, {a, b, c}, bytes, absl::GetFlag(FLAGS_min_fraction));
  // Every page must still hold what the first touch wrote: a page that lost its bytes (made
  // a demand-zero page again) is a data error, whatever the tests write over it later.
  for (int i = 0; i < 3; ++i) {
    const char* buf = bufs[i]->data();
    std::uint64_t lost = 0, first = 0;
    for (std::size_t p = 0; p < pages; ++p) {
      const auto* w = reinterpret_cast<const volatile std::uint64_t*>(buf + p * kPage);
      if (w[0] != 0x0101010101010101ull || w[kPage / 8 - 1] != 0x0101010101010101ull) {
        if (lost++ == 0) first = p;
      }
    }
    if (lost > 0) {
      fmt::print(stderr,
                 "[{} {}] DATA LOST: buffer {}: {} pages no longer hold the first touch's bytes "
                 "(first: page {})\n",
                 provider, pl.name, char('a' + i), lost, first);
      res.data_errors += lost;
    }
  }
  if (!res.check.ok) {
    fmt::print(stderr, "[{} {}] WRONG PLACEMENT: {} ({})\n", provider, pl.name, res.check.why,
               Distribution(res.check));
  }
  RunTests(team, a, b, c, bytes, reps, cycle, res);
  // Again after the tests: pages must not have moved while they were timed (the kernel's
  // NUMA balancing leaves bound and interleaved memory alone, but a wrong policy would not).
  PlacementCheck after = CheckPlacement(m, pl, {a, b, c}, bytes, absl::GetFlag(FLAGS_min_fraction));
  res.check_after = Distribution(after);
  if (!after.ok) {
    fmt::print(stderr, "[{} {}] WRONG PLACEMENT after the tests: {} ({})\n", provider, pl.name,
               after.why, res.check_after);
  }
  if (res.check.ok && !after.ok) {
    after.why += " (after the tests; right after the first touch it was right)";
    res.check = after;
  }
  if (provider == "uvmem") {
    std::uint64_t faults = 0, filled = 0, moved = 0, copied = 0, oom = 0;
    for (const auto& buf : bufs) {
      const uvmem::RangeStats s = static_cast<const UvmemBuffer&>(*buf).range().Stats();
      faults += s.faults;
      filled += s.pages_filled;
      moved += s.pages_moved;
      copied += s.pages_copied;
      oom += s.oom_kills;
    }
    res.uvmem_counters =
        fmt::format("{} faults, {} pages filled ({} moved, {} copied), {} out-of-frame kills",
                    faults, filled, moved, copied, oom);
  }
  if (res.data_errors > 0) {
    fmt::print(stderr, "[{} {}] DATA MISMATCH: {} checks failed\n", provider, pl.name,
               res.data_errors);
  }
  return res;
}

// ----------------------------------------------------------------------------------------
// Report.

std::string Num(double v, int prec) { return v < 0 ? "—" : fmt::format("{:.{}f}", v, prec); }

std::string Ratio(double a, double b) {
  return a < 0 || b <= 0 ? "—" : fmt::format("{:.2f}x", a / b);
}

const Result* Find(const std::vector<Result>& rs, const std::string& provider,
                   const std::string& placement) {
  for (const Result& r : rs) {
    if (r.provider == provider && r.placement.name == placement) return &r;
  }
  return nullptr;
}

void PrintReport(const std::vector<Result>& rs, const std::vector<std::string>& providers,
                 const std::vector<Placement>& placements) {
  fmt::print("{:<8} {:<11} {:>7} {:>12} {:>12} {:>11} {:>9}  {}\n", "provider", "placement",
             "memory", "memset GB/s", "memcpy GB/s", "triad GB/s", "chase ns",
             "placement check (pages by node)");
  for (const Result& r : rs) {
    std::string check =
        r.check.checked ? (r.check.ok ? "ok: " : "WRONG: ") + Distribution(r.check) : "not checked";
    if (!r.check.ok) check += " — " + r.check.why;
    fmt::print("{:<8} {:<11} {:>7} {:>12} {:>12} {:>11} {:>9}  {}\n", r.provider, r.placement.name,
               JoinNodes(r.placement.nodes, "+"), Num(r.best_memset(), 2), Num(r.best_memcpy(), 2),
               Num(r.best_triad(), 2), Num(r.best_chase(), 1), check);
  }
  struct Test {
    const char* name;
    double (Result::*get)() const;
  };
  const Test tests[] = {{"memset", &Result::best_memset},
                        {"memcpy", &Result::best_memcpy},
                        {"triad", &Result::best_triad},
                        {"chase", &Result::best_chase}};
  if (placements.size() > 1) {
    fmt::print(
        "\n# per provider, against local (bandwidth: < 1x is slower; chase latency: > 1x is "
        "slower)\n");
    fmt::print("{:<8} {:<8} {:>14} {:>18}\n", "provider", "test", "remote/local",
               "interleave/local");
    for (const std::string& p : providers) {
      const Result* local = Find(rs, p, "local");
      if (local == nullptr) continue;
      for (const Test& t : tests) {
        const Result* rem = Find(rs, p, "remote");
        const Result* il = Find(rs, p, "interleave");
        fmt::print("{:<8} {:<8} {:>14} {:>18}\n", p, t.name,
                   rem ? Ratio((rem->*t.get)(), (local->*t.get)()) : "—",
                   il ? Ratio((il->*t.get)(), (local->*t.get)()) : "—");
      }
    }
  }
  if (Find(rs, "uvmem", "local") != nullptr && Find(rs, "kernel", "local") != nullptr) {
    fmt::print(
        "\n# uvmem/kernel per test and placement (bandwidth: > 1x uvmem faster; chase: < 1x uvmem "
        "faster)\n");
    fmt::print("{:<11}", "placement");
    for (const Test& t : tests) fmt::print(" {:>8}", t.name);
    fmt::print("\n");
    for (const Placement& pl : placements) {
      const Result* u = Find(rs, "uvmem", pl.name);
      const Result* k = Find(rs, "kernel", pl.name);
      if (u == nullptr || k == nullptr) continue;
      fmt::print("{:<11}", pl.name);
      for (const Test& t : tests) fmt::print(" {:>8}", Ratio((u->*t.get)(), (k->*t.get)()));
      fmt::print("\n");
    }
  }
  for (const Result& r : rs) {
    if (!r.uvmem_counters.empty()) fmt::print("\nuvmem {}: {}", r.placement.name, r.uvmem_counters);
  }
  if (std::any_of(rs.begin(), rs.end(), [](const Result& r) { return !r.uvmem_counters.empty(); }))
    fmt::print("\n");
}

void WriteCsv(const std::string& path, const std::vector<Result>& rs, int home) {
  std::ofstream out(path);
  out << "provider,placement,memory_nodes,cpu_node,test,value,unit\n";
  for (const Result& r : rs) {
    const std::string head = fmt::format("{},{},{},{}", r.provider, r.placement.name,
                                         JoinNodes(r.placement.nodes, "+"), home);
    out << fmt::format("{},memset,{:.4f},GB/s\n", head, r.best_memset());
    out << fmt::format("{},memcpy,{:.4f},GB/s\n", head, r.best_memcpy());
    out << fmt::format("{},triad,{:.4f},GB/s\n", head, r.best_triad());
    out << fmt::format("{},chase,{:.3f},ns\n", head, r.best_chase());
    if (r.check.checked) {
      out << fmt::format("{},placement,{:.6f},fraction\n", head, r.check.fraction);
      out << fmt::format("{},placement_ok,{},bool\n", head, r.check.ok ? 1 : 0);
    }
  }
  if (!out) Die(fmt::format("cannot write {}", path));
}


// kernel.numa_balancing ("0", "1", ...), or "unknown" where /proc/sys is not there. Pages
// of a VMA without a mempolicy (uvmem's ranges have none) are scanned and may be migrated
// by it; bound and interleaved VMAs are left alone.
std::string NumaBalancing() {
  std::ifstream in("/proc/sys/kernel/numa_balancing");
  std::string v;
  if (!(in >> v)) return "unknown";
  return v;
}

std::string LoadAverage() {
  struct sysinfo si {};
  if (sysinfo(&si) != 0) return "";
  const double scale = double(1 << SI_LOAD_SHIFT);
  return fmt::format("{:.2f} {:.2f} {:.2f}", double(si.loads[0]) / scale,
                     double(si.loads[1]) / scale, double(si.loads[2]) / scale);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "memory bandwidth (memset, memcpy, STREAM triad) and pointer-chase latency by NUMA "
      "placement (local, remote, interleave), uvmem ranges against the kernel's memory, in "
      "one run (see the head of bench/numa/numa_bench.cc and docs/benchmarks.md#numa)");
  absl::ParseCommandLine(argc, argv);
  const bool quick = absl::GetFlag(FLAGS_quick);
  const int size_mb = quick ? 8 : absl::GetFlag(FLAGS_size_mb);
  const int reps = quick ? 1 : absl::GetFlag(FLAGS_reps);
  const int nthreads = absl::GetFlag(FLAGS_threads);
  const int home = absl::GetFlag(FLAGS_home_node);
  const bool check = absl::GetFlag(FLAGS_check);
  if (size_mb < 1 || size_mb > (1 << 20)) Die("--size_mb must be in 1..1048576");
  if (reps < 1) Die("--reps must be >= 1");
  if (nthreads < 1 || nthreads > 1024) Die("--threads must be in 1..1024");
  const std::size_t bytes = std::size_t(size_mb) << 20;
  const std::vector<std::string> providers = absl::GetFlag(FLAGS_providers);
  if (providers.empty()) Die("--providers names none (kernel, uvmem)");
  for (const std::string& p : providers) {
    if (p != "kernel" && p != "uvmem")
      Die(fmt::format("--providers: unknown provider '{}' (kernel, uvmem)", p));
  }

  const Machine m = DetectMachine();
  if (std::find(m.nodes.begin(), m.nodes.end(), home) == m.nodes.end()) {
    Die(fmt::format("--home_node={}: no such node (nodes: {})", home, JoinNodes(m.nodes, ",")));
  }
  if (m.cpus.count(home) == 0 || m.cpus.at(home).empty()) {
    Die(fmt::format("--home_node={}: the node has no CPU this process may run on", home));
  }
  if (std::find(m.memory_nodes.begin(), m.memory_nodes.end(), home) == m.memory_nodes.end()) {
    Die(fmt::format("--home_node={}: the node has no memory this process may use", home));
  }
  const std::vector<int>& home_cpus = m.cpus.at(home);

  // Placements: local always; remote and interleave with two memory nodes or more.
  std::vector<Placement> placements = {{"local", {home}, false}};
  std::vector<int> others;
  for (int n : m.memory_nodes) {
    if (n != home) others.push_back(n);
  }
  if (others.empty() && absl::GetFlag(FLAGS_remote_node) >= 0) {
    fmt::print("note: --remote_node={} ignored: no memory node other than {}\n",
               absl::GetFlag(FLAGS_remote_node), home);
  }
  if (!others.empty()) {
    int remote = absl::GetFlag(FLAGS_remote_node);
    if (remote >= 0) {
      if (std::find(others.begin(), others.end(), remote) == others.end()) {
        Die(fmt::format("--remote_node={}: not a memory node other than home (those: {})", remote,
                        JoinNodes(others, ",")));
      }
    } else {
      // The farthest; among equals the first after home in cyclic node order.
      std::stable_sort(others.begin(), others.end(),
                       [&](int x, int y) { return (x > home) > (y > home); });
      remote = others[0];
      for (int n : others) {
        if (m.Distance(home, n) > m.Distance(home, remote)) remote = n;
      }
    }
    placements.push_back({"remote", {remote}, false});
    placements.push_back({"interleave", m.memory_nodes, true});
  }

  // A warning, not an error: free memory leaves out the page cache the kernel would reclaim.
  for (const Placement& pl : placements) {
    for (int n : pl.nodes) {
      long long free_bytes = 0;
      const std::size_t need = 3 * bytes / pl.nodes.size();
      if (m.numa && numa_node_size64(n, &free_bytes) > 0 && free_bytes >= 0 &&
          std::size_t(free_bytes) < need) {
        fmt::print(
            "note: node {} has {} MiB free; {} needs {} MiB there (lower --size_mb if this runs "
            "out of memory)\n",
            n, free_bytes >> 20, pl.name, need >> 20);
      }
    }
  }

  // Pin this thread too: the runtime's fault threads and the team inherit nothing else.
  if (m.numa && numa_run_on_node(home) != 0)
    Die(fmt::format("numa_run_on_node({}): {}", home, std::strerror(errno)));

  utsname u{};
  uname(&u);
  std::string distances;  // the numa_distance matrix, rows separated by "; "
  for (int x : m.nodes) {
    std::string row;
    for (int y : m.nodes) row += fmt::format("{}{}", row.empty() ? "" : " ", m.Distance(x, y));
    distances += (distances.empty() ? "" : "; ") + row;
  }
  fmt::print(
      "# numa_bench: {} MiB per buffer, best of {}, {} thread{} on node {} (CPUs {}); kernel {}\n",
      size_mb, reps, nthreads, nthreads == 1 ? "" : "s", home, JoinNodes(home_cpus, ","),
      u.release);
  const std::string numa_balancing = NumaBalancing();
  fmt::print("# nodes {} (with memory: {}), kernel.numa_balancing {}, distances from node {}: {}\n",
             JoinNodes(m.nodes, ","), JoinNodes(m.memory_nodes, ","), numa_balancing, home, [&] {
               std::string s;
               for (int n : m.nodes)
                 s += fmt::format("{}{}→{}", s.empty() ? "" : ", ", n, m.Distance(home, n));
               return s;
             }());
  fmt::print(
      "# GB/s: 10^9 bytes/s, counted as STREAM does (memset 1x, memcpy 2x, triad 3x the buffer); "
      "chase: ns per "
      "dependent load over a random cycle of all 64-byte lines of one buffer\n");
  if (!m.numa) {
    fmt::print(
        "NUMA is not available on this kernel (numa_available() < 0): local only, placement not "
        "checked\n");
  } else if (placements.size() == 1) {
    fmt::print(
        "remote and interleave placements need two NUMA nodes; this machine has {} (see "
        "docs/benchmarks.md#numa for running on a multi-socket server)\n",
        m.memory_nodes.size());
  }
  if (std::size_t(nthreads) > home_cpus.size()) {
    fmt::print("note: {} threads share the {} CPU(s) of node {}\n", nthreads, home_cpus.size(),
               home);
  }
  std::fflush(stdout);

  uvmem::bench::JsonRecord j;
  j.Str("bench", "numa_bench");
  j.Str("kernel", u.release);
  j.Int("cpus", std::uint64_t(sysconf(_SC_NPROCESSORS_ONLN)));
  j.Bool("numa_available", m.numa);
  j.Str("nodes", JoinNodes(m.nodes, ","));
  j.Str("memory_nodes", JoinNodes(m.memory_nodes, ","));
  j.Str("distances", distances);
  j.Str("numa_balancing", numa_balancing);
  j.Int("home_node", std::uint64_t(home));
  j.Str("home_cpus", JoinNodes(home_cpus, ","));
  j.Int("size_bytes", bytes);
  j.Int("reps", std::uint64_t(reps));
  j.Int("threads", std::uint64_t(nthreads));
  j.Bool("quick", quick);
  j.Bool("kernel_thp", absl::GetFlag(FLAGS_kernel_thp));
  j.Str("loadavg_before", LoadAverage());

  if (bytes / kLine > UINT32_MAX) Die("--size_mb too large for the chase (at most 256 GiB)");
  fmt::print(stderr, "building a random cycle of {} lines\n", bytes / kLine);
  const std::vector<std::uint32_t> cycle = MakeCycle(bytes / kLine, absl::GetFlag(FLAGS_seed));

  std::vector<Result> results;
  bool provider_failed = false;
  {
    Team team(nthreads, home_cpus, m.numa);
    for (const std::string& provider : providers) {
      if (provider == "kernel") {
        const bool thp = absl::GetFlag(FLAGS_kernel_thp);
        for (const Placement& pl : placements) {
          results.push_back(
              RunPlacement(provider, m, pl, team, bytes, reps, cycle,
                           [&](const char*) { return KernelAlloc(m, pl, bytes, thp); }));
        }
        continue;
      }
      // uvmem: one runtime whose pool holds all three buffers on any one node; destroyed
      // before the next provider runs, so its frames go back to the system.
      uvmem::RuntimeOptions opts;
      opts.pool_bytes_per_node = 3 * bytes + (std::size_t{32} << 20);
      opts.use_move = absl::GetFlag(FLAGS_use_move);
      auto rt = uvmem::Runtime::Create(opts);
      if (!rt.ok()) {
        fmt::print("uvmem: no runtime, provider skipped: {}\n", rt.status().ToString());
        provider_failed = true;
        continue;
      }
      j.Bool("uvmem_move_used", (*rt)->uses_move());
      j.Int("uvmem_pool_bytes_per_node", opts.pool_bytes_per_node);
      for (const Placement& pl : placements) {
        results.push_back(
            RunPlacement(provider, m, pl, team, bytes, reps, cycle,
                         [&](const char* name) { return UvmemAlloc(**rt, m, pl, bytes, name); }));
      }
      const uvmem::RuntimeStats st = (*rt)->Stats();
      j.Int("uvmem_faults", st.faults);
      j.Int("uvmem_pages_filled", st.pages_filled);
      j.Int("uvmem_pages_moved", st.pages_moved);
      j.Int("uvmem_pages_copied", st.pages_copied);
      j.Int("uvmem_oom_kills", st.oom_kills);
      fmt::print("uvmem: {} path, {} faults for {} pages filled\n", st.move_used ? "MOVE" : "COPY",
                 st.faults, st.pages_filled);
      if (st.oom_kills > 0) provider_failed = true;
    }
  }
  j.Str("loadavg_after", LoadAverage());

  fmt::print("\n");
  PrintReport(results, providers, placements);

  bool wrong = false;
  std::uint64_t data_errors = 0;
  for (const Result& r : results) {
    const std::string k = r.provider + "_" + r.placement.name + "_";
    j.Str(k + "memory_nodes", JoinNodes(r.placement.nodes, "+"));
    j.Num(k + "memset_gbs", r.best_memset());
    j.Num(k + "memcpy_gbs", r.best_memcpy());
    j.Num(k + "triad_gbs", r.best_triad());
    j.Num(k + "chase_ns", r.best_chase());
    j.List(k + "memset_gbs_reps", r.memset_gbs);
    j.List(k + "memcpy_gbs_reps", r.memcpy_gbs);
    j.List(k + "triad_gbs_reps", r.triad_gbs);
    j.List(k + "chase_ns_reps", r.chase_ns);
    j.Num(k + "first_touch_ms", r.first_touch_ms);
    j.Bool(k + "placement_checked", r.check.checked);
    j.Num(k + "placement_fraction", r.check.fraction);
    j.Bool(k + "placement_ok", r.check.ok);
    j.Str(k + "placement_pages_by_node", Distribution(r.check));
    j.Str(k + "placement_pages_by_node_after_tests", r.check_after);
    j.Int(k + "data_errors", r.data_errors);
    wrong = wrong || !r.check.ok;
    data_errors += r.data_errors;
  }
  if (const std::string path = absl::GetFlag(FLAGS_csv); !path.empty())
    WriteCsv(path, results, home);
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream out(path);
    out << j.Dump(2) << "\n";
    if (!out) Die(fmt::format("cannot write {}", path));
  }

  if (wrong)
    fmt::print(
        "\nPLACEMENT WRONG for at least one row above: its figures are not what its name says\n");
  if (data_errors > 0) fmt::print("\nDATA MISMATCH: {} checks failed (see stderr)\n", data_errors);
  if (data_errors > 0) return 1;
  if (check && (wrong || provider_failed)) return 1;
  return 0;
}
