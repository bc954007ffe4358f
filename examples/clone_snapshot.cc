// clone_snapshot — a checkpoint of a table with Range::Clone, as a database or a
// simulation would take one: clone, keep writing the live table, and the snapshot still
// holds the bytes of the moment of the clone. Prints what sharing saved.
//
//   clone_snapshot [--table-mib=N]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "uvmem/runtime.h"

int main(int argc, char** argv) {
  std::size_t mib = 64;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--table-mib=", 0) == 0) {
      mib = std::strtoull(arg.c_str() + 12, nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: clone_snapshot [--table-mib=N]\n");
      return 2;
    }
  }
  auto runtime = uvmem::Runtime::Create({.pool_bytes_total = 4 * mib << 20});
  if (!runtime.ok()) {
    std::fprintf(stderr, "uvmem: %s\n", runtime.status().ToString().c_str());
    return 1;
  }
  const std::size_t bytes = mib << 20, pages = bytes / 4096;
  auto table = (*runtime)->Reserve(bytes, {.name = "table"});
  if (!table.ok()) {
    std::fprintf(stderr, "uvmem: %s\n", table.status().ToString().c_str());
    return 1;
  }
  auto* live = static_cast<std::uint64_t*>(table->data());
  for (std::size_t p = 0; p < pages; ++p) live[p * 512] = p;  // version 0 of every page

  auto snapshot = table->Clone("checkpoint");  // cost ~ the table's page table
  if (!snapshot.ok()) {
    std::fprintf(stderr, "uvmem: %s\n", snapshot.status().ToString().c_str());
    return 1;
  }
  const uvmem::CloneStats shared = (*runtime)->Stats().clone;
  std::printf("cloned %zu MiB: %llu pages shared, %llu MiB saved\n", mib,
              static_cast<unsigned long long>(shared.shared_pages / 2),
              static_cast<unsigned long long>(shared.bytes_saved >> 20));

  for (std::size_t p = 0; p < pages; p += 4) live[p * 512] = p + 1'000'000;  // keep working

  const auto* old = static_cast<const std::uint64_t*>(snapshot->data());
  std::size_t verified = 0;
  for (std::size_t p = 0; p < pages; ++p) {
    const std::uint64_t want_live = p % 4 == 0 ? p + 1'000'000 : p;
    verified += old[p * 512] == p && live[p * 512] == want_live;
  }
  const uvmem::CloneStats after = (*runtime)->Stats().clone;
  std::printf("wrote 1 page in 4 of the table: %llu copies on the table's side, %llu on "
              "the snapshot's; %llu MiB still shared\n",
              static_cast<unsigned long long>(after.cow_copies_source_side),
              static_cast<unsigned long long>(after.cow_copies_clone_side),
              static_cast<unsigned long long>(after.bytes_saved >> 20));
  std::printf("%zu of %zu pages verified (snapshot = version 0, table = its new bytes)\n",
              verified, pages);
  return verified == pages ? 0 : 1;
}
