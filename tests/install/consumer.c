/* Built against an installed uvmem through pkg-config: reserve, touch, release. */
#include <stdio.h>
#include <string.h>
#include <uvmem/uvmem.h>

int main(void) {
  uvmem_runtime_options options;
  uvmem_runtime_options_init(&options);
  options.pool_bytes_total = 16u << 20;
  uvmem_runtime* runtime;
  if (uvmem_runtime_create(&options, &runtime) != 0) {
    fprintf(stderr, "create: %s\n", uvmem_last_error());
    return 1;
  }
  uvmem_range* range;
  if (uvmem_reserve(runtime, 1u << 20, NULL, &range) != 0) return 2;
  memset(uvmem_range_data(range), 7, 1u << 20);
  uvmem_range_stats stats;
  if (uvmem_range_stats_get(range, &stats) != 0 || stats.resident_pages != 256) return 3;
  if (uvmem_range_release(range) != 0) return 4;
  uvmem_runtime_destroy(runtime);
  puts("c consumer ok");
  return 0;
}
