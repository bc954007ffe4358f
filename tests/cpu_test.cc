#include "platform/cpu.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <thread>

namespace uvmem::internal {
namespace {

// Pinned to one CPU, a thread's /proc "processor" field must name that CPU.
TEST(CpuOfThread, NamesTheCpuAPinnedThreadRunsOn) {
  for (int cpu = 0; cpu < std::min(ConfiguredCpuCount(), 4); ++cpu) {
    int seen = -2;
    std::thread t([&] {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      if (sched_setaffinity(0, sizeof(set), &set) != 0) return;  // CPU offline
      sched_yield();
      seen = CpuOfThread(static_cast<int>(gettid()));
    });
    t.join();
    if (seen == -2) continue;
    EXPECT_EQ(seen, cpu);
  }
}

TEST(CpuOfThread, UnknownThreadIsMinusOne) {
  EXPECT_EQ(CpuOfThread(0), -1);
  EXPECT_EQ(CpuOfThread(1 << 30), -1);
}

}  // namespace
}  // namespace uvmem::internal
