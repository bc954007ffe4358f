#include "platform/numa_topology.h"

#include <numa.h>

#include <absl/status/status.h>
#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "platform/cpu.h"
#include "platform/report.h"

namespace uvmem::internal {

NumaTopology NumaTopology::Detect() {
  NumaTopology t;
  t.real_ = true;
  // get_nprocs_conf(), not libnuma: it also answers when numa_available() < 0.
  const int ncpus = ConfiguredCpuCount();
  if (numa_available() < 0) {
    t.node_ids_ = {NodeId{0}};
    t.distances_ = {10};
    t.cpus_.resize(1);
    for (int cpu = 0; cpu < ncpus; ++cpu) t.cpus_[0].push_back(cpu);
    t.BuildCpuIndex(ncpus);
    return t;
  }
  // numa_max_possible_node() is 1023 on one node: iterate the configured nodes only.
  const int max_node = numa_max_node();
  for (int n = 0; n <= max_node; ++n) {
    if (numa_bitmask_isbitset(numa_nodes_ptr, static_cast<unsigned>(n))) {
      t.node_ids_.push_back(NodeId{n});
    }
  }
  if (t.node_ids_.empty()) t.node_ids_.push_back(NodeId{0});
  const int nn = t.num_nodes();
  t.distances_.resize(static_cast<std::size_t>(nn) * nn);
  for (int i = 0; i < nn; ++i) {
    for (int j = 0; j < nn; ++j) {
      int d = numa_distance(t.node_ids_[i].value, t.node_ids_[j].value);
      t.distances_[i * nn + j] = d > 0 ? d : (i == j ? 10 : 20);
    }
  }
  t.cpus_.resize(nn);
  bitmask* mask = numa_allocate_cpumask();
  for (int i = 0; i < nn; ++i) {
    if (numa_node_to_cpus(t.node_ids_[i].value, mask) != 0) continue;
    for (unsigned cpu = 0; cpu < mask->size; ++cpu) {
      if (numa_bitmask_isbitset(mask, cpu)) t.cpus_[i].push_back(static_cast<int>(cpu));
    }
  }
  numa_free_cpumask(mask);
  // Offline CPUs are in no node's cpumap; keep cpu_limit() a bound for every configured
  // CPU anyway, so per-CPU arrays sized by it stay valid when one comes online.
  t.BuildCpuIndex(ncpus);
  return t;
}

absl::StatusOr<NumaTopology> NumaTopology::ForTest(std::vector<std::vector<int>> distances,
                                                   std::vector<std::vector<int>> cpus_per_node) {
  const std::size_t nn = distances.size();
  if (nn == 0) return absl::InvalidArgumentError("synthetic topology needs at least one node");
  if (cpus_per_node.size() != nn) {
    return absl::InvalidArgumentError(fmt::format(
        "synthetic topology: {} distance rows but {} CPU lists", nn, cpus_per_node.size()));
  }
  NumaTopology t;
  t.real_ = false;
  std::set<int> seen;
  for (std::size_t i = 0; i < nn; ++i) {
    if (distances[i].size() != nn) {
      return absl::InvalidArgumentError(
          fmt::format("synthetic topology: distance row {} has {} entries, want {}", i,
                      distances[i].size(), nn));
    }
    for (std::size_t j = 0; j < nn; ++j) {
      if (j != i && distances[i][j] <= distances[i][i]) {
        return absl::InvalidArgumentError(fmt::format(
            "synthetic topology: distance[{}][{}]={} is not larger than the local distance {}", i,
            j, distances[i][j], distances[i][i]));
      }
      t.distances_.push_back(distances[i][j]);
    }
    for (int cpu : cpus_per_node[i]) {
      if (cpu < 0 || !seen.insert(cpu).second) {
        return absl::InvalidArgumentError(
            fmt::format("synthetic topology: CPU {} is negative or listed twice", cpu));
      }
    }
    std::sort(cpus_per_node[i].begin(), cpus_per_node[i].end());
    t.node_ids_.push_back(NodeId{static_cast<int>(i)});
  }
  t.cpus_ = std::move(cpus_per_node);
  t.BuildCpuIndex();
  return t;
}

NumaTopology NumaTopology::TwoNodeForTest() {
  return *ForTest({{10, 21}, {21, 10}}, {{0}, {1}});
}

NumaTopology NumaTopology::FourNodeForTest() {
  return *ForTest({{10, 16, 22, 16}, {16, 10, 16, 22}, {22, 16, 10, 16}, {16, 22, 16, 10}},
                  {{0}, {1}, {2}, {3}});
}

void NumaTopology::BuildCpuIndex(int min_cpu_limit) {
  int limit = std::max(1, min_cpu_limit);
  for (const auto& cpus : cpus_) {
    for (int cpu : cpus) limit = std::max(limit, cpu + 1);
  }
  node_of_cpu_.assign(static_cast<std::size_t>(limit), -1);
  for (int i = 0; i < num_nodes(); ++i) {
    for (int cpu : cpus_[i]) node_of_cpu_[cpu] = i;
  }
}

int NumaTopology::index_of(NodeId node) const {
  for (int i = 0; i < num_nodes(); ++i) {
    if (node_ids_[i] == node) return i;
  }
  return -1;
}

int NumaTopology::node_index_of_cpu(int cpu) const {
  if (cpu < 0 || cpu >= cpu_limit()) return 0;
  int index = node_of_cpu_[cpu];
  return index < 0 ? 0 : index;
}

std::vector<int> NumaTopology::FallbackOrder(int from_index) const {
  UVMEM_CHECK(from_index >= 0 && from_index < num_nodes());
  std::vector<int> order(static_cast<std::size_t>(num_nodes()));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    if (a == from_index || b == from_index) return a == from_index && b != from_index;
    return distance(from_index, a) < distance(from_index, b);
  });
  return order;
}

namespace {
std::string CpuListString(const std::vector<int>& cpus) {
  if (cpus.empty()) return "none";
  std::string out;
  std::size_t i = 0;
  while (i < cpus.size()) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return out;
}
}  // namespace

std::string NumaTopology::ToString() const {
  std::string out;
  for (int i = 0; i < num_nodes(); ++i) {
    out += fmt::format("node {}: cpus {}, distances", node_ids_[i].value, CpuListString(cpus_[i]));
    for (int j = 0; j < num_nodes(); ++j) out += fmt::format(" {}", distance(i, j));
    out += '\n';
  }
  return out;
}

}  // namespace uvmem::internal
