#include "platform/report.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace uvmem::internal {
namespace {

void WriteAll(std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(STDERR_FILENO, text.data(), text.size());
    if (n <= 0) return;  // stderr closed: nothing better to do
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

void WriteLine(std::string_view message) {
  char buffer[1100];
  std::size_t len = 0;
  auto append = [&](std::string_view s) {
    std::size_t n = std::min(s.size(), sizeof(buffer) - len);
    std::memcpy(buffer + len, s.data(), n);
    len += n;
  };
  append("uvmem: ");
  append(message);
  append("\n");
  WriteAll(std::string_view(buffer, len));
}

}  // namespace

void ReportFatalMessage(std::string_view message) {
  WriteLine(message);
  std::abort();
}

void ReportWarningMessage(std::string_view message) { WriteLine(message); }

void ReportCheckFailure(const char* file, int line, const char* condition) {
  ReportFatal("{}:{}: CHECK failed: {}", file, line, condition);
}

}  // namespace uvmem::internal
