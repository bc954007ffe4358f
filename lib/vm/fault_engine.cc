#include "vm/fault_engine.h"

#include <fmt/format.h>

#include <iterator>


#include "platform/cpu.h"
#include "platform/report.h"

namespace uvmem::internal {

FaultEngine::FaultEngine(const Userfaultfd* uffd, const AddressSpace* space,
                         DemandZeroFiller* filler, CopyOnWrite* cow,
                         const NumaTopology* topology)
    : uffd_(uffd), space_(space), filler_(filler), cow_(cow), topology_(topology) {}

FaultEngine::~FaultEngine() { Stop(); }

absl::Status FaultEngine::Start(int threads) {
  auto stop = WakeupFd::Create();
  if (!stop.ok()) return stop.status();
  stop_ = std::move(*stop);
  for (int i = 0; i < std::max(threads, 1); ++i) {
    char name[16] = {};
    fmt::format_to_n(name, sizeof(name) - 1, "uvmem-fault/{}", i);  // no heap
    threads_.push_back(StartRuntimeThread(name, [this, i] { Loop(i); }));
  }
  return absl::OkStatus();
}

void FaultEngine::Stop() {
  if (threads_.empty()) return;
  stop_.Signal();  // stays readable: every thread sees it
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void FaultEngine::Loop(int index) {
  MarkThisThreadAsRuntime();
  const int node_index = index % topology_->num_nodes();
  if (topology_->real() && topology_->num_nodes() > 1) {
    (void)PinThisThreadToCpus(topology_->cpus_of(node_index));
  }
  UffdEvent events[64];
  FaulterNodes faulters;
  FaulterNodes* const by_faulter =
      topology_->real() && topology_->num_nodes() > 1 ? &faulters : nullptr;
  for (;;) {
    const WaitResult wait = WaitReadable(uffd_->fd(), stop_.fd(), -1);
    if (wait == WaitResult::kWoken) return;
    if (wait == WaitResult::kError) {
      ReportFatal(
          "fault thread {}: poll on the userfaultfd failed; faults can no longer be "
          "served",
          index);
    }
    const UffdReadResult read = uffd_->ReadEvents(absl::MakeSpan(events));
    if (read.error == EAGAIN || read.error == EINTR) continue;  // another thread took them
    if (read.error != 0) {
      ReportFatal(
          "fault thread {}: reading the userfaultfd failed (errno {}); faults can no "
          "longer be served",
          index, read.error);
    }
    const NodeId local = topology_->node_id(topology_->node_index_of_cpu(CurrentCpu()));
    for (std::size_t i = 0; i < read.count; ++i) {
      const std::uint64_t start = MonotonicNowNs();
      Serve(events[i], local, by_faulter);
      latency_.Record(MonotonicNowNs() - start);
    }
  }
}

NodeId FaultEngine::FaulterNodes::Of(std::uint32_t tid, const NumaTopology& topology,
                                      NodeId fallback) {
  Entry& e = entries_[tid % std::size(entries_)];
  const std::uint64_t now = MonotonicNowNs();
  if (e.tid == tid && now < e.until_ns) return e.node;
  const int cpu = CpuOfThread(static_cast<int>(tid));
  if (cpu < 0) return fallback;  // gone already: any node will do
  e = Entry{tid, topology.node_id(topology.node_index_of_cpu(cpu)), now + kKeepNs};
  return e.node;
}

void FaultEngine::Serve(const UffdEvent& event, NodeId local, FaulterNodes* faulters) {
  if (event.kind != UffdEventKind::kPageFault) return;  // no other events are enabled
  const std::uintptr_t page = event.address & ~(std::uintptr_t{kPageSize} - 1);
  VmRange* range = space_->Acquire(page);
  if (range == nullptr) {
    // Released while the fault was queued: the range is unregistered now, so waking the
    // thread lets it fault normally.
    unknown_.fetch_add(1, std::memory_order_relaxed);
    (void)uffd_->Wake(reinterpret_cast<void*>(page), kPageSize);
    return;
  }
  if (faulters != nullptr && event.thread_id != 0 &&
      range->policy().kind == NumaPolicy::Kind::kLocal) {
    local = faulters->Of(event.thread_id, *topology_, local);
  }
  if (event.wp) {
    cow_->HandleWriteProtectFault(*range, (page - range->start()) >> kPageShift, local,
                                  event.thread_id);
  } else {
    filler_->HandleMissingFault(*range, page, local, event.thread_id);
  }
  AddressSpace::Unpin(range);
}

}  // namespace uvmem::internal
