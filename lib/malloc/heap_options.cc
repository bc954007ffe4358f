#include "malloc/heap_options.h"

#include <cstdlib>

#include "config/preload_config.h"

namespace uvmem::internal {

HeapOptions LoadHeapOptions() {
  HeapOptions o;
  auto config = ParsePreloadConfig(&getenv);
  if (!config.ok()) {
    o.config_error = std::string(config.status().message());
    config = ParsePreloadConfig([](const char*) -> const char* { return nullptr; });
  }
  o.runtime = config->runtime;
  o.numa = config->numa;
  return o;
}

}  // namespace uvmem::internal
