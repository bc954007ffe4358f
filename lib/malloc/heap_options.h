// heap_options.h — what the heap starts with: the runtime's options, the heap's NUMA
// policy, area size and purge delay, read from the UVMEM_* environment (docs/preload.md).
//
// Thread-safety: LoadHeapOptions is called once, during start-up.
#ifndef UVMEM_MALLOC_HEAP_OPTIONS_H_
#define UVMEM_MALLOC_HEAP_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "uvmem/runtime.h"

namespace uvmem::internal {

struct HeapOptions {
  RuntimeOptions runtime;
  NumaPolicy numa;
  // Address space of each heap area (one per node); halved until it can be reserved.
  std::size_t area_bytes = std::size_t{64} << 30;
  // A freed span keeps its frames this long before they go back to the pool.
  std::uint64_t purge_delay_ns = 10'000'000;
  // Set when a variable was malformed (the default was used instead): said on stderr.
  std::string config_error;
};

HeapOptions LoadHeapOptions();

}  // namespace uvmem::internal

#endif  // UVMEM_MALLOC_HEAP_OPTIONS_H_
