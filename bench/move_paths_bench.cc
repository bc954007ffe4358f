// move_paths_bench — what each way of putting 2 MiB of zeroed memory into a userfaultfd
// range costs, measured in one run (the numbers behind docs/design.md's MOVE/COPY/THP
// choices):
//   populate-4k   MADV_POPULATE_WRITE of 4 KiB pages (materialising pool frames)
//   populate-thp  MADV_POPULATE_WRITE under MADV_HUGEPAGE (a THP-backed pool)
//   move-thp      UFFDIO_MOVE of one PMD-mapped 2 MiB THP into a 2 MiB-aligned window
//   move-4k       UFFDIO_MOVE of resident 4 KiB pages, 64 per ioctl
//   copy-4k       UFFDIO_COPY from a zero buffer, 64 pages per ioctl
//   native-4k     the kernel's own 4 KiB first-touch faults
//   native-thp    the kernel's own THP first-touch faults (MADV_HUGEPAGE)
// Figures are microseconds per 2 MiB.
//
//   move_paths_bench [--blocks=32]
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>

#include "platform/memory_map.h"
#include "platform/userfaultfd.h"

ABSL_FLAG(int, blocks, 32, "2 MiB blocks per measurement");

namespace {
using namespace uvmem::internal;

constexpr std::size_t k2M = std::size_t{2} << 20;
constexpr std::size_t kBatch = 64 * 4096;

double NowUs() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

char* Map(std::size_t bytes, bool thp) {
  auto m = ReserveAnonymous(bytes, k2M);
  if (!m.ok()) std::abort();
  (void)AdviseHugePages(*m, bytes, thp);
  return static_cast<char*>(*m);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("cost of the ways to fill a userfaultfd range, per 2 MiB");
  absl::ParseCommandLine(argc, argv);
  const std::size_t n = static_cast<std::size_t>(std::max(1, absl::GetFlag(FLAGS_blocks)));
  const std::size_t bytes = n * k2M;
  auto uffd = Userfaultfd::Open(UffdFeatures(kUffdFeatureMove));
  if (!uffd.ok()) {
    fmt::print("no userfaultfd with MOVE here: {}\n", std::string(uffd.status().message()));
    return 0;
  }
  char* arena_thp = Map(bytes, true);
  char* arena_4k = Map(bytes, false);
  char* dst_thp = Map(bytes, true);
  char* dst_4k = Map(bytes, false);
  char* dst_copy = Map(bytes, false);
  char* zero = Map(kBatch, false);
  for (char* r : {dst_thp, dst_4k, dst_copy}) {
    if (uffd->Register(r, bytes, {}).error != 0) std::abort();
  }
  auto per_2m = [&](double us) { return us / static_cast<double>(n); };
  auto row = [](const char* name, double us, const char* note) {
    fmt::print("{:<14} {:>10.1f} us per 2 MiB  {}\n", name, us, note);
  };

  double t = NowUs();
  const int e4k = PopulateWrite(arena_4k, bytes);
  row("populate-4k", per_2m(NowUs() - t), e4k ? "(failed)" : "");
  t = NowUs();
  const int ethp = PopulateWrite(arena_thp, bytes);
  row("populate-thp", per_2m(NowUs() - t), ethp ? "(failed)" : "");

  t = NowUs();
  std::size_t done = 0;
  for (std::size_t i = 0; i < n; ++i) {
    done += uffd->Move(dst_thp + i * k2M, arena_thp + i * k2M, k2M, {.dontwake = true}).bytes_done;
  }
  row("move-thp", per_2m(NowUs() - t), done == bytes ? "" : "(incomplete)");

  t = NowUs();
  done = 0;
  for (std::size_t off = 0; off < bytes; off += kBatch) {
    done += uffd->Move(dst_4k + off, arena_4k + off, kBatch, {.dontwake = true}).bytes_done;
  }
  row("move-4k", per_2m(NowUs() - t), done == bytes ? "" : "(incomplete)");

  t = NowUs();
  done = 0;
  for (std::size_t off = 0; off < bytes; off += kBatch) {
    done += uffd->Copy(dst_copy + off, zero, kBatch, {.dontwake = true}).bytes_done;
  }
  row("copy-4k", per_2m(NowUs() - t), done == bytes ? "" : "(incomplete)");

  for (bool thp : {false, true}) {
    char* native = Map(bytes, thp);
    t = NowUs();
    for (std::size_t off = 0; off < bytes; off += 4096) native[off] = 1;
    row(thp ? "native-thp" : "native-4k", per_2m(NowUs() - t), "");
    (void)ReleaseMapping(native, bytes);
  }
  return 0;
}
