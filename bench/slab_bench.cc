// slab_bench — slab caches against glibc malloc, in the same run.
//
//   BM_SlabPair/<size>       SlabCache::Allocate + Free of one object (the fast path)
//   BM_KmallocPair/<size>    KmallocCaches::Allocate(size) + Free(ptr) (class lookup,
//                            and kfree's frame-descriptor lookup of the cache)
//   BM_GlibcPair/<size>      peer: malloc(size) + free
//   BM_SlabBatch/<size>      64 allocations then 64 frees (crosses slab boundaries:
//                            refills, partial lists, new slabs)
//   BM_GlibcBatch/<size>     peer: the same with malloc/free
//
// Sizes 16, 64, 256, 1024 bytes; 1 and 2 threads sharing one pool and cache
// (Google Benchmark ->Threads). Time is per pair (items = pairs).
// Run: build/bench/slab_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <mutex>

#include "frames/frame_pool.h"
#include "slab/kmalloc.h"
#include "slab/slab_cache.h"

namespace uvmem::internal {
namespace {

FramePool& Pool() {
  static FramePool* pool = [] {
    FramePoolOptions options;
    options.bytes_per_node = std::size_t{256} << 20;
    auto p = FramePool::Create(options, NumaTopology::Detect());
    if (!p.ok()) std::abort();
    return p->release();  // lives for the whole run
  }();
  return *pool;
}

SlabCache& CacheFor(std::size_t size) {
  static std::mutex mu;
  static std::unique_ptr<SlabCache> caches[4];
  const int index = size == 16 ? 0 : size == 64 ? 1 : size == 256 ? 2 : 3;
  std::lock_guard<std::mutex> lock(mu);
  if (!caches[index]) {
    auto cache = SlabCache::Create(&Pool(), "bench", size);
    if (!cache.ok()) std::abort();
    caches[index] = std::move(*cache);
  }
  return *caches[index];
}

KmallocCaches& Kmalloc() {
  static KmallocCaches* k = [] {
    auto created = KmallocCaches::Create(&Pool());
    if (!created.ok()) std::abort();
    return created->release();
  }();
  return *k;
}

void BM_SlabPair(benchmark::State& state) {
  SlabCache& cache = CacheFor(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    void* p = cache.Allocate();
    benchmark::DoNotOptimize(p);
    cache.Free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SlabPair)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Threads(1)->Threads(2);

void BM_KmallocPair(benchmark::State& state) {
  KmallocCaches& k = Kmalloc();
  const auto size = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* p = k.Allocate(size);
    benchmark::DoNotOptimize(p);
    k.Free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_KmallocPair)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Threads(1)->Threads(2);

void BM_GlibcPair(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* p = std::malloc(size);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GlibcPair)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Threads(1)->Threads(2);

constexpr int kBatch = 64;

void BM_SlabBatch(benchmark::State& state) {
  SlabCache& cache = CacheFor(static_cast<std::size_t>(state.range(0)));
  void* objects[kBatch];
  for (auto _ : state) {
    for (void*& p : objects) p = cache.Allocate();
    benchmark::DoNotOptimize(objects);
    for (void* p : objects) cache.Free(p);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_SlabBatch)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Threads(1)->Threads(2);

void BM_GlibcBatch(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  void* objects[kBatch];
  for (auto _ : state) {
    for (void*& p : objects) p = std::malloc(size);
    benchmark::DoNotOptimize(objects);
    for (void* p : objects) std::free(p);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_GlibcBatch)->Arg(16)->Arg(64)->Arg(256)->Arg(1024)->Threads(1)->Threads(2);

}  // namespace
}  // namespace uvmem::internal

BENCHMARK_MAIN();
