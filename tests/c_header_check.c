/* Compiled as C11: the public C header must stay valid C. */
#include "uvmem/uvmem.h"

int uvmem_c_header_check(void) {
  uvmem_runtime_options options;
  uvmem_runtime_options_init(&options);
  return (int)options.fault_around_pages;
}
