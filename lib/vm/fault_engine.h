// fault_engine.h — FaultEngine: the threads that read userfaultfd messages and serve them.
//
// Each fault thread blocks every signal, is named "uvmem-fault/N", is pinned to the
// CPUs of its NUMA node when there are several nodes (thread i serves node i mod nodes),
// then loops: poll the uffd and a stop fd, read up to 64 messages, serve each missing
// fault through the DemandZeroFiller and each write-protect fault through CopyOnWrite
// (cow.h). Under the local policy a fault is served on the node of the CPU the *faulting*
// thread runs on, as the kernel's MPOL_LOCAL does (the message carries its thread id;
// its CPU is read from /proc and kept 10 ms per thread id by each fault thread). Fault threads touch only the runtime's own memory
// (slab objects, the pool, their stacks): never a page of a range.
//
// Thread-safety: Start and Stop are called once each, by the owner; the rest is internal.
#ifndef UVMEM_VM_FAULT_ENGINE_H_
#define UVMEM_VM_FAULT_ENGINE_H_

#include <absl/status/status.h>

#include <atomic>
#include <thread>
#include <vector>

#include "platform/numa_topology.h"
#include "platform/thread.h"
#include "platform/userfaultfd.h"
#include "vm/address_space.h"
#include "vm/cow.h"
#include "vm/demand_zero.h"
#include "vm/latency_histogram.h"

namespace uvmem::internal {

class FaultEngine {
 public:
  FaultEngine(const Userfaultfd* uffd, const AddressSpace* space, DemandZeroFiller* filler,
              CopyOnWrite* cow, const NumaTopology* topology);
  ~FaultEngine();  // Stop()
  FaultEngine(const FaultEngine&) = delete;
  FaultEngine& operator=(const FaultEngine&) = delete;

  // Starts `threads` (≥ 1) fault threads. Errors: ResourceExhausted (no eventfd).
  absl::Status Start(int threads);
  // Wakes every fault thread and joins them. Idempotent.
  void Stop();

  // Time from reading a fault message to having served it, per message.
  const LatencyHistogram& latency() const { return latency_; }
  std::uint64_t unknown_address_faults() const {
    return unknown_.load(std::memory_order_relaxed);
  }

 private:
  // The node of the CPU a faulting thread last ran on, kept per fault thread: a small
  // direct-mapped table of thread ids (reading /proc costs ≈5 µs; a fault-around window
  // is 64 pages, so a lookup per fault would still be cheap, but streams fault often).
  class FaulterNodes {
   public:
    static constexpr std::uint64_t kKeepNs = 10'000'000;  // 10 ms
    NodeId Of(std::uint32_t tid, const NumaTopology& topology, NodeId fallback);

   private:
    struct Entry {
      std::uint32_t tid = 0;
      NodeId node{0};
      std::uint64_t until_ns = 0;
    };
    Entry entries_[16];
  };

  void Loop(int index);
  // `local`: the fault thread's node; `faulters` names the faulting thread's when several
  // nodes make the difference matter.
  void Serve(const UffdEvent& event, NodeId local, FaulterNodes* faulters);

  const Userfaultfd* const uffd_;
  const AddressSpace* const space_;
  DemandZeroFiller* const filler_;
  CopyOnWrite* const cow_;
  const NumaTopology* const topology_;
  WakeupFd stop_;
  std::vector<std::thread> threads_;
  LatencyHistogram latency_;
  std::atomic<std::uint64_t> unknown_{0};
};

}  // namespace uvmem::internal

#endif  // UVMEM_VM_FAULT_ENGINE_H_
