// budget_swap — a range four times larger than its resident budget: uvmem swaps the cold
// pages to an unlinked file and reads them back on touch. Prints what it did.
//
//   build/examples/budget_swap [--budget-mib=32] [--range-mib=128] [--swap=DIR]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "uvmem/runtime.h"

int main(int argc, char** argv) {
  std::size_t budget_mib = 32, range_mib = 128;
  std::string swap;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--budget-mib=", 13) == 0) {
      budget_mib = std::strtoull(argv[i] + 13, nullptr, 10);
    } else if (std::strncmp(argv[i], "--range-mib=", 12) == 0) {
      range_mib = std::strtoull(argv[i] + 12, nullptr, 10);
    } else if (std::strncmp(argv[i], "--swap=", 7) == 0) {
      swap = argv[i] + 7;
    } else {
      std::fprintf(stderr, "usage: %s [--budget-mib=N] [--range-mib=N] [--swap=DIR]\n", argv[0]);
      return 2;
    }
  }
  uvmem::RuntimeOptions options;
  options.pool_bytes_total = (budget_mib + 64) << 20;
  options.budget_bytes = budget_mib << 20;  // at most this much of the range resident
  options.swap_path = swap;                 // empty: an O_TMPFILE file in $TMPDIR or /tmp
  auto runtime = uvmem::Runtime::Create(options);
  if (!runtime.ok()) {
    std::fprintf(stderr, "uvmem: %s\n", std::string(runtime.status().message()).c_str());
    return 1;
  }
  auto range = (*runtime)->Reserve(range_mib << 20, {.name = "big"});
  if (!range.ok()) {
    std::fprintf(stderr, "uvmem: %s\n", std::string(range.status().message()).c_str());
    return 1;
  }
  // Write every page, then read every page back: most of them come back from swap.
  auto* words = static_cast<std::uint64_t*>(range->data());
  const std::size_t pages = (range_mib << 20) / 4096;
  for (std::size_t p = 0; p < pages; ++p) words[p * 512] = p * 2654435761u + 1;
  std::size_t good = 0;
  for (std::size_t p = 0; p < pages; ++p) good += words[p * 512] == p * 2654435761u + 1;

  const uvmem::RuntimeStats s = (*runtime)->Stats();
  const uvmem::SwapStats& w = s.swap;
  std::printf("%zu MiB range, %zu MiB budget, swap %s\n", range_mib, budget_mib,
              w.device.c_str());
  std::printf("resident now: %llu pages (budget %llu)\n",
              static_cast<unsigned long long>(s.resident_pages),
              static_cast<unsigned long long>(w.budget_pages));
  std::printf("swapped out %llu pages (%llu MiB written), swapped in %llu (%llu read ahead), "
              "%llu dropped clean; swap-in p50 %llu us\n",
              static_cast<unsigned long long>(w.pages_swapped_out),
              static_cast<unsigned long long>(w.bytes_written >> 20),
              static_cast<unsigned long long>(w.pages_swapped_in),
              static_cast<unsigned long long>(w.readahead_pages),
              static_cast<unsigned long long>(w.clean_pages_dropped),
              static_cast<unsigned long long>(w.swapin_latency_p50_ns / 1000));
  std::printf("%zu of %zu pages verified\n", good, pages);
  return good == pages ? 0 : 1;
}
