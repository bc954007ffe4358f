// frame_pool_bench — allocation+free pairs from the frame pool.
//
//   BM_FramePair/percpu      order 0 through the per-CPU caches (the common path)
//   BM_FramePair/buddy       orders 0..10 through the buddy lists (per-CPU caches off)
//   BM_GlibcMalloc4K         peer in the same run: glibc malloc(4096)+free
//   BM_MmapMunmap4K          peer in the same run: the kernel's mmap+touch-free munmap
//   BM_PoolCreate/GiB:n      FramePool::Create + destruction of an n GiB pool per node;
//                            counter rss_KiB: resident growth of a live pool (statm)
//
// Each family runs with 1 and 2 threads sharing one pool (Google Benchmark ->Threads).
// Run: build/bench/frame_pool_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "frames/frame_pool.h"

namespace uvmem::internal {
namespace {

FramePool& Pool(bool percpu) {
  auto make = [](bool with_pcp) {
    FramePoolOptions options;
    options.bytes_per_node = std::size_t{64} << 20;
    if (!with_pcp) options.pcp_high = 0;
    auto pool = FramePool::Create(options, NumaTopology::Detect());
    if (!pool.ok()) std::abort();
    return std::move(*pool);
  };
  static std::unique_ptr<FramePool> with = make(true);
  static std::unique_ptr<FramePool> without = make(false);
  return percpu ? *with : *without;
}

void BM_FramePairPerCpu(benchmark::State& state) {
  FramePool& pool = Pool(true);
  const NodeId node = pool.LocalNode();
  for (auto _ : state) {
    auto f = pool.Allocate(Order{0}, node);
    benchmark::DoNotOptimize(f);
    pool.Free(*f, Order{0});
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FramePairPerCpu)->Name("BM_FramePair/percpu/order:0")->Threads(1)->Threads(2);

void BM_FramePairBuddy(benchmark::State& state) {
  FramePool& pool = Pool(false);
  const Order order{static_cast<int>(state.range(0))};
  const NodeId node = pool.LocalNode();
  for (auto _ : state) {
    auto f = pool.Allocate(order, node);
    benchmark::DoNotOptimize(f);
    if (!f) {
      state.SkipWithError("pool exhausted");
      break;
    }
    pool.Free(*f, order);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FramePairBuddy)
    ->Name("BM_FramePair/buddy")
    ->ArgName("order")
    ->DenseRange(0, kMaxOrder)
    ->Threads(1)
    ->Threads(2);

void BM_GlibcMalloc4K(benchmark::State& state) {
  for (auto _ : state) {
    void* p = std::malloc(kPageSize);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GlibcMalloc4K)->Threads(1)->Threads(2);

void BM_MmapMunmap4K(benchmark::State& state) {
  for (auto _ : state) {
    void* p = ::mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    benchmark::DoNotOptimize(p);
    ::munmap(p, kPageSize);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MmapMunmap4K)->Threads(1)->Threads(2);

// Resident set size in KiB (/proc/self/statm, second field), or 0 when unreadable.
std::uint64_t ResidentKiB() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  const int got = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return got == 2 ? resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)) / 1024 : 0;
}

void BM_PoolCreate(benchmark::State& state) {
  FramePoolOptions options;
  options.bytes_per_node = static_cast<std::size_t>(state.range(0)) << 30;
  const NumaTopology topology = NumaTopology::Detect();  // real: mbind included
  // RSS of one live pool, outside the timed loop.
  const std::uint64_t rss_before = ResidentKiB();
  {
    auto pool = FramePool::Create(options, topology);
    if (!pool.ok()) {
      state.SkipWithError("pool creation failed");
      return;
    }
    state.counters["rss_KiB"] = static_cast<double>(ResidentKiB() - rss_before);
  }
  for (auto _ : state) {
    auto pool = FramePool::Create(options, topology);
    benchmark::DoNotOptimize(pool);
  }
}
BENCHMARK(BM_PoolCreate)->ArgName("GiB")->Arg(1)->Arg(24)->Arg(64)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace uvmem::internal

BENCHMARK_MAIN();
