// preload_config.h — PreloadConfig: the UVMEM_* environment variables that configure the
// preloaded allocator (libuvmem_preload.so), and the parsers `uvmem run` checks its flags
// with. docs/preload.md documents the variables for users.
//
//   variable              value                                   default
//   UVMEM_POOL            bytes of frame pool, all nodes (4G)     physical RAM
//   UVMEM_FAULT_AROUND    pages per fault, power of two 1..512    16
//   UVMEM_READAHEAD       pages, 0..8192 (0 = off)                64
//   UVMEM_FAULT_THREADS   0..256 (0 = one per NUMA node)          0
//   UVMEM_NUMA            local | bind:N | preferred:N |          local
//                         interleave:N,M,...
//   UVMEM_STATS           text | json (to stderr) | FILE (JSON)   off
//   UVMEM_STATS_PID       report only in the process with this    0 (any process)
//                         pid
//   UVMEM_BUDGET          most bytes of heap pages resident at    0 (no budget)
//                         once (512M); 0 = no budget; >= 1M
//   UVMEM_SWAP            where swapped pages go: a directory,    $TMPDIR, else /tmp
//                         an existing file or a block device
//   UVMEM_SWAP_MAX        most bytes of swap (1G); 0 = default;   the pool, >= 4 x budget
//                         >= 1M
//
// UVMEM_SWAP and UVMEM_SWAP_MAX only matter with a budget; without one they are checked
// for form and otherwise ignored. A budget must not exceed the pool (UVMEM_POOL, or the
// physical RAM when UVMEM_POOL is unset: the budget, not the pool, is then the limit).
//
// A variable set to the empty string counts as unset. Values are exact: no surrounding
// spaces, no signs, decimal digits only (a byte size may end in a binary unit).
//
// Allocation: parsing runs inside the preloaded malloc's first call, where nested
// allocations are served from a small bootstrap arena. It allocates little (a few short
// strings and, for an interleave list, one vector), uses no iostreams, regex or locale,
// and never throws.
// Thread-safety: every function is pure apart from the lookup; safe to call from any
// thread as long as the lookup is (getenv is, while nobody calls setenv).
#ifndef UVMEM_CONFIG_PRELOAD_CONFIG_H_
#define UVMEM_CONFIG_PRELOAD_CONFIG_H_

#include <absl/functional/function_ref.h>
#include <absl/status/statusor.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "uvmem/runtime.h"

namespace uvmem::internal {

// The variables' names, shared by the preload, `uvmem run` and the tests.
inline constexpr char kEnvPool[] = "UVMEM_POOL";
inline constexpr char kEnvFaultAround[] = "UVMEM_FAULT_AROUND";
inline constexpr char kEnvReadahead[] = "UVMEM_READAHEAD";
inline constexpr char kEnvFaultThreads[] = "UVMEM_FAULT_THREADS";
inline constexpr char kEnvNuma[] = "UVMEM_NUMA";
inline constexpr char kEnvStats[] = "UVMEM_STATS";
inline constexpr char kEnvStatsPid[] = "UVMEM_STATS_PID";
inline constexpr char kEnvBudget[] = "UVMEM_BUDGET";
inline constexpr char kEnvSwap[] = "UVMEM_SWAP";
inline constexpr char kEnvSwapMax[] = "UVMEM_SWAP_MAX";

// The smallest non-zero budget (RuntimeOptions::budget_bytes) and swap size.
inline constexpr std::size_t kMinBudgetBytes = std::size_t{1} << 20;  // 1 MiB
inline constexpr std::size_t kMinSwapMaxBytes = std::size_t{1} << 20;  // one swap cluster

// Defaults of the preloaded allocator where they differ from RuntimeOptions'.
inline constexpr std::size_t kPreloadFaultAroundPages = 16;
inline constexpr std::size_t kPreloadReadaheadPages = 64;

// The preloaded allocator's configuration, as read from the environment.
struct PreloadConfig {
  // The runtime under the heap. pool_bytes_total is UVMEM_POOL (default: the machine's
  // physical RAM) and pool_bytes_per_node is 0 (the pool is split over the nodes);
  // fault_around_pages, readahead_pages, fault_threads, budget_bytes (UVMEM_BUDGET),
  // swap_path (UVMEM_SWAP, as given: a relative path is relative to the working
  // directory) and swap_max_bytes (UVMEM_SWAP_MAX) come from their variables; every
  // other field keeps RuntimeOptions' default.
  RuntimeOptions runtime;
  NumaPolicy numa;  // the heap's default policy (UVMEM_NUMA)
  enum class StatsFormat { kNone, kText, kJson };
  StatsFormat stats = StatsFormat::kNone;
  std::string stats_path;  // where the report goes; "" = stderr
  long stats_pid = 0;      // report only in the process with this pid (0: any process)
};

// A getenv-like function: the value of the variable `name`, or nullptr when unset.
// `&getenv` converts to it, and so does a test's fake environment (a lambda).
using EnvLookup = absl::FunctionRef<const char*(const char*)>;

// Reads every UVMEM_* variable above through `lookup` (each once). Unset or empty
// variables take their defaults. Errors: InvalidArgument naming the first bad variable,
// its value and the accepted forms, e.g.
//   "UVMEM_FAULT_AROUND=48: expected a power of two from 1 to 512 (pages)".
// After each variable on its own, the checks across variables: a UVMEM_BUDGET larger
// than the pool is an error naming both, e.g. "UVMEM_BUDGET=8G: the budget (8589934592
// bytes = 8.0 GiB) is more than the frame pool (UVMEM_POOL=4G: ...); lower UVMEM_BUDGET
// or raise UVMEM_POOL".
// Node numbers are checked for form only; whether a node exists is the runtime's call;
// so is whether the UVMEM_SWAP path exists and can be written.
absl::StatusOr<PreloadConfig> ParsePreloadConfig(EnvLookup lookup);

// ParsePreloadConfig without the checks across variables: each variable's value on its
// own, with the same errors. `uvmem run` checks its flags one at a time with it.
absl::StatusOr<PreloadConfig> ParsePreloadVariables(EnvLookup lookup);

// "local", "bind:N", "preferred:N" or "interleave:N,M,..." (1 to 64 distinct nodes; N
// are the kernel's node numbers, 0..1023). Errors: InvalidArgument saying what was
// expected (the message does not name a variable or flag: callers prefix it).
absl::StatusOr<NumaPolicy> ParseNumaPolicy(std::string_view text);

// The inverse of ParseNumaPolicy: ParseNumaPolicy(FormatNumaPolicy(p)) == p for every
// policy it accepts.
std::string FormatNumaPolicy(const NumaPolicy& policy);

// A byte count: decimal digits with an optional binary unit, K/M/G/T (powers of 1024),
// in either case and optionally followed by "iB" or "B" ("64K", "512M", "4GiB",
// "1048576", "100b"). Errors: InvalidArgument for any other form and for values past
// 2^64-1 (the message does not name a variable or flag: callers prefix it).
absl::StatusOr<std::size_t> ParseByteSize(std::string_view text);

}  // namespace uvmem::internal

#endif  // UVMEM_CONFIG_PRELOAD_CONFIG_H_
