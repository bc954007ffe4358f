// first_touch_bench — first touch of fresh memory: the kernel's anonymous faults against
// uvmem's demand-zero faults, in one run.
//
// For each page order (sequential, random) and thread count (1, 2) it touches every page
// of a fresh mapping once (one byte written per 4 KiB page) and reports ns per page:
//   native-4k     mmap + MADV_NOHUGEPAGE (the kernel's 4 KiB anonymous fault)
//   native-thp    mmap + MADV_HUGEPAGE, 2 MiB aligned (the kernel's THP fault)
//   uvmem-copy-fa<N>       UFFDIO_COPY path, fault-around N pages
//   uvmem-move-fa<N>       MOVE path, warm runtime: frames the pool got back from the
//                          previous range move in (steady state of reserve/release)
//   uvmem-move-cold-fa64   MOVE path, fresh runtime per run: first fills are COPYs
//   uvmem-move-pre-fa64    MOVE path, fresh runtime with its pool prefaulted (not timed)
// and the ratio to native-4k of the same order and threads (lower is better).
//
//   first_touch_bench [--size_mib=1024] [--quick] [--reps=3] [--fault_threads=0]
//                     [--readahead_pages=256]
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
ABSL_FLAG(std::size_t, readahead_pages, 256, "uvmem sequential readahead in pages (0: off)");

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

  // Warm-up: the first gigabyte a process touches also pays for the kernel's own
  // bookkeeping; measure from the second.
  {
    std::vector<std::uint32_t> warm(pages);
    std::iota(warm.begin(), warm.end(), 0u);
    (void)Native(bytes, false, warm, 1);
  }
  std::vector<std::uint32_t> sequential(pages);
  std::iota(sequential.begin(), sequential.end(), 0u);
  std::vector<std::uint32_t> random = sequential;
  std::shuffle(random.begin(), random.end(), std::mt19937(42));

  // uvmem configurations. "warm" runtimes live across repetitions, so from the second
  // range on their frames are pages the pool got back from the previous range (the steady
  // state of a program that reserves and releases); "cold" and "pre" build a fresh
  // runtime per repetition (pre: pool prefaulted at creation, not timed).
  struct Uvmem {
    std::string name;
    uvmem::RuntimeOptions options;
    bool fresh_per_rep;
    std::unique_ptr<uvmem::Runtime> runtime;
  };
  std::vector<Uvmem> configs;
  auto add = [&](std::string name, bool move, std::size_t fa, bool fresh, bool prefault) {
    uvmem::RuntimeOptions options;
    options.pool_bytes_total = bytes + (bytes / 8) + (64u << 20);
    options.fault_around_pages = fa;
    options.use_move = move;
    options.prefault_pool = prefault;
    options.fault_threads = absl::GetFlag(FLAGS_fault_threads);
    options.readahead_pages = absl::GetFlag(FLAGS_readahead_pages);
    configs.push_back({std::move(name), options, fresh, nullptr});
  };
  for (std::size_t fa : {1, 16, 64}) add(fmt::format("uvmem-copy-fa{}", fa), false, fa, false, false);
  for (std::size_t fa : {1, 16, 64}) add(fmt::format("uvmem-move-fa{}", fa), true, fa, false, false);
  add("uvmem-move-cold-fa64", true, 64, true, false);
  add("uvmem-move-pre-fa64", true, 64, true, true);
  {
    auto probe = uvmem::Runtime::Create({.pool_bytes_total = 8u << 20});
    if (!probe.ok()) {
      fmt::print(stderr, "uvmem: {}\n", std::string(probe.status().message()));
      return 1;
    }
    if (!(*probe)->uses_move()) {
      fmt::print("# this kernel has no UFFDIO_MOVE: move rows skipped\n");
      std::erase_if(configs, [](const Uvmem& c) { return c.options.use_move; });
    }
  }
  auto make = [](const uvmem::RuntimeOptions& options) {
    auto runtime = uvmem::Runtime::Create(options);
    if (!runtime.ok()) {
      fmt::print(stderr, "uvmem: {}\n", std::string(runtime.status().message()));
      std::exit(1);
    }
    return std::move(*runtime);
  };
  for (Uvmem& c : configs) {
    if (!c.fresh_per_rep) c.runtime = make(c.options);
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
          std::unique_ptr<uvmem::Runtime> fresh;
          if (c.fresh_per_rep) fresh = make(c.options);
          uvmem::Runtime& runtime = c.fresh_per_rep ? *fresh : *c.runtime;
          auto range = runtime.Reserve(bytes, {.name = "first-touch"});
          if (!range.ok()) std::abort();
          const double ns = Touch(static_cast<char*>(range->data()), order, threads);
          (void)range->Release();
          return ns;
        });
        row(c.name, per_page);
      }
    }
  }
  return 0;
}
