// Built against an installed uvmem through find_package(uvmem).
#include <uvmem/runtime.h>

#include <cstdio>
#include <cstring>

int main() {
  auto runtime = uvmem::Runtime::Create({.pool_bytes_total = 16u << 20});
  if (!runtime.ok()) return 1;
  auto range = (*runtime)->Reserve(1u << 20, {.name = "consumer"});
  if (!range.ok()) return 2;
  std::memset(range->data(), 7, 1u << 20);
  if (range->Stats().resident_pages != 256) return 3;
  if (!range->Release().ok()) return 4;
  std::puts("c++ consumer ok");
  return 0;
}
