// thread.h — the calls a runtime thread makes about itself and other threads: block
// signals, be named, pin itself to CPUs, learn its kernel thread id, signal a thread,
// and wait on file descriptors with a wake-up fd to stop it.
//
// Thread-safety: every function is thread-safe. None allocates but StartRuntimeThread.
#ifndef UVMEM_PLATFORM_THREAD_H_
#define UVMEM_PLATFORM_THREAD_H_

#include <absl/status/statusor.h>
#include <absl/types/span.h>
#include <pthread.h>
#include <signal.h>

#include <cstdint>
#include <thread>
#include <utility>

namespace uvmem::internal {

// The runtime's own threads (fault threads, the heap's purger) mark themselves. Memory
// they allocate must never be paged by the runtime — a fault thread touching a missing
// page would wait on itself — so the malloc front end serves them from pinned memory.
// Initial-exec TLS: no allocation, safe inside a preloaded malloc.
inline constinit thread_local bool tls_runtime_thread __attribute__((tls_model("initial-exec"))) =
    false;
inline void MarkThisThreadAsRuntime() { tls_runtime_thread = true; }
inline bool IsRuntimeThread() { return tls_runtime_thread; }

// Blocks every signal in the calling thread; returns the mask it had before.
sigset_t BlockAllSignalsInThisThread();
// Sets the calling thread's signal mask back to `mask`.
void RestoreSignalMask(const sigset_t& mask);

// Names a thread of this process (at most 15 bytes are kept), as seen in top and gdb. A
// creator names its threads before returning, so nobody sees them unnamed.
void SetThreadName(pthread_t thread, const char* name);

// Starts one of the runtime's own threads (fault threads, the reclaimer, the heap's
// purger) and names it `name` (at most 15 bytes kept) before returning. The thread is
// created with every signal blocked — the creator blocks them around the creation and the
// new thread inherits that mask — so there is no moment at which a signal handler could
// run on it (a handler could touch memory that only a fault thread can fill). `body` runs
// as the thread's function. Allocates (std::thread's state); throws what std::thread
// throws (std::system_error when the kernel refuses a thread).
template <typename F>
std::thread StartRuntimeThread(const char* name, F&& body) {
  struct MaskGuard {
    sigset_t previous = BlockAllSignalsInThisThread();
    ~MaskGuard() { RestoreSignalMask(previous); }
  };
  std::thread thread;
  {
    MaskGuard guard;  // restored also when std::thread throws
    thread = std::thread(std::forward<F>(body));
  }
  SetThreadName(thread.native_handle(), name);
  return thread;
}

// Restricts the calling thread to `cpus` (sched_setaffinity). Empty: no change.
// Returns 0 or an errno.
[[nodiscard]] int PinThisThreadToCpus(absl::Span<const int> cpus);

// The kernel thread id of the caller (gettid).
int CurrentThreadId();

// Sends `signal` to thread `tid` of this process (tgkill). Returns 0 or an errno.
[[nodiscard]] int SignalThread(int tid, int signal);

// An eventfd used to interrupt a thread blocked in WaitReadable.
class WakeupFd {
 public:
  // Errors: ResourceExhausted (EMFILE/ENFILE/ENOMEM), Internal.
  static absl::StatusOr<WakeupFd> Create();
  WakeupFd() = default;
  WakeupFd(WakeupFd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  WakeupFd& operator=(WakeupFd&& other) noexcept;
  ~WakeupFd();

  int fd() const { return fd_; }
  // Makes the fd readable until Drain(); thread-safe, async-signal-safe.
  void Signal() const;
  void Drain() const;

 private:
  explicit WakeupFd(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// A pipe through which a forked child tells its parent it is done with something (one
// byte), or dies (EOF). Open before fork(); then ChildSignal() in the child and
// ParentWait() in the parent (which also returns at once when fork failed).
class ForkHandshake {
 public:
  bool Open();          // false: no pipe (EMFILE...); then both calls do nothing
  void ChildSignal();   // in the child: write the byte, close both ends
  void ParentWait();    // in the parent: close the write end, wait for byte or EOF, close

 private:
  int read_fd_ = -1;
  int write_fd_ = -1;
};

enum class WaitResult { kReadable, kWoken, kTimeout, kError };

// poll(2) on `fd` (POLLIN) and `wake_fd`; returns which became readable first (kWoken
// wins a tie), kTimeout after `timeout_ms` (-1: never), kError on a poll error or when
// `fd` reports POLLERR/POLLHUP. EINTR is retried.
WaitResult WaitReadable(int fd, int wake_fd, int timeout_ms);

}  // namespace uvmem::internal

#endif  // UVMEM_PLATFORM_THREAD_H_
