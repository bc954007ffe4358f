// demand_paging — reserve a range, touch part of it, and print what uvmem did.
//
//   build/examples/demand_paging [--reserve-mib=1024] [--touch-mib=64]
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "uvmem/runtime.h"

int main(int argc, char** argv) {
  std::size_t reserve_mib = 1024, touch_mib = 64;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--reserve-mib=", 14) == 0) {
      reserve_mib = std::strtoull(argv[i] + 14, nullptr, 10);
    } else if (std::strncmp(argv[i], "--touch-mib=", 12) == 0) {
      touch_mib = std::strtoull(argv[i] + 12, nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s [--reserve-mib=N] [--touch-mib=N]\n", argv[0]);
      return 2;
    }
  }
  if (touch_mib > reserve_mib) touch_mib = reserve_mib;

  auto runtime = uvmem::Runtime::Create({.pool_bytes_total = (touch_mib + 64) << 20});
  if (!runtime.ok()) {
    std::fprintf(stderr, "uvmem: %s\n", std::string(runtime.status().message()).c_str());
    return 1;
  }
  auto range = (*runtime)->Reserve(reserve_mib << 20, {.name = "example"});
  if (!range.ok()) {
    std::fprintf(stderr, "uvmem: %s\n", std::string(range.status().message()).c_str());
    return 1;
  }
  auto* bytes = static_cast<unsigned char*>(range->data());
  std::printf("reserved %zu MiB at %p; touching the first %zu MiB...\n", reserve_mib,
              range->data(), touch_mib);
  for (std::size_t off = 0; off < (touch_mib << 20); off += 4096) bytes[off] = 0xa5;
  std::size_t checked = 0;
  for (std::size_t off = 0; off < (touch_mib << 20); off += 4096) checked += bytes[off] == 0xa5;

  const uvmem::RangeStats s = range->Stats();
  const uvmem::RuntimeStats r = (*runtime)->Stats();
  std::printf("range '%s': %llu faults filled %llu pages (%llu by fault-around), %llu moved, "
              "%llu copied; %llu resident (%llu MiB), page tables %llu KiB; %zu pages verified\n",
              s.name.c_str(), (unsigned long long)s.faults, (unsigned long long)s.pages_filled,
              (unsigned long long)s.fault_around_pages, (unsigned long long)s.pages_moved,
              (unsigned long long)s.pages_copied, (unsigned long long)s.resident_pages,
              (unsigned long long)(s.resident_pages >> 8),
              (unsigned long long)(s.page_table_bytes >> 10), checked);
  std::printf("runtime: userfaultfd %s, %s path, fault-around %zu pages, fault latency p50 "
              "%llu ns p99 %llu ns\n",
              r.uffd_mode.c_str(), r.move_used ? "MOVE" : "COPY", (*runtime)->fault_around_pages(),
              (unsigned long long)r.fault_latency_p50_ns, (unsigned long long)r.fault_latency_p99_ns);
  for (const auto& node : r.nodes) {
    std::printf("node %d: %llu of %llu frames in use (peak %llu)\n", node.node.value,
                (unsigned long long)node.used_frames, (unsigned long long)node.total_frames,
                (unsigned long long)node.peak_used_frames);
  }
  return (range->Release().ok() && checked == (touch_mib << 8)) ? 0 : 1;
}
