#include "config/preload_config.h"

#include <absl/status/status.h>
#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <iterator>
#include <cstdint>
#include <limits>
#include <optional>
#include <system_error>
#include <vector>

#include "vm/vm_range.h"

namespace uvmem::internal {
namespace {

constexpr int kMaxNodeNumber = 1023;  // the kernel's largest MAX_NUMNODES is 1024
constexpr int kMaxInterleaveNodes = ResolvedPolicy::kMaxNodes;

constexpr std::string_view kNumaForms =
    "local, bind:N, preferred:N or interleave:N,M,... (N a NUMA node number)";
constexpr std::string_view kByteSizeForms =
    "a byte count: decimal digits with an optional binary unit K, M, G or T "
    "(64K, 512M, 4G, 1048576)";

// Debian's absl has its own string_view type: convert explicitly.
std::string_view Message(const absl::Status& status) {
  return std::string_view(status.message().data(), status.message().size());
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

// All of `text` as a decimal number: digits only (no sign, no spaces), no overflow.
std::optional<std::uint64_t> ParseDecimal(std::string_view text) {
  std::uint64_t value = 0;
  if (text.empty() || !IsDigit(text.front())) {
    return std::nullopt;
  }
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<NodeId> ParseNode(std::string_view text) {
  std::optional<std::uint64_t> value = ParseDecimal(text);
  if (!value || *value > kMaxNodeNumber) return std::nullopt;
  return NodeId{static_cast<int>(*value)};
}

// The variable's value, or nullopt when it is unset or empty.
std::optional<std::string_view> Lookup(EnvLookup lookup, const char* name) {
  const char* value = lookup(name);
  if (value == nullptr || value[0] == '\0') return std::nullopt;
  return std::string_view(value);
}

absl::Status BadVariable(const char* name, std::string_view value, std::string_view expected) {
  return absl::InvalidArgumentError(fmt::format("{}={}: {}", name, value, expected));
}

// An unsigned variable in [min, max] (and a power of two when `power_of_two`); leaves
// `out` alone when the variable is unset. `expected` describes the accepted values.
absl::Status ParseCount(EnvLookup lookup, const char* name, std::uint64_t min, std::uint64_t max,
                        bool power_of_two, std::string_view expected, std::uint64_t& out) {
  std::optional<std::string_view> text = Lookup(lookup, name);
  if (!text) return absl::OkStatus();
  std::optional<std::uint64_t> value = ParseDecimal(*text);
  if (!value || *value < min || *value > max ||
      (power_of_two && (*value & (*value - 1)) != 0)) {
    return BadVariable(name, *text, expected);
  }
  out = *value;
  return absl::OkStatus();
}

std::size_t PhysicalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return RuntimeOptions{}.pool_bytes_total;
  return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page_size);
}

}  // namespace

absl::StatusOr<std::size_t> ParseByteSize(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && IsDigit(text[digits])) {
    ++digits;
  }
  if (digits == 0) return absl::InvalidArgumentError(fmt::format("expected {}", kByteSizeForms));
  std::optional<std::uint64_t> number = ParseDecimal(text.substr(0, digits));
  if (!number) {
    return absl::InvalidArgumentError("the byte count is more than 2^64-1 bytes");
  }
  std::string_view unit = text.substr(digits);
  int shift = 0;
  if (!unit.empty()) {
    switch (Lower(unit.front())) {
      case 'k': shift = 10; break;
      case 'm': shift = 20; break;
      case 'g': shift = 30; break;
      case 't': shift = 40; break;
      case 'b': shift = 0; break;
      default: return absl::InvalidArgumentError(fmt::format("expected {}", kByteSizeForms));
    }
    // After the letter: nothing, "B", or "iB" (any case); a bare "B" takes no suffix.
    std::string_view rest = unit.substr(1);
    const bool ok = rest.empty() ||
                    (shift != 0 && (EqualsIgnoreCase(rest, "b") ||
                                    EqualsIgnoreCase(rest, "ib")));
    if (!ok) return absl::InvalidArgumentError(fmt::format("expected {}", kByteSizeForms));
  }
  if (*number > (std::numeric_limits<std::uint64_t>::max() >> shift)) {
    return absl::InvalidArgumentError("the byte count is more than 2^64-1 bytes");
  }
  return static_cast<std::size_t>(*number << shift);
}

absl::StatusOr<NumaPolicy> ParseNumaPolicy(std::string_view text) {
  const std::size_t colon = text.find(':');
  const std::string_view kind = text.substr(0, colon);
  const std::string_view nodes =
      colon == std::string_view::npos ? std::string_view() : text.substr(colon + 1);
  if (kind == "local") {
    if (colon != std::string_view::npos) {
      return absl::InvalidArgumentError("the local policy takes no nodes: write just local");
    }
    return NumaPolicy::Local();
  }
  if (kind == "bind" || kind == "preferred") {
    std::optional<NodeId> node = ParseNode(nodes);
    if (colon == std::string_view::npos || !node) {
      return absl::InvalidArgumentError(
          fmt::format("{} takes one NUMA node number from 0 to {}, as {}:1", kind, kMaxNodeNumber,
                      kind));
    }
    return kind == "bind" ? NumaPolicy::Bind(*node) : NumaPolicy::Preferred(*node);
  }
  if (kind == "interleave") {
    // Built only on error: the preload's first malloc parses this.
    auto expected = [] {
      return fmt::format("interleave takes 1 to {} distinct NUMA node numbers from 0 to {}, "
                         "separated by commas, as interleave:0,1",
                         kMaxInterleaveNodes, kMaxNodeNumber);
    };
    if (colon == std::string_view::npos || nodes.empty()) {
      return absl::InvalidArgumentError(expected());
    }
    std::vector<NodeId> list;
    for (std::size_t begin = 0; begin <= nodes.size();) {
      std::size_t comma = nodes.find(',', begin);
      if (comma == std::string_view::npos) comma = nodes.size();
      const std::string_view item = nodes.substr(begin, comma - begin);
      begin = comma + 1;
      std::optional<NodeId> node = ParseNode(item);
      if (!node || list.size() == static_cast<std::size_t>(kMaxInterleaveNodes)) {
        return absl::InvalidArgumentError(expected());
      }
      for (NodeId seen : list) {
        if (seen == *node) {
          return absl::InvalidArgumentError(
              fmt::format("node {} is listed twice; {}", node->value, expected()));
        }
      }
      list.push_back(*node);
    }
    return NumaPolicy::Interleave(std::move(list));
  }
  return absl::InvalidArgumentError(fmt::format("expected {}", kNumaForms));
}

std::string FormatNumaPolicy(const NumaPolicy& policy) {
  switch (policy.kind) {
    case NumaPolicy::Kind::kLocal:
      return "local";
    case NumaPolicy::Kind::kBind:
    case NumaPolicy::Kind::kPreferred:
      return fmt::format("{}:{}", policy.kind == NumaPolicy::Kind::kBind ? "bind" : "preferred",
                         policy.nodes.empty() ? -1 : policy.nodes.front().value);
    case NumaPolicy::Kind::kInterleave: {
      std::string out = "interleave:";
      for (std::size_t i = 0; i < policy.nodes.size(); ++i) {
        if (i != 0) out += ',';
        out += fmt::format("{}", policy.nodes[i].value);
      }
      return out;
    }
  }
  return "unknown";
}

namespace {

// A byte count for a message: "4294967296 bytes = 4.0 GiB".
std::string DescribeBytes(std::size_t bytes) {
  static constexpr std::string_view kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} bytes", bytes);
  double value = static_cast<double>(bytes) / 1024;
  std::size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return fmt::format("{} bytes = {:.1f} {}", bytes, value, kUnits[unit]);
}

// The value `text` of size variable `name`: ParseByteSize, then 0 (allowed: it means
// `zero_means`) or at least `min_bytes`.
absl::Status ParseSize(std::string_view text, const char* name, std::size_t min_bytes,
                       std::string_view min_text, std::string_view zero_means,
                       std::size_t& out) {
  absl::StatusOr<std::size_t> bytes = ParseByteSize(text);
  if (!bytes.ok()) return BadVariable(name, text, Message(bytes.status()));
  if (*bytes != 0 && *bytes < min_bytes) {
    return BadVariable(name, text,
                       fmt::format("expected 0 ({}) or at least {}", zero_means, min_text));
  }
  out = *bytes;
  return absl::OkStatus();
}

// The values of the variables the checks across variables name, as given ("" = unset).
struct GivenValues {
  std::string_view pool;
  std::string_view budget;
};

// Every variable on its own; `given` receives what the cross checks quote.
absl::StatusOr<PreloadConfig> ParseVariables(EnvLookup lookup, GivenValues& given) {
  PreloadConfig config;
  config.runtime.pool_bytes_per_node = 0;
  config.runtime.pool_bytes_total = PhysicalMemoryBytes();
  config.runtime.fault_around_pages = kPreloadFaultAroundPages;
  config.runtime.readahead_pages = kPreloadReadaheadPages;
  config.runtime.fault_threads = 0;

  if (std::optional<std::string_view> text = Lookup(lookup, kEnvPool)) {
    absl::StatusOr<std::size_t> bytes = ParseByteSize(*text);
    if (!bytes.ok()) return BadVariable(kEnvPool, *text, Message(bytes.status()));
    if (*bytes == 0) return BadVariable(kEnvPool, *text, "the frame pool cannot be empty");
    config.runtime.pool_bytes_total = *bytes;
    given.pool = *text;
  }

  std::uint64_t value = config.runtime.fault_around_pages;
  absl::Status status =
      ParseCount(lookup, kEnvFaultAround, 1, 512, /*power_of_two=*/true,
                 "expected a power of two from 1 (fault-around off) to 512 (pages)", value);
  if (!status.ok()) return status;
  config.runtime.fault_around_pages = value;

  value = config.runtime.readahead_pages;
  status = ParseCount(lookup, kEnvReadahead, 0, 8192, false, "expected 0 (off) to 8192 (pages)",
                      value);
  if (!status.ok()) return status;
  config.runtime.readahead_pages = value;

  value = 0;
  status = ParseCount(lookup, kEnvFaultThreads, 0, 256, false,
                      "expected 0 (one per NUMA node) to 256 (threads)", value);
  if (!status.ok()) return status;
  config.runtime.fault_threads = static_cast<int>(value);

  if (std::optional<std::string_view> text = Lookup(lookup, kEnvNuma)) {
    absl::StatusOr<NumaPolicy> policy = ParseNumaPolicy(*text);
    if (!policy.ok()) return BadVariable(kEnvNuma, *text, Message(policy.status()));
    config.numa = *std::move(policy);
  }

  if (std::optional<std::string_view> text = Lookup(lookup, kEnvStats)) {
    if (*text == "text") {
      config.stats = PreloadConfig::StatsFormat::kText;
    } else if (*text == "json") {
      config.stats = PreloadConfig::StatsFormat::kJson;
    } else {
      config.stats = PreloadConfig::StatsFormat::kJson;
      config.stats_path = std::string(*text);
    }
  }

  value = 0;
  status = ParseCount(lookup, kEnvStatsPid, 0, std::numeric_limits<int>::max(), false,
                      "expected a process id in decimal (0 = any process)", value);
  if (!status.ok()) return status;
  config.stats_pid = static_cast<long>(value);

  if (std::optional<std::string_view> text = Lookup(lookup, kEnvBudget)) {
    status = ParseSize(*text, kEnvBudget, kMinBudgetBytes, "1M (1 MiB)", "no budget",
                       config.runtime.budget_bytes);
    if (!status.ok()) return status;
    given.budget = *text;
  }
  if (std::optional<std::string_view> text = Lookup(lookup, kEnvSwap)) {
    config.runtime.swap_path = std::string(*text);
  }
  if (std::optional<std::string_view> text = Lookup(lookup, kEnvSwapMax)) {
    status = ParseSize(*text, kEnvSwapMax, kMinSwapMaxBytes, "1M (one swap cluster)",
                       "the default: the pool's size, at least 4 x the budget",
                       config.runtime.swap_max_bytes);
    if (!status.ok()) return status;
  }
  return config;
}

}  // namespace

absl::StatusOr<PreloadConfig> ParsePreloadVariables(EnvLookup lookup) {
  GivenValues given;
  return ParseVariables(lookup, given);
}

absl::StatusOr<PreloadConfig> ParsePreloadConfig(EnvLookup lookup) {
  GivenValues given;
  absl::StatusOr<PreloadConfig> config = ParseVariables(lookup, given);
  if (!config.ok()) return config;
  const RuntimeOptions& runtime = config->runtime;
  if (runtime.budget_bytes > runtime.pool_bytes_total) {
    const std::string pool =
        given.pool.empty()
            ? fmt::format("{} is unset: the machine's physical RAM, {}", kEnvPool,
                          DescribeBytes(runtime.pool_bytes_total))
            : fmt::format("{}={}: {}", kEnvPool, given.pool,
                          DescribeBytes(runtime.pool_bytes_total));
    return BadVariable(kEnvBudget, given.budget,
                       fmt::format("the budget ({}) is more than the frame pool ({}); lower {} "
                                   "or raise {}",
                                   DescribeBytes(runtime.budget_bytes), pool, kEnvBudget,
                                   kEnvPool));
  }
  return config;
}

}  // namespace uvmem::internal
