// report.h — fatal error reports, in one place (as scudo's report.h).
//
// Every unrecoverable misuse (double free, bad order, broken invariant) ends here: the
// message goes to stderr in one write(2), prefixed "uvmem: ", then the process aborts.
// Formatting uses fmt into a fixed stack buffer: no heap allocation, so a report is safe
// from the allocator's own paths and from fault-handling threads.
//
// Thread-safety: all functions may be called from any thread, concurrently.
#ifndef UVMEM_PLATFORM_REPORT_H_
#define UVMEM_PLATFORM_REPORT_H_

#include <fmt/format.h>

#include <algorithm>
#include <string_view>
#include <utility>

namespace uvmem::internal {

// Writes "uvmem: <message>\n" to stderr and aborts. Never returns.
[[noreturn]] void ReportFatalMessage(std::string_view message);

// Writes "uvmem: <message>\n" to stderr; returns. For warnings that must not allocate.
void ReportWarningMessage(std::string_view message);

// Formats into a 1 KiB stack buffer (truncating) and reports fatally.
template <typename... Args>
[[noreturn]] void ReportFatal(fmt::format_string<Args...> format, Args&&... args) {
  char buffer[1024];
  auto result = fmt::format_to_n(buffer, sizeof(buffer), format, std::forward<Args>(args)...);
  ReportFatalMessage(std::string_view(buffer, std::min<std::size_t>(result.size, sizeof(buffer))));
}

template <typename... Args>
void ReportWarning(fmt::format_string<Args...> format, Args&&... args) {
  char buffer[1024];
  auto result = fmt::format_to_n(buffer, sizeof(buffer), format, std::forward<Args>(args)...);
  ReportWarningMessage(std::string_view(buffer, std::min<std::size_t>(result.size, sizeof(buffer))));
}

// Reported by UVMEM_CHECK: "<file>:<line>: CHECK failed: <condition>".
[[noreturn]] void ReportCheckFailure(const char* file, int line, const char* condition);

}  // namespace uvmem::internal

// Always-on invariant check. Use for broken invariants that would corrupt memory.
#define UVMEM_CHECK(cond)                                                    \
  do {                                                                       \
    if (__builtin_expect(!(cond), 0))                                        \
      ::uvmem::internal::ReportCheckFailure(__FILE__, __LINE__, #cond);      \
  } while (0)

// Debug-only check: compiled out in NDEBUG builds unless UVMEM_DEBUG_FULL.
#if !defined(NDEBUG) || defined(UVMEM_DEBUG_FULL)
#define UVMEM_DCHECK(cond) UVMEM_CHECK(cond)
#else
#define UVMEM_DCHECK(cond) \
  do {                     \
    (void)sizeof(cond);    \
  } while (0)
#endif

#endif  // UVMEM_PLATFORM_REPORT_H_
