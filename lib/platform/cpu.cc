#include "platform/cpu.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstring>

namespace uvmem::internal {

int CurrentCpu() {
  int cpu = ::sched_getcpu();
  return cpu < 0 ? 0 : cpu;
}

int CpuOfThread(int tid) {
  char path[48] = {};
  fmt::format_to_n(path, sizeof(path) - 1, "/proc/self/task/{}/stat", tid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  // "tid (comm) state ppid ...": comm may hold spaces and ')', so fields are counted
  // from the last ')'. Field 3 (state) follows it; "processor" is field 39.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return -1;
  int field = 2;
  for (++p; *p != '\0' && field < 39; ++p) {
    if (*p == ' ') ++field;
  }
  if (field != 39) return -1;
  int cpu = 0;
  bool digits = false;
  for (; *p >= '0' && *p <= '9'; ++p, digits = true) cpu = cpu * 10 + (*p - '0');
  return digits ? cpu : -1;
}

int ConfiguredCpuCount() {
  int n = ::get_nprocs_conf();
  return n < 1 ? 1 : n;
}

void YieldCpu() { ::sched_yield(); }

}  // namespace uvmem::internal
