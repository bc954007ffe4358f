// spin_lock.h — SpinLock: a one-word test-and-test-and-set lock for tiny critical sections.
//
// Used where a section is a few dozen instructions and is almost never contended, such as
// a per-CPU frame cache (Linux guards its per-CPU page lists the same way, with
// pcp_spin_trylock in mm/page_alloc.c). Callers on hot paths use TryLock() and take a
// slower path when it fails, so a preempted holder never makes another thread spin.
//
// Thread-safety: the lock itself is thread-safe; it is not recursive.
#ifndef UVMEM_PLATFORM_SPIN_LOCK_H_
#define UVMEM_PLATFORM_SPIN_LOCK_H_

#include <absl/base/thread_annotations.h>

#include <atomic>

#include "platform/cpu.h"

namespace uvmem::internal {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class ABSL_LOCKABLE SpinLock {
 public:
  SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  // Returns true when the lock was taken. Never waits.
  [[nodiscard]] bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }

  // Spins until the lock is taken; after a short spin it yields the CPU between tries,
  // so a holder that was preempted gets to run (the sections guarded are short).
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    for (int spins = 0; !TryLock(); ++spins) {
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins > 128) {
          YieldCpu();
          spins = 0;
        } else {
          CpuRelax();
        }
      }
    }
  }

  void Unlock() ABSL_UNLOCK_FUNCTION() { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

// RAII holder for SpinLock::Lock().
class ABSL_SCOPED_LOCKABLE SpinLockHolder {
 public:
  explicit SpinLockHolder(SpinLock* lock) ABSL_EXCLUSIVE_LOCK_FUNCTION(lock) : lock_(lock) {
    lock_->Lock();
  }
  ~SpinLockHolder() ABSL_UNLOCK_FUNCTION() { lock_->Unlock(); }
  SpinLockHolder(const SpinLockHolder&) = delete;
  SpinLockHolder& operator=(const SpinLockHolder&) = delete;

 private:
  SpinLock* lock_;
};

}  // namespace uvmem::internal

#endif  // UVMEM_PLATFORM_SPIN_LOCK_H_
