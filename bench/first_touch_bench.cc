// first_touch_bench — first touch of fresh memory: the kernel's anonymous faults against
// uvmem's demand-zero faults, in one run.
//
// For each page order (sequential, random) and thread count (1, 2) it touches every page
// of a fresh mapping once (one byte written per 4 KiB page) and reports ns per page:
//   native-4k     mmap + MADV_NOHUGEPAGE (the kernel's 4 KiB anonymous fault)
//   native-thp    mmap + MADV_HUGEPAGE, 2 MiB aligned (the kernel's THP fault)
//   uvmem-<path>-fa<N>  a uvmem range, fault-around N pages; path: move (pool frames
//                 backed on demand), move-pre (pool prefaulted at creation), copy
// and the ratio to native-4k of the same order and threads (lower is better).
//
//   first_touch_bench [--size_mib=1024] [--quick] [--reps=3] [--fault_threads=0]
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <fmt/format.h>
#include <sys/mman.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "uvmem/runtime.h"

ABSL_FLAG(std::size_t, size_mib, 1024, "bytes touched per run, in MiB");
ABSL_FLAG(bool, quick, false, "64 MiB and one repetition (CI smoke run)");
ABSL_FLAG(int, reps, 3, "repetitions per configuration; the median is reported");
ABSL_FLAG(int, fault_threads, 0, "uvmem fault threads (0: one per NUMA node)");

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kPage = 4096;

// Touches `order` (page indices) of `base`, split over `threads` threads; returns ns.
double Touch(char* base, const std::vector<std::uint32_t>& order, int threads) {
  std::barrier start(threads + 1);
  std::vector<std::thread> workers;
  const std::size_t per = order.size() / threads;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const std::size_t from = t * per, to = t + 1 == threads ? order.size() : from + per;
      start.arrive_and_wait();
      for (std::size_t i = from; i < to; ++i) {
        *reinterpret_cast<volatile char*>(base + std::size_t{order[i]} * kPage) = 1;
      }
    });
  }
  start.arrive_and_wait();
  const auto t0 = Clock::now();
  for (auto& w : workers) w.join();
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Native(std::size_t bytes, bool thp, const std::vector<std::uint32_t>& order, int threads) {
  const std::size_t align = 2u << 20;
  char* raw = static_cast<char*>(mmap(nullptr, bytes + align, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (raw == MAP_FAILED) std::abort();
  char* base = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(raw) + align - 1) & ~(align - 1));
  madvise(base, bytes, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  const double ns = Touch(base, order, threads);
  munmap(raw, bytes + align);
  return ns;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "first touch of fresh memory: kernel anonymous faults vs uvmem demand-zero faults");
  absl::ParseCommandLine(argc, argv);
  const bool quick = absl::GetFlag(FLAGS_quick);
  const std::size_t bytes = (quick ? 64 : absl::GetFlag(FLAGS_size_mib)) << 20;
  const int reps = quick ? 1 : std::max(1, absl::GetFlag(FLAGS_reps));
  const std::size_t pages = bytes / kPage;

  std::vector<std::uint32_t> sequential(pages);
  std::iota(sequential.begin(), sequential.end(), 0u);
  std::vector<std::uint32_t> random = sequential;
  std::shuffle(random.begin(), random.end(), std::mt19937(42));

  struct Uvmem {
    bool move;
    bool prefault;
    std::size_t fault_around;
    std::unique_ptr<uvmem::Runtime> runtime;
  };
  std::vector<Uvmem> configs;
  struct Path {
    bool move, prefault;
  };
  for (Path path : {Path{true, false}, Path{true, true}, Path{false, false}}) {
    const bool move = path.move;
    for (std::size_t fa : {1, 16, 64}) {
      uvmem::RuntimeOptions options;
      options.pool_bytes_total = bytes + (bytes / 8) + (64u << 20);
      options.fault_around_pages = fa;
      options.use_move = move;
      options.prefault_pool = path.prefault;
      options.fault_threads = absl::GetFlag(FLAGS_fault_threads);
      auto runtime = uvmem::Runtime::Create(options);
      if (!runtime.ok()) {
        fmt::print(stderr, "uvmem: {}\n", std::string(runtime.status().message()));
        return 1;
      }
      if (move && !(*runtime)->uses_move()) {
        fmt::print("# this kernel has no UFFDIO_MOVE: MOVE rows skipped\n");
        break;
      }
      configs.push_back({move, path.prefault, fa, std::move(*runtime)});
    }
  }

  fmt::print("# first touch of {} MiB, {} pages, median of {} run(s); ns per page "
             "(ratio to native-4k; lower is better)\n",
             bytes >> 20, pages, reps);
  fmt::print("{:<10} {:>7}  {:<18} {:>10} {:>8}\n", "order", "threads", "config", "ns/page",
             "ratio");
  for (const auto* order_name : {"sequential", "random"}) {
    const auto& order = std::string(order_name) == "sequential" ? sequential : random;
    for (int threads : {1, 2}) {
      auto run = [&](auto&& once) {
        std::vector<double> ns;
        for (int r = 0; r < reps; ++r) ns.push_back(once());
        return Median(ns) / static_cast<double>(pages);
      };
      const double native4k = run([&] { return Native(bytes, false, order, threads); });
      const double thp = run([&] { return Native(bytes, true, order, threads); });
      auto row = [&](const std::string& name, double per_page) {
        fmt::print("{:<10} {:>7}  {:<18} {:>10.1f} {:>7.2f}x\n", order_name, threads, name,
                   per_page, per_page / native4k);
      };
      row("native-4k", native4k);
      row("native-thp", thp);
      for (Uvmem& c : configs) {
        const double per_page = run([&] {
          auto range = c.runtime->Reserve(bytes, {.name = "first-touch"});
          if (!range.ok()) std::abort();
          const double ns = Touch(static_cast<char*>(range->data()), order, threads);
          (void)range->Release();
          return ns;
        });
        row(fmt::format("uvmem-{}-fa{}", c.move ? (c.prefault ? "move-pre" : "move") : "copy",
                        c.fault_around),
            per_page);
      }
    }
  }
  return 0;
}
