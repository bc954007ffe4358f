#include "platform/thread.h"

#include <fcntl.h>
#include <unistd.h>

#include <absl/status/status.h>
#include <fmt/format.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace uvmem::internal {

sigset_t BlockAllSignalsInThisThread() {
  sigset_t all;
  sigset_t previous;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &previous);
  return previous;
}

void RestoreSignalMask(const sigset_t& mask) { pthread_sigmask(SIG_SETMASK, &mask, nullptr); }

void SetThreadName(pthread_t thread, const char* name) {
  char truncated[16] = {};
  std::strncpy(truncated, name, sizeof(truncated) - 1);
  pthread_setname_np(thread, truncated);
}

int PinThisThreadToCpus(absl::Span<const int> cpus) {
  if (cpus.empty()) return 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) {
    if (cpu >= 0 && cpu < CPU_SETSIZE) CPU_SET(cpu, &set);
  }
  return ::sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : errno;
}

int CurrentThreadId() { return static_cast<int>(::syscall(SYS_gettid)); }

int SignalThread(int tid, int signal) {
  return ::syscall(SYS_tgkill, ::getpid(), tid, signal) == 0 ? 0 : errno;
}

absl::StatusOr<WakeupFd> WakeupFd::Create() {
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    std::string message = fmt::format("eventfd: {}", std::strerror(err));
    if (err == EMFILE || err == ENFILE || err == ENOMEM) {
      return absl::ResourceExhaustedError(message);
    }
    return absl::InternalError(message);
  }
  return WakeupFd(fd);
}

WakeupFd& WakeupFd::operator=(WakeupFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

WakeupFd::~WakeupFd() {
  if (fd_ >= 0) ::close(fd_);
}

void WakeupFd::Signal() const {
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd_, &one, sizeof(one));
}

void WakeupFd::Drain() const {
  std::uint64_t value = 0;
  [[maybe_unused]] ssize_t n = ::read(fd_, &value, sizeof(value));
}

WaitResult WaitReadable(int fd, int wake_fd, int timeout_ms) {
  pollfd fds[2] = {{fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
  for (;;) {
    int n = ::poll(fds, wake_fd >= 0 ? 2 : 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return WaitResult::kError;
    if (n == 0) return WaitResult::kTimeout;
    if (wake_fd >= 0 && (fds[1].revents & POLLIN)) return WaitResult::kWoken;
    if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) return WaitResult::kError;
    if (fds[0].revents & POLLIN) return WaitResult::kReadable;
  }
}

bool ForkHandshake::Open() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  read_fd_ = fds[0];
  write_fd_ = fds[1];
  return true;
}

void ForkHandshake::ChildSignal() {
  if (write_fd_ < 0) return;
  close(read_fd_);
  const char done = 1;
  while (write(write_fd_, &done, 1) < 0 && errno == EINTR) {
  }
  close(write_fd_);
  read_fd_ = write_fd_ = -1;
}

void ForkHandshake::ParentWait() {
  if (read_fd_ < 0) return;
  close(write_fd_);
  char byte;
  while (read(read_fd_, &byte, 1) < 0 && errno == EINTR) {
  }
  close(read_fd_);
  read_fd_ = write_fd_ = -1;
}

}  // namespace uvmem::internal
