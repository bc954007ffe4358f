/* Compiled as C11: the public C header must stay valid C. */
#include "uvmem/uvmem.h"

int uvmem_c_header_check(void) {
  uvmem_runtime_options options;
  uvmem_runtime_options_init(&options);
  options.budget_bytes = (size_t)512 << 20;
  options.swap_path = NULL;
  options.swap_max_bytes = 0;
  uvmem_runtime_stats stats = {0};
  uvmem_range_stats range_stats = {0};
  return (int)options.fault_around_pages + stats.swap_enabled +
         (int)(stats.swap_pages_swapped_out + range_stats.swapped_pages);
}
