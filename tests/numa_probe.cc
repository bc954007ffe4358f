// A program that knows nothing of uvmem, for `uvmem run --numa ...` placement tests
// (numa_placement_test): allocates `mib` MiB in 1 MiB blocks with malloc, writes them,
// asks move_pages(2) where every page lives and prints
//   numa_probe: blocks=B pages=P uvmem_heap=yes|no
//   node N: C          (one line per node holding pages; C pages)
// Exit 0, or 1 when a page is not resident (move_pages answered an error for it).
#include <dlfcn.h>
#include <numaif.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <vector>

int main(int argc, char** argv) {
  const int mib = argc > 1 ? std::atoi(argv[1]) : 16;
  constexpr std::size_t kBlock = std::size_t{1} << 20, kPage = 4096;
  std::vector<void*> pages;
  std::vector<char*> blocks;
  for (int b = 0; b < mib; ++b) {
    auto* p = static_cast<char*>(std::malloc(kBlock));
    if (p == nullptr) {
      std::fprintf(stderr, "numa_probe: malloc failed\n");
      return 1;
    }
    std::memset(p, b + 1, kBlock);
    blocks.push_back(p);
    // Whole pages inside the block only: its first and last may be shared with others.
    auto first = (reinterpret_cast<std::uintptr_t>(p) + kPage - 1) & ~(kPage - 1);
    for (auto a = first; a + kPage <= reinterpret_cast<std::uintptr_t>(p) + kBlock; a += kPage) {
      pages.push_back(reinterpret_cast<void*>(a));
    }
  }
  std::vector<int> status(pages.size(), -1);
  if (move_pages(0, pages.size(), pages.data(), nullptr, status.data(), 0) != 0) {
    std::perror("numa_probe: move_pages");
    return 1;
  }
  std::map<int, std::size_t> per_node;
  int bad = 0;
  for (int s : status) {
    if (s < 0) {
      ++bad;
    } else {
      ++per_node[s];
    }
  }
  const bool uvmem = dlsym(RTLD_DEFAULT, "uvmem_malloc_stats_get") != nullptr;
  std::printf("numa_probe: blocks=%d pages=%zu uvmem_heap=%s\n", mib, pages.size(),
              uvmem ? "yes" : "no");
  for (const auto& [node, count] : per_node) std::printf("node %d: %zu\n", node, count);
  for (char* p : blocks) std::free(p);
  if (bad != 0) std::fprintf(stderr, "numa_probe: %d pages not resident\n", bad);
  return bad == 0 ? 0 : 1;
}
