// preload_probe — a plain C++ program (not linked to uvmem) that preload_test runs with and
// without LD_PRELOAD=libuvmem_preload.so. It exercises the malloc family, every form of
// operator new/delete, STL churn, threads and fork(), checking every byte it wrote, and
// prints what it found:
//   uvmem=0|1             whether uvmem's C API is in the process (dlsym(RTLD_DEFAULT))
//   heap=uvmem|other      whether malloc'd blocks are counted by uvmem's statistics and
//                         live in a mapping of the heap's size (≥ 1 GiB reservation)
//   runtime_threads=N     threads named uvmem-* (fault handlers, purger) in this process
//   ok                    every check passed (exit 0); otherwise "FAIL: ..." and exit 1
// Modes (argv[1]): "all" (default); "nostats": the same without calling
// uvmem_malloc_stats_get (the heap is recognised by its mapping alone); "huge": sizes near
// SIZE_MAX fail cleanly.
#include <dirent.h>
#include <dlfcn.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "uvmem/uvmem.h"  // the statistics struct only: nothing here is linked

namespace {

int failures = 0;
bool under_uvmem = false;  // uvmem's contract is checked where glibc's differs

#define PROBE_CHECK(cond)                                                         \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "FAIL: %s:%d: %s\n", __FILE__, __LINE__, #cond);       \
      ++failures;                                                                 \
    }                                                                             \
  } while (0)

using StatsFn = int (*)(uvmem_malloc_stats*);

StatsFn FindStats() {
  return reinterpret_cast<StatsFn>(dlsym(RTLD_DEFAULT, "uvmem_malloc_stats_get"));
}

unsigned char PatternByte(std::uint64_t seed, std::size_t i) {
  return static_cast<unsigned char>((seed * 131 + i * 7 + (i >> 8)) & 0xff);
}

void Fill(void* p, std::size_t n, std::uint64_t seed) {
  auto* c = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) c[i] = PatternByte(seed, i);
}

bool Check(const void* p, std::size_t n, std::uint64_t seed) {
  const auto* c = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (c[i] != PatternByte(seed, i)) return false;
  }
  return true;
}

bool Aligned(const void* p, std::size_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

// Size of the mapping of /proc/self/maps holding `p` (0 when none).
std::uint64_t MappingBytes(const void* p) {
  FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return 0;
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  char line[512];
  std::uint64_t bytes = 0;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    std::uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2 && addr >= lo && addr < hi) {
      bytes = hi - lo;
      break;
    }
  }
  std::fclose(f);
  return bytes;
}

// Threads of this process whose name starts with "uvmem-" (the runtime's fault handlers
// and the heap's purger): present only when the heap runs on a runtime of its own.
int RuntimeThreads() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const std::string path = std::string("/proc/self/task/") + e->d_name + "/comm";
    FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) continue;
    char name[64] = {};
    if (std::fgets(name, sizeof(name), f) != nullptr && std::strncmp(name, "uvmem-", 6) == 0) ++n;
    std::fclose(f);
  }
  closedir(dir);
  return n;
}

// Opaque to the optimiser: keeps the compiler from reasoning about allocation sizes.
template <typename T>
T Opaque(T v) {
  asm volatile("" : "+r"(v));
  return v;
}

void MallocFamily() {
  for (std::size_t size : {0ul, 1ul, 15ul, 16ul, 17ul, 100ul, 1000ul, 4096ul, 65536ul, 131072ul,
                           131073ul, 1ul << 20, (5ul << 20) + 3}) {
    void* p = std::malloc(size);
    PROBE_CHECK(p != nullptr);
    PROBE_CHECK(Aligned(p, 16));
    const std::size_t usable = malloc_usable_size(p);
    PROBE_CHECK(usable >= size);
    Fill(p, usable, size);
    PROBE_CHECK(Check(p, usable, size));
    std::free(p);

    auto* z = static_cast<unsigned char*>(std::calloc(1, size));
    PROBE_CHECK(z != nullptr);
    bool zero = true;
    for (std::size_t i = 0; i < size; ++i) zero = zero && z[i] == 0;
    PROBE_CHECK(zero);
    std::free(z);
  }
  // realloc grows and shrinks keeping the prefix.
  std::size_t old = 10;
  void* r = std::malloc(old);
  Fill(r, old, old);
  for (std::size_t size : {100ul, 5000ul, 300000ul, 4ul << 20, 1000ul, 10ul}) {
    void* q = std::realloc(r, size);
    PROBE_CHECK(q != nullptr);
    if (q == nullptr) break;
    PROBE_CHECK(Check(q, std::min(old, size), old));
    Fill(q, size, size);
    r = q;
    old = size;
  }
  std::free(r);
  void* ra = reallocarray(nullptr, 100, 10);
  PROBE_CHECK(ra != nullptr);
  errno = 0;
  PROBE_CHECK(reallocarray(ra, Opaque(SIZE_MAX / 2), 3) == nullptr && errno == ENOMEM);
  std::free(ra);
  errno = 0;
  PROBE_CHECK(std::calloc(Opaque(SIZE_MAX / 2), 3) == nullptr && errno == ENOMEM);
  errno = 0;
  PROBE_CHECK(std::malloc(Opaque(std::size_t{1} << 62)) == nullptr && errno == ENOMEM);

  for (std::size_t align = 8; align <= (1u << 20); align *= 2) {
    for (std::size_t size : {1ul, align - 1, align + 1, 3000ul, 200000ul}) {
      void* a = aligned_alloc(align, size);
      PROBE_CHECK(a != nullptr && Aligned(a, align));
      if (a != nullptr) {
        PROBE_CHECK(malloc_usable_size(a) >= size);
        Fill(a, size, align);
        PROBE_CHECK(Check(a, size, align));
      }
      std::free(a);
      void* pm = nullptr;
      PROBE_CHECK(posix_memalign(&pm, align, size) == 0 && Aligned(pm, align));
      if (pm != nullptr) Fill(pm, size, align + 1);
      std::free(pm);
      void* m = memalign(align, size);
      PROBE_CHECK(m != nullptr && Aligned(m, align));
      if (m != nullptr) Fill(m, size, align + 2);
      std::free(m);
    }
  }
  if (under_uvmem) {  // glibc before 2.38 accepts any alignment here
    errno = 0;
    PROBE_CHECK(aligned_alloc(Opaque(std::size_t{3}), 10) == nullptr && errno == EINVAL);
  }
  void* untouched = reinterpret_cast<void*>(0x1);
  PROBE_CHECK(posix_memalign(&untouched, Opaque(std::size_t{24}), 10) == EINVAL);
  PROBE_CHECK(untouched == reinterpret_cast<void*>(0x1));
  void* v = valloc(100);
  PROBE_CHECK(v != nullptr && Aligned(v, 4096));
  std::free(v);
  void* pv = pvalloc(5000);
  PROBE_CHECK(pv != nullptr && Aligned(pv, 4096) && malloc_usable_size(pv) >= 8192);
  if (pv != nullptr) Fill(pv, 8192, 3);
  std::free(pv);
  std::free(nullptr);
  const int trimmed = malloc_trim(0);
  PROBE_CHECK(trimmed == 0 || trimmed == 1);
}

struct alignas(256) Wide {
  unsigned char bytes[300];
};

void OperatorNewDelete() {
  // Plain, array, nothrow.
  int* one = new int(42);
  PROBE_CHECK(*one == 42);
  delete one;
  auto* arr = new std::uint64_t[1000];
  for (int i = 0; i < 1000; ++i) arr[i] = static_cast<std::uint64_t>(i) * 3;
  for (int i = 0; i < 1000; ++i) PROBE_CHECK(arr[i] == static_cast<std::uint64_t>(i) * 3);
  delete[] arr;
  auto* nt = new (std::nothrow) char[5000];
  PROBE_CHECK(nt != nullptr);
  Fill(nt, 5000, 9);
  PROBE_CHECK(Check(nt, 5000, 9));
  delete[] nt;
  auto* nt1 = new (std::nothrow) double(1.5);
  PROBE_CHECK(nt1 != nullptr && *nt1 == 1.5);
  delete nt1;
  // Over-aligned: new/delete of an alignas(256) type, single and array.
  auto* w = new Wide;
  PROBE_CHECK(Aligned(w, 256));
  Fill(w->bytes, sizeof(w->bytes), 4);
  PROBE_CHECK(Check(w->bytes, sizeof(w->bytes), 4));
  delete w;
  auto* ws = new Wide[7];
  PROBE_CHECK(Aligned(ws, 256));
  for (int i = 0; i < 7; ++i) Fill(ws[i].bytes, sizeof(ws[i].bytes), i);
  for (int i = 0; i < 7; ++i) PROBE_CHECK(Check(ws[i].bytes, sizeof(ws[i].bytes), i));
  delete[] ws;
  auto* wn = new (std::nothrow) Wide[3];
  PROBE_CHECK(wn != nullptr && Aligned(wn, 256));
  delete[] wn;
  // Every operator, called explicitly.
  for (std::size_t n : {1ul, 48ul, 3000ul, 200000ul}) {
    for (std::size_t a : {16ul, 64ul, 4096ul, 65536ul}) {
      const std::align_val_t al{a};
      void* p1 = ::operator new(n);
      Fill(p1, n, 1);
      ::operator delete(p1, n);  // sized
      void* p2 = ::operator new[](n);
      Fill(p2, n, 2);
      ::operator delete[](p2, n);
      void* p3 = ::operator new(n, std::nothrow);
      PROBE_CHECK(p3 != nullptr);
      ::operator delete(p3, std::nothrow);
      void* p4 = ::operator new[](n, std::nothrow);
      PROBE_CHECK(p4 != nullptr);
      ::operator delete[](p4, std::nothrow);
      void* p5 = ::operator new(n, al);
      PROBE_CHECK(Aligned(p5, a));
      Fill(p5, n, 5);
      PROBE_CHECK(Check(p5, n, 5));
      ::operator delete(p5, al);
      void* p6 = ::operator new[](n, al);
      PROBE_CHECK(Aligned(p6, a));
      ::operator delete[](p6, al);
      void* p7 = ::operator new(n, al);
      ::operator delete(p7, n, al);  // sized + aligned
      void* p8 = ::operator new[](n, al);
      ::operator delete[](p8, n, al);
      void* p9 = ::operator new(n, al, std::nothrow);
      PROBE_CHECK(p9 != nullptr && Aligned(p9, a));
      ::operator delete(p9, al, std::nothrow);
      void* p10 = ::operator new[](n, al, std::nothrow);
      PROBE_CHECK(p10 != nullptr && Aligned(p10, a));
      ::operator delete[](p10, al, std::nothrow);
      void* p11 = ::operator new(n);
      ::operator delete(p11);
      void* p12 = ::operator new[](n);
      ::operator delete[](p12);
    }
  }
  // A failing new throws bad_alloc; the nothrow form returns null.
  bool threw = false;
  try {
    void* p = ::operator new(Opaque(std::size_t{1} << 62));
    ::operator delete(p);
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  PROBE_CHECK(threw);
  PROBE_CHECK(::operator new(Opaque(std::size_t{1} << 62), std::nothrow) == nullptr);
}

void StlChurn(int seed) {
  std::map<std::string, std::vector<int>> m;
  std::unordered_map<int, std::string> u;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 4000; ++i) {
      std::string key = "key-" + std::to_string((i * 7919 + seed) % 5000) + std::string(i % 40, 'x');
      m[key].push_back(i);
      u[i] = key + key;
    }
    for (int i = 0; i < 4000; i += 3) {
      m.erase("key-" + std::to_string((i * 7919 + seed) % 5000) + std::string(i % 40, 'x'));
      u.erase(i);
    }
    for (const auto& [k, v] : m) PROBE_CHECK(k.rfind("key-", 0) == 0 && !v.empty());
    for (const auto& [i, s] : u) PROBE_CHECK(s.size() % 2 == 0 && s.substr(0, s.size() / 2) == s.substr(s.size() / 2));
  }
  std::vector<std::unique_ptr<std::string>> big;
  for (int i = 0; i < 2000; ++i) big.push_back(std::make_unique<std::string>(i * 3, 'a' + i % 26));
  for (int i = 0; i < 2000; ++i) PROBE_CHECK(big[i]->size() == static_cast<std::size_t>(i) * 3);
}

void Threads() {
  constexpr int kThreads = 4;
  std::mutex mu;
  std::vector<std::pair<void*, std::uint64_t>> handoff;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      StlChurn(t);
      for (int i = 0; i < 5000; ++i) {
        const std::size_t size = 16 + (i * 97) % 2000;
        void* p = std::malloc(size);
        if (p == nullptr) {
          bad.fetch_add(1);
          continue;
        }
        Fill(p, 16, static_cast<std::uint64_t>(t) * 100000 + i);
        std::lock_guard<std::mutex> lock(mu);
        handoff.push_back({p, static_cast<std::uint64_t>(t) * 100000 + i});
        if (handoff.size() > 64) {  // free someone else's blocks
          for (auto& [q, seed] : handoff) {
            if (!Check(q, 16, seed)) bad.fetch_add(1);
            std::free(q);
          }
          handoff.clear();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& [q, seed] : handoff) {
    PROBE_CHECK(Check(q, 16, seed));
    std::free(q);
  }
  PROBE_CHECK(bad.load() == 0);
}

void Fork() {
  std::vector<std::string> data;
  for (int i = 0; i < 3000; ++i) data.push_back(std::string(i % 300 + 1, static_cast<char>('A' + i % 26)));
  void* big = std::malloc(3u << 20);
  Fill(big, 3u << 20, 77);
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(60);
    int code = 0;
    for (int i = 0; i < 3000; ++i) {
      if (data[i] != std::string(i % 300 + 1, static_cast<char>('A' + i % 26))) code = 2;
    }
    if (!Check(big, 3u << 20, 77)) code = 3;
    std::vector<std::string> more;
    for (int i = 0; i < 20000; ++i) more.push_back(std::to_string(i) + std::string(i % 100, 'z'));
    for (int i = 0; i < 20000; ++i) {
      if (more[i] != std::to_string(i) + std::string(i % 100, 'z')) code = 4;
    }
    std::free(big);
    void* large = std::malloc(16u << 20);
    if (large == nullptr) code = 5;
    if (large != nullptr) std::memset(large, 1, 16u << 20);
    std::free(large);
    _exit(code);
  }
  PROBE_CHECK(pid > 0);
  int status = 0;
  PROBE_CHECK(waitpid(pid, &status, 0) == pid);
  PROBE_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    std::fprintf(stderr, "fork child status %#x\n", status);
  }
  PROBE_CHECK(Check(big, 3u << 20, 77));
  std::free(big);
}

// Whether malloc is uvmem's: the statistics count our calls, and the blocks sit in a
// mapping of the heap's size.
bool HeapIsUvmem(StatsFn stats, bool use_stats) {
  if (stats == nullptr) return false;
  uvmem_malloc_stats before{}, after{};
  if (use_stats) stats(&before);
  std::vector<void*> blocks;
  for (int i = 0; i < 100; ++i) blocks.push_back(std::malloc(64));
  if (use_stats) {
    stats(&after);
  } else {
    after.malloc_calls = 100;
    after.heap_reserved_bytes = std::uint64_t{1} << 30;
    after.paged = -1;  // not asked
  }
  bool counted = after.malloc_calls >= before.malloc_calls + 100;
  bool in_heap = MappingBytes(blocks[0]) >= (std::uint64_t{1} << 30) &&
                 after.heap_reserved_bytes >= (std::uint64_t{1} << 30);
  for (void* p : blocks) std::free(p);
  if (!counted) std::fprintf(stderr, "malloc_calls %" PRIu64 " -> %" PRIu64 "\n", before.malloc_calls, after.malloc_calls);
  if (!in_heap) std::fprintf(stderr, "block %p in a mapping of %" PRIu64 " bytes\n", blocks[0], MappingBytes(blocks[0]));
  std::printf("paged=%d\n", after.paged);
  return counted && in_heap;
}

int Huge() {
  errno = 0;
  void* p = std::malloc(Opaque(SIZE_MAX));
  PROBE_CHECK(p == nullptr && errno == ENOMEM);
  p = std::malloc(Opaque(SIZE_MAX - 8));
  PROBE_CHECK(p == nullptr);
  PROBE_CHECK(::operator new(Opaque(SIZE_MAX), std::nothrow) == nullptr);
  bool threw = false;
  try {
    (void)::operator new[](Opaque(SIZE_MAX - 4));
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  PROBE_CHECK(threw);
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "all";
  const StatsFn stats = FindStats();
  under_uvmem = stats != nullptr;
  std::printf("uvmem=%d\n", stats != nullptr ? 1 : 0);
  std::fflush(stdout);
  if (mode == "huge") {
    Huge();
  } else {
    const bool uvmem_heap = HeapIsUvmem(stats, mode != "nostats");
    std::printf("heap=%s\n", uvmem_heap ? "uvmem" : "other");
    std::printf("runtime_threads=%d\n", RuntimeThreads());
    MallocFamily();
    OperatorNewDelete();
    StlChurn(0);
    Threads();
    Fork();
    MallocFamily();  // again, after fork and with other threads' heaps abandoned
  }
  if (failures != 0) {
    std::printf("FAIL: %d checks failed\n", failures);
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
