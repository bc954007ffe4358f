// alloc_workloads — allocator workloads for comparing malloc implementations via LD_PRELOAD.
//
// This program links no uvmem library: it calls the process's malloc/calloc/realloc/free and
// operator new/delete, so whatever allocator is preloaded (jemalloc, tcmalloc, mimalloc,
// libuvmem_preload.so) or glibc's own malloc serves every allocation. run_alloc_bench.py beside
// it runs each workload under each allocator and compares time and peak RSS.
//
//   alloc_workloads --workload=NAME [--scale=1.0] [--quick] [--seed=42] [--threads=2]
//   alloc_workloads --list
//
// Output (one line, parsed by run_alloc_bench.py):
//   workload=NAME scale=S checksum=HEX16 elapsed_s=SECONDS peak_rss_kib=KIB
// The checksum is computed from data written into allocated blocks and read back before they
// are freed. Every workload is deterministic for a given --seed/--scale/--threads (threads own
// disjoint data and hand it over only at join points), so every correct allocator prints the
// same checksum. A block whose contents changed under us aborts at once with exit status 3.
// elapsed_s is the wall time of the workload alone (not process start-up or exit).
// peak_rss_kib is VmHWM from /proc/self/status at exit: the peak resident set of this
// process image. (A parent's wait4 ru_maxrss is not usable for small workloads: Linux carries
// the pre-exec high-water mark of the forked parent, e.g. a 16 MiB Python, across exec.)
//
// Workloads (names are stable; the default scale takes roughly 0.3-1.5 s each under glibc on a
// 2-core machine):
//   larson       Server churn across threads, after Larson & Krishnan, "Memory allocation for
//                long-running server applications" (ISMM 1998), as run by mimalloc-bench. T
//                threads (default 2) each own an array of slots; each op frees a random slot
//                and allocates 16..1000 bytes into it. Every round the threads exit and new ones
//                are started, and each new thread takes over a *different* thread's slot array,
//                so most frees are of blocks another (now dead) thread allocated.
//   prodcons     Producer/consumer with cross-thread frees, like mimalloc-bench's xmalloc-test:
//                one thread allocates 16..4096-byte blocks in batches and passes them through a
//                bounded mutex+condvar queue to a second thread that reads and frees them.
//   small_short  Many small short-lived objects: 8..256-byte blocks freed at once or in small
//                LIFO/FIFO batches, then std::string / std::vector / std::map code so that
//                operator new/delete and growth paths are exercised (the bulk of real C++).
//   realloc_grow Buffers grown step by step with realloc to 1..5 MiB, four growing at once so
//                in-place growth is not always possible; half grow by small appends (string
//                builder), half geometrically (vector); a quarter shrink before being freed.
//   large        64 KiB..8 MiB blocks from malloc and calloc (calloc's zeroing is checked),
//                one word written per 4 KiB page, read back, freed, repeated with a few live.
//   st_mix       Single-threaded mix of sizes and lifetimes, in the spirit of mimalloc-bench's
//                cfrac/espresso: a random-lifetime pool (random slot replaced per op, sizes
//                mostly small with a long tail to 256 KiB), short-lived temporaries, and phase
//                ends that free half the pool.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

// ---------------------------------------------------------------------------------------------
// Shared helpers: a deterministic RNG, block fill/check, and an optimisation barrier.

// splitmix64: small, fast and good enough to pick sizes and slots.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint64_t Next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi] (inclusive).
  std::size_t Range(std::size_t lo, std::size_t hi) { return lo + Next() % (hi - lo + 1); }

 private:
  std::uint64_t state_;
};

// Keeps the compiler from proving a block unused and eliding a malloc/free pair.
inline void Escape(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

// Returns p after Escape; exits with status 4 if the allocator returned nullptr.
void* Checked(void* p, const char* workload, std::size_t size_bytes) {
  if (p == nullptr) {
    std::fprintf(stderr, "alloc_workloads: %s: out of memory allocating %zu bytes\n", workload,
                 size_bytes);
    std::_Exit(4);
  }
  Escape(p);
  return p;
}

[[noreturn]] void Corrupt(const char* workload, const void* p, std::size_t size_bytes,
                          std::size_t offset) {
  std::fprintf(stderr, "alloc_workloads: %s: block %p (%zu bytes) corrupt at offset %zu\n",
               workload, p, size_bytes, offset);
  std::fflush(stderr);
  std::_Exit(3);
}

// The word stored at byte `offset` of a block tagged `tag`.
inline std::uint64_t Pattern(std::uint64_t tag, std::size_t offset) {
  return tag ^ (offset * 0x9E3779B97F4A7C15ull);
}

// Writes Pattern words at offsets 0, stride, 2*stride, ... up to size-16 and at size-8 (the last
// word, possibly unaligned). stride 8 fills the block; a stride >= size writes head and tail
// only; stride 4096 touches every page. REQUIRES: size_bytes >= 8, stride a multiple of 8.
void Touch(void* p, std::size_t size_bytes, std::uint64_t tag, std::size_t stride) {
  auto* bytes = static_cast<unsigned char*>(p);
  for (std::size_t off = 0; off + 16 <= size_bytes; off += stride) {
    const std::uint64_t w = Pattern(tag, off);
    std::memcpy(bytes + off, &w, 8);
  }
  const std::uint64_t last = Pattern(tag, size_bytes - 8);
  std::memcpy(bytes + size_bytes - 8, &last, 8);
}

// Reads back what Touch wrote; returns a checksum of the words or aborts on a mismatch.
std::uint64_t Verify(const char* workload, const void* p, std::size_t size_bytes,
                     std::uint64_t tag, std::size_t stride) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  std::uint64_t sum = 0;
  auto check = [&](std::size_t off) {
    std::uint64_t w;
    std::memcpy(&w, bytes + off, 8);
    if (w != Pattern(tag, off)) Corrupt(workload, p, size_bytes, off);
    sum += w * (2 * off + 1);
  };
  for (std::size_t off = 0; off + 16 <= size_bytes; off += stride) check(off);
  check(size_bytes - 8);
  return sum;
}

// Scales a base operation count; never below 1.
std::size_t Scaled(double scale, double base) {
  return std::max<std::size_t>(1, static_cast<std::size_t>(base * scale));
}

struct Options {
  std::string workload;
  double scale = 1.0;
  std::uint64_t seed = 42;
  int threads = 2;
};

struct Block {
  void* ptr = nullptr;
  std::size_t size_bytes = 0;
  std::uint64_t tag = 0;
};

// ---------------------------------------------------------------------------------------------
// larson: per-round thread replacement with slot arrays handed to a different thread.

std::uint64_t Larson(const Options& o) {
  constexpr std::size_t kSlotsPerThread = 2000;  // mimalloc-bench runs larson with 1000 chunks
  const int threads = o.threads;
  const std::size_t rounds = Scaled(o.scale, 60);
  const std::size_t ops_per_round = 100000;
  std::vector<std::vector<Block>> arrays(threads, std::vector<Block>(kSlotsPerThread));
  std::vector<std::uint64_t> sums(threads, 0);

  auto work = [&](int t, std::size_t round) {
    std::vector<Block>& slots = arrays[(t + round) % threads];  // someone else's blocks
    Rng rng(o.seed ^ (round << 20) ^ static_cast<std::uint64_t>(t));
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < ops_per_round; ++i) {
      Block& b = slots[rng.Next() % slots.size()];
      if (b.ptr != nullptr) {
        sum += Verify("larson", b.ptr, b.size_bytes, b.tag, 1 << 20);
        std::free(b.ptr);
      }
      b.size_bytes = rng.Range(16, 1000);
      b.tag = rng.Next();
      b.ptr = Checked(std::malloc(b.size_bytes), "larson", b.size_bytes);
      Touch(b.ptr, b.size_bytes, b.tag, 1 << 20);  // head and tail words
    }
    sums[t] += sum;
  };

  for (std::size_t round = 0; round < rounds; ++round) {
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) workers.emplace_back(work, t, round);
    for (std::thread& w : workers) w.join();
  }
  std::uint64_t sum = 0;
  for (std::vector<Block>& slots : arrays) {  // the main thread frees what is left
    for (Block& b : slots) {
      if (b.ptr == nullptr) continue;
      sum += Verify("larson", b.ptr, b.size_bytes, b.tag, 1 << 20);
      std::free(b.ptr);
    }
  }
  for (std::uint64_t s : sums) sum += s;
  return sum;
}

// ---------------------------------------------------------------------------------------------
// prodcons: one producer allocates, one consumer frees, through a bounded queue of batches.

constexpr std::size_t kBatchBlocks = 64;
struct Batch {
  Block blocks[kBatchBlocks];
};

// A bounded FIFO of batches; the storage is a fixed array so the queue itself never allocates.
class BatchQueue {
 public:
  void Push(const Batch& b) {
    std::unique_lock<std::mutex> lock(mu_);
    not_full_.wait(lock, [&] { return count_ < kCapacity; });
    ring_[(head_ + count_) % kCapacity] = b;
    ++count_;
    not_empty_.notify_one();
  }
  void Pop(Batch& out) {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [&] { return count_ > 0; });
    out = ring_[head_];
    head_ = (head_ + 1) % kCapacity;
    --count_;
    not_full_.notify_one();
  }

 private:
  static constexpr std::size_t kCapacity = 16;  // up to 1024 blocks in flight
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  Batch ring_[kCapacity];
  std::size_t head_ = 0, count_ = 0;
};

std::uint64_t ProdCons(const Options& o) {
  const std::size_t batches = Scaled(o.scale, 60000);
  auto queue = std::make_unique<BatchQueue>();
  std::uint64_t consumer_sum = 0;

  std::thread consumer([&] {
    Batch batch;
    for (std::size_t n = 0; n < batches; ++n) {
      queue->Pop(batch);
      for (Block& b : batch.blocks) {
        consumer_sum += Verify("prodcons", b.ptr, b.size_bytes, b.tag, 64);
        std::free(b.ptr);
      }
    }
  });
  std::thread producer([&] {
    Rng rng(o.seed);
    Batch batch;
    for (std::size_t n = 0; n < batches; ++n) {
      for (Block& b : batch.blocks) {
        // 90% small (16..512 bytes), 10% up to 4 KiB.
        b.size_bytes = rng.Next() % 10 != 0 ? rng.Range(16, 512) : rng.Range(513, 4096);
        b.tag = rng.Next();
        b.ptr = Checked(std::malloc(b.size_bytes), "prodcons", b.size_bytes);
        Touch(b.ptr, b.size_bytes, b.tag, 64);  // one word per cache line
      }
      queue->Push(batch);
    }
  });
  producer.join();
  consumer.join();
  return consumer_sum;
}

// ---------------------------------------------------------------------------------------------
// small_short: malloc/free of tiny blocks, then operator new/delete through the STL.

std::uint64_t SmallShort(const Options& o) {
  Rng rng(o.seed);
  std::uint64_t sum = 0;

  // Part 1: raw malloc/free, immediate or in batches of up to 16 freed LIFO or FIFO.
  const std::size_t batches = Scaled(o.scale, 1'500'000);
  Block batch[16];
  for (std::size_t n = 0; n < batches; ++n) {
    const std::size_t count = 1 + rng.Next() % 16;
    for (std::size_t i = 0; i < count; ++i) {
      Block& b = batch[i];
      // Mostly 8..64 bytes, some up to 256: the size mix of linked structures and strings.
      b.size_bytes = rng.Next() % 4 != 0 ? rng.Range(8, 64) : rng.Range(65, 256);
      b.tag = rng.Next();
      b.ptr = Checked(std::malloc(b.size_bytes), "small_short", b.size_bytes);
      Touch(b.ptr, b.size_bytes, b.tag, 8);  // fill every word
    }
    const bool lifo = (n & 1) != 0;
    for (std::size_t i = 0; i < count; ++i) {
      Block& b = batch[lifo ? count - 1 - i : i];
      sum += Verify("small_short", b.ptr, b.size_bytes, b.tag, 8);
      std::free(b.ptr);
    }
  }

  // Part 2: STL code. A map of strings kept near 4096 entries (long-lived nodes with churn),
  // vectors grown by push_back, and short-lived strings built, sorted and dropped.
  const std::size_t iterations = Scaled(o.scale, 120'000);
  std::map<std::uint32_t, std::string> map;
  for (std::size_t n = 0; n < iterations; ++n) {
    std::vector<std::string> words;
    const std::size_t word_count = 1 + rng.Next() % 12;
    for (std::size_t i = 0; i < word_count; ++i) {
      // 16..80 characters: past libstdc++'s 15-byte small-string buffer, so heap-allocated.
      std::string w(rng.Range(16, 80), static_cast<char>('a' + rng.Next() % 26));
      w += std::to_string(rng.Next());
      words.push_back(std::move(w));
    }
    std::sort(words.begin(), words.end());
    std::vector<std::uint32_t> numbers;
    const std::size_t number_count = rng.Next() % 200;
    for (std::size_t i = 0; i < number_count; ++i) numbers.push_back(static_cast<std::uint32_t>(i * 7));
    for (const std::string& w : words) sum += w.size() * static_cast<unsigned char>(w.back());
    for (std::uint32_t v : numbers) sum += v;

    const auto key = static_cast<std::uint32_t>(rng.Next() % 8192);
    auto it = map.find(key);
    if (it != map.end()) {
      sum += it->second.size() + static_cast<unsigned char>(it->second[0]);
      map.erase(it);
    } else {
      map.emplace(key, words.front());
    }
  }
  for (const auto& [k, v] : map) sum += k ^ v.size();
  return sum;
}

// ---------------------------------------------------------------------------------------------
// realloc_grow: buffers grown by realloc to 1..5 MiB, four at a time.

std::uint64_t ReallocGrow(const Options& o) {
  constexpr std::size_t kLive = 4;
  struct Growing {
    Block b;
    std::size_t target_bytes = 0;
    bool geometric = false;
  };
  Rng rng(o.seed);
  auto start = [&](Growing& g) {
    g.target_bytes = (std::size_t{1} << 20) + rng.Next() % (std::size_t{4} << 20);
    g.geometric = (rng.Next() & 1) != 0;
    g.b.tag = rng.Next();
    g.b.size_bytes = 64;
    g.b.ptr = Checked(std::malloc(g.b.size_bytes), "realloc_grow", g.b.size_bytes);
    Touch(g.b.ptr, g.b.size_bytes, g.b.tag, 8);
  };
  std::vector<Growing> live(kLive);
  for (Growing& g : live) start(g);

  const std::size_t buffers = Scaled(o.scale, 600);
  std::uint64_t sum = 0;
  for (std::size_t done = 0; done < buffers;) {
    Growing& g = live[rng.Next() % kLive];
    const std::size_t old_bytes = g.b.size_bytes;
    // Appends of 8..8192 bytes, or x1.5 growth; sizes stay multiples of 8.
    std::size_t new_bytes = g.geometric ? old_bytes + old_bytes / 2 : old_bytes + 8 * rng.Range(1, 1024);
    new_bytes = std::min(new_bytes & ~std::size_t{7}, g.target_bytes & ~std::size_t{7});
    void* p = Checked(std::realloc(g.b.ptr, new_bytes), "realloc_grow", new_bytes);
    // The old contents must have moved with the block: check a word near the old end.
    {
      std::uint64_t w;
      std::memcpy(&w, static_cast<char*>(p) + old_bytes - 8, 8);
      if (w != Pattern(g.b.tag, old_bytes - 8)) Corrupt("realloc_grow", p, new_bytes, old_bytes - 8);
    }
    // Write the newly added words (as an appending writer would).
    auto* words = static_cast<std::uint64_t*>(p);
    for (std::size_t off = old_bytes; off < new_bytes; off += 8) words[off / 8] = Pattern(g.b.tag, off);
    g.b.ptr = p;
    g.b.size_bytes = new_bytes;
    if (new_bytes < g.target_bytes - 7) continue;

    // Finished: a quarter are shrunk to a fourth first; then check every word and free.
    if (rng.Next() % 4 == 0) {
      g.b.size_bytes = (new_bytes / 4) & ~std::size_t{7};
      g.b.ptr = Checked(std::realloc(g.b.ptr, g.b.size_bytes), "realloc_grow", g.b.size_bytes);
    }
    sum += Verify("realloc_grow", g.b.ptr, g.b.size_bytes, g.b.tag, 8);
    std::free(g.b.ptr);
    ++done;
    start(g);
  }
  for (Growing& g : live) {
    sum += Verify("realloc_grow", g.b.ptr, g.b.size_bytes, g.b.tag, 8);
    std::free(g.b.ptr);
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// large: 64 KiB..8 MiB from malloc and calloc, every page touched, a few live at a time.

std::uint64_t Large(const Options& o) {
  constexpr std::size_t kLive = 6;
  constexpr std::size_t kPage = 4096;
  Rng rng(o.seed);
  std::vector<Block> live(kLive);
  const std::size_t ops = Scaled(o.scale, 4000);
  std::uint64_t sum = 0;
  for (std::size_t n = 0; n < ops; ++n) {
    Block& b = live[rng.Next() % kLive];
    if (b.ptr != nullptr) {
      sum += Verify("large", b.ptr, b.size_bytes, b.tag, kPage);
      std::free(b.ptr);
    }
    // Log-uniform over 64 KiB..8 MiB: pick a power of two, then a size up to twice it.
    const std::size_t base = std::size_t{64} << 10 << (rng.Next() % 7);
    b.size_bytes = std::min(base + (rng.Next() % base & ~std::size_t{7}), std::size_t{8} << 20);
    b.tag = rng.Next();
    if (rng.Next() % 3 == 0) {
      b.ptr = Checked(std::calloc(b.size_bytes / 8, 8), "large", b.size_bytes);
      // calloc must hand back zeros even when it reuses a block we filled: check each page.
      const auto* words = static_cast<const std::uint64_t*>(b.ptr);
      for (std::size_t off = 0; off < b.size_bytes; off += kPage) {
        if (words[off / 8] != 0) Corrupt("large(calloc)", b.ptr, b.size_bytes, off);
      }
      if (words[b.size_bytes / 8 - 1] != 0) Corrupt("large(calloc)", b.ptr, b.size_bytes, b.size_bytes - 8);
    } else {
      b.ptr = Checked(std::malloc(b.size_bytes), "large", b.size_bytes);
    }
    Touch(b.ptr, b.size_bytes, b.tag, kPage);  // one word per page
  }
  for (Block& b : live) {
    if (b.ptr == nullptr) continue;
    sum += Verify("large", b.ptr, b.size_bytes, b.tag, kPage);
    std::free(b.ptr);
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// st_mix: a single-threaded random-lifetime pool with temporaries and phase ends.

std::uint64_t StMix(const Options& o) {
  constexpr std::size_t kPoolSlots = 50000;
  constexpr std::size_t kPhases = 10;
  Rng rng(o.seed);
  std::vector<Block> pool(kPoolSlots);
  const std::size_t ops = Scaled(o.scale, 2'000'000);
  std::uint64_t sum = 0;

  auto pick_size = [&]() -> std::size_t {
    const std::uint64_t r = rng.Next() % 1000;
    if (r < 800) return rng.Range(8, 128);           // 80%: list cells, small strings
    if (r < 950) return rng.Range(129, 2048);        // 15%: records, buffers
    if (r < 995) return rng.Range(2049, 32 << 10);   // 4.5%: tables
    return rng.Range((32 << 10) + 1, 256 << 10);     // 0.5%: big arrays
  };
  auto release = [&](Block& b) {
    sum += Verify("st_mix", b.ptr, b.size_bytes, b.tag, 64);
    std::free(b.ptr);
    b.ptr = nullptr;
  };

  for (std::size_t n = 0; n < ops; ++n) {
    Block& b = pool[rng.Next() % kPoolSlots];
    if (b.ptr != nullptr) release(b);
    b.size_bytes = pick_size();
    b.tag = rng.Next();
    b.ptr = Checked(std::malloc(b.size_bytes), "st_mix", b.size_bytes);
    Touch(b.ptr, b.size_bytes, b.tag, 64);  // one word per cache line

    if ((n & 1) == 0) {  // a temporary that dies at once
      const std::size_t t_bytes = rng.Range(8, 256);
      void* t = Checked(std::malloc(t_bytes), "st_mix", t_bytes);
      Touch(t, t_bytes, n, 8);
      sum += Verify("st_mix", t, t_bytes, n, 8);
      std::free(t);
    }
    if ((n + 1) % (ops / kPhases + 1) == 0) {  // phase end: half the pool dies
      const std::size_t parity = (n / (ops / kPhases + 1)) & 1;
      for (std::size_t i = parity; i < kPoolSlots; i += 2) {
        if (pool[i].ptr != nullptr) release(pool[i]);
      }
    }
  }
  for (Block& b : pool) {
    if (b.ptr != nullptr) release(b);
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// Driver.

struct Workload {
  const char* name;
  std::uint64_t (*run)(const Options&);
};
constexpr Workload kWorkloads[] = {
    {"larson", Larson},       {"prodcons", ProdCons}, {"small_short", SmallShort},
    {"realloc_grow", ReallocGrow}, {"large", Large},  {"st_mix", StMix},
};

void Usage(std::FILE* out) {
  std::fprintf(out,
               "usage: alloc_workloads --workload=NAME [--scale=F] [--quick] [--seed=N] "
               "[--threads=N]\n       alloc_workloads --list\n"
               "  --scale    multiplies every operation count (default 1.0, ~0.3-1.5 s each)\n"
               "  --quick    scale x0.02, for a smoke run\n"
               "  --threads  threads for larson (default 2)\nworkloads:");
  for (const Workload& w : kWorkloads) std::fprintf(out, " %s", w.name);
  std::fprintf(out, "\n");
}

// Returns the value of `--name=value` in arg, or nullptr if arg is not that flag.
const char* FlagValue(std::string_view arg, std::string_view name) {
  if (arg.size() <= name.size() + 3 || arg.substr(0, 2) != "--" || arg.substr(2, name.size()) != name ||
      arg[2 + name.size()] != '=') {
    return nullptr;
  }
  return arg.data() + 3 + name.size();
}

// Peak resident set size of this process image in KiB (VmHWM), or 0 if unavailable.
long PeakRssKib() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  long kib = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--list") {
      for (const Workload& w : kWorkloads) std::printf("%s\n", w.name);
      return 0;
    }
    if (arg == "--help" || arg == "-h") {
      Usage(stdout);
      return 0;
    }
    if (arg == "--quick") {
      quick = true;
    } else if (const char* v = FlagValue(arg, "workload")) {
      o.workload = v;
    } else if (const char* v = FlagValue(arg, "scale")) {
      o.scale = std::strtod(v, nullptr);
    } else if (const char* v = FlagValue(arg, "seed")) {
      o.seed = std::strtoull(v, nullptr, 10);
    } else if (const char* v = FlagValue(arg, "threads")) {
      o.threads = std::atoi(v);
    } else {
      std::fprintf(stderr, "alloc_workloads: unknown argument '%s'\n", argv[i]);
      Usage(stderr);
      return 2;
    }
  }
  if (quick) o.scale *= 0.02;
  if (!(o.scale > 0) || o.threads < 1) {
    std::fprintf(stderr, "alloc_workloads: --scale must be > 0 and --threads >= 1\n");
    return 2;
  }
  const Workload* chosen = nullptr;
  for (const Workload& w : kWorkloads) {
    if (o.workload == w.name) chosen = &w;
  }
  if (chosen == nullptr) {
    std::fprintf(stderr, "alloc_workloads: unknown or missing --workload '%s'\n", o.workload.c_str());
    Usage(stderr);
    return 2;
  }

  const auto t0 = std::chrono::steady_clock::now();
  const std::uint64_t checksum = chosen->run(o);
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - t0;
  std::printf("workload=%s scale=%g checksum=%016llx elapsed_s=%.6f peak_rss_kib=%ld\n",
              chosen->name, o.scale, static_cast<unsigned long long>(checksum), elapsed.count(),
              PeakRssKib());
  return 0;
}
