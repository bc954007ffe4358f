// numa_topology.h — NumaTopology: the machine's NUMA nodes, their CPUs and distances.
//
// Read once from libnuma (Detect), or made up for tests (ForTest), the way tcmalloc's
// NumaTopology::InitForTest lets a one-node machine test multi-node policy. Policy code
// asks this class, never libnuma.
//
// Nodes are indexed two ways: by NodeId (the kernel's number, possibly sparse: 0 and 2)
// and by a dense index 0..num_nodes()-1 used for arrays. Distances are the ACPI SLIT
// values the kernel reports (10 = local, typically 20-40 remote).
//
// Thread-safety: immutable after construction; all const methods are thread-safe.
#ifndef UVMEM_PLATFORM_NUMA_TOPOLOGY_H_
#define UVMEM_PLATFORM_NUMA_TOPOLOGY_H_

#include <absl/status/statusor.h>

#include <string>
#include <vector>

#include "uvmem/types.h"

namespace uvmem::internal {

class NumaTopology {
 public:
  // Reads the topology of this machine through libnuma. On a kernel without NUMA
  // support (numa_available() < 0) returns a one-node topology holding every CPU.
  // Never fails; the result is real() == true.
  static NumaTopology Detect();

  // A synthetic topology for tests. `distances` is a num_nodes x num_nodes matrix in
  // row-major order with 10 on the diagonal; `cpus_per_node[i]` lists node i's CPUs.
  // Node ids are 0..num_nodes-1. Returns InvalidArgument when the shapes disagree, a
  // CPU appears twice, or a diagonal entry is not the smallest of its row.
  static absl::StatusOr<NumaTopology> ForTest(std::vector<std::vector<int>> distances,
                                              std::vector<std::vector<int>> cpus_per_node);

  // Synthetic topologies used across the test suite.
  //   TwoNodeForTest():  nodes 0,1; distance 10/21; CPUs {0},{1}.
  //   FourNodeForTest(): a ring of 4 nodes; distances 10 local, 16 neighbour,
  //                      22 across; CPUs {0},{1},{2},{3}.
  static NumaTopology TwoNodeForTest();
  static NumaTopology FourNodeForTest();

  int num_nodes() const { return static_cast<int>(node_ids_.size()); }
  // The kernel's node number for dense index `index` (0 <= index < num_nodes()).
  NodeId node_id(int index) const { return node_ids_[index]; }
  // Dense index of `node`, or -1 when the machine has no such node.
  int index_of(NodeId node) const;
  bool has_node(NodeId node) const { return index_of(node) >= 0; }

  // Distance between two nodes (dense indices), as numa_distance() reports.
  int distance(int from_index, int to_index) const {
    return distances_[from_index * num_nodes() + to_index];
  }
  // Dense node indices ordered by distance from `from_index` (0 <= from_index <
  // num_nodes(), checked), nearest first (itself first); ties broken by index. This is
  // the fallback order of allocation, like the kernel's zonelist built in
  // mm/page_alloc.c build_zonelists().
  std::vector<int> FallbackOrder(int from_index) const;

  // CPUs of a node (dense index), ascending.
  const std::vector<int>& cpus_of(int index) const { return cpus_[index]; }
  // Dense node index of `cpu`, or 0 when the CPU is unknown (offline, out of range).
  int node_index_of_cpu(int cpu) const;
  // Array bound for per-CPU data: one more than the highest CPU number known, and for a
  // Detect()ed topology at least ConfiguredCpuCount() (offline CPUs belong to no node).
  int cpu_limit() const { return static_cast<int>(node_of_cpu_.size()); }

  // True when read from this machine; false for ForTest topologies. Only a real topology
  // may be passed to mbind(2).
  bool real() const { return real_; }

  // "node 0: cpus 0-1, distances 10" lines, for `uvmem info` and logs.
  std::string ToString() const;

 private:
  NumaTopology() = default;
  // Fills node_of_cpu_ from cpus_; cpu_limit() becomes at least `min_cpu_limit`.
  void BuildCpuIndex(int min_cpu_limit = 1);

  bool real_ = false;
  std::vector<NodeId> node_ids_;
  std::vector<int> distances_;          // num_nodes * num_nodes
  std::vector<std::vector<int>> cpus_;  // per dense index
  std::vector<int> node_of_cpu_;        // cpu -> dense index, -1 unknown
};

}  // namespace uvmem::internal

#endif  // UVMEM_PLATFORM_NUMA_TOPOLOGY_H_
