// Tests of the UVMEM_* environment parser: defaults, every variable's accepted forms and
// every error (the message names the variable, the value and the accepted forms).
#include "config/preload_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace uvmem::internal {
namespace {

using ::testing::HasSubstr;

// A fake environment for ParsePreloadConfig.
class FakeEnv {
 public:
  FakeEnv() = default;
  FakeEnv(std::initializer_list<std::pair<const std::string, std::string>> vars) : vars_(vars) {}

  absl::StatusOr<PreloadConfig> Parse() {
    return ParsePreloadConfig([this](const char* name) -> const char* {
      ++lookups_[name];
      auto it = vars_.find(name);
      return it == vars_.end() ? nullptr : it->second.c_str();
    });
  }
  const std::map<std::string, int>& lookups() const { return lookups_; }

 private:
  std::map<std::string, std::string> vars_;
  std::map<std::string, int> lookups_;
};

std::string Message(const absl::Status& status) {
  return std::string(status.message().data(), status.message().size());
}

PreloadConfig ParseOk(FakeEnv env) {
  absl::StatusOr<PreloadConfig> config = env.Parse();
  EXPECT_TRUE(config.ok()) << Message(config.status());
  return config.ok() ? *config : PreloadConfig{};
}

// The error of a bad environment; checks that it is InvalidArgument.
std::string ParseError(FakeEnv env) {
  absl::StatusOr<PreloadConfig> config = env.Parse();
  EXPECT_FALSE(config.ok());
  if (config.ok()) return "";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return Message(config.status());
}

constexpr std::size_t kKiB = 1024;
constexpr std::size_t kMiB = kKiB << 10;
constexpr std::size_t kGiB = kMiB << 10;

TEST(PreloadConfigTest, DefaultsWhenNothingIsSet) {
  const PreloadConfig config = ParseOk({});
  const std::size_t ram = static_cast<std::size_t>(sysconf(_SC_PHYS_PAGES)) *
                          static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  EXPECT_EQ(config.runtime.pool_bytes_total, ram);
  EXPECT_EQ(config.runtime.pool_bytes_per_node, 0u);
  EXPECT_EQ(config.runtime.fault_around_pages, 16u);
  EXPECT_EQ(config.runtime.readahead_pages, 64u);
  EXPECT_EQ(config.runtime.fault_threads, 0);
  // Fields without a variable keep RuntimeOptions' defaults.
  const RuntimeOptions defaults;
  EXPECT_EQ(config.runtime.use_move, defaults.use_move);
  EXPECT_EQ(config.runtime.allow_user_mode_only, defaults.allow_user_mode_only);
  EXPECT_EQ(config.runtime.prefault_pool, defaults.prefault_pool);
  EXPECT_EQ(config.runtime.slab_debug, defaults.slab_debug);
  // No budget and no swap unless asked for.
  EXPECT_EQ(config.runtime.budget_bytes, 0u);
  EXPECT_EQ(config.runtime.swap_path, "");
  EXPECT_EQ(config.runtime.swap_max_bytes, 0u);
  EXPECT_EQ(config.numa.kind, NumaPolicy::Kind::kLocal);
  EXPECT_TRUE(config.numa.nodes.empty());
  EXPECT_EQ(config.stats, PreloadConfig::StatsFormat::kNone);
  EXPECT_EQ(config.stats_path, "");
  EXPECT_EQ(config.stats_pid, 0);
}

TEST(PreloadConfigTest, EmptyValuesCountAsUnset) {
  const PreloadConfig config = ParseOk({{"UVMEM_POOL", ""},
                                        {"UVMEM_FAULT_AROUND", ""},
                                        {"UVMEM_READAHEAD", ""},
                                        {"UVMEM_FAULT_THREADS", ""},
                                        {"UVMEM_NUMA", ""},
                                        {"UVMEM_STATS", ""},
                                        {"UVMEM_STATS_PID", ""},
                                        {"UVMEM_BUDGET", ""},
                                        {"UVMEM_SWAP", ""},
                                        {"UVMEM_SWAP_MAX", ""}});
  EXPECT_EQ(config.runtime.budget_bytes, 0u);
  EXPECT_EQ(config.runtime.swap_path, "");
  EXPECT_EQ(config.runtime.swap_max_bytes, 0u);
  EXPECT_EQ(config.runtime.fault_around_pages, 16u);
  EXPECT_EQ(config.runtime.readahead_pages, 64u);
  EXPECT_EQ(config.numa.kind, NumaPolicy::Kind::kLocal);
  EXPECT_EQ(config.stats, PreloadConfig::StatsFormat::kNone);
  EXPECT_EQ(config.stats_pid, 0);
}

TEST(PreloadConfigTest, EveryVariableIsReadOnceEvenWhenAllAreSet) {
  FakeEnv env{{"UVMEM_POOL", "2G"}, {"UVMEM_BUDGET", "1G"}, {"UVMEM_SWAP", "/tmp"},
              {"UVMEM_SWAP_MAX", "4G"}};
  ASSERT_TRUE(env.Parse().ok());
  for (const auto& [name, count] : env.lookups()) EXPECT_EQ(count, 1) << name;
}

TEST(PreloadConfigTest, EveryVariableIsReadOnce) {
  FakeEnv env;
  ASSERT_TRUE(env.Parse().ok());
  const std::vector<std::string> expected = {
      "UVMEM_BUDGET",    "UVMEM_FAULT_AROUND", "UVMEM_FAULT_THREADS", "UVMEM_NUMA",
      "UVMEM_POOL",      "UVMEM_READAHEAD",    "UVMEM_STATS",         "UVMEM_STATS_PID",
      "UVMEM_SWAP",      "UVMEM_SWAP_MAX"};
  ASSERT_EQ(env.lookups().size(), expected.size());
  for (const std::string& name : expected) {
    EXPECT_EQ(env.lookups().count(name), 1u) << name;
    if (env.lookups().count(name)) {
      EXPECT_EQ(env.lookups().at(name), 1) << name;
    }
  }
}

TEST(PreloadConfigTest, Pool) {
  EXPECT_EQ(ParseOk({{"UVMEM_POOL", "512M"}}).runtime.pool_bytes_total, 512 * kMiB);
  EXPECT_EQ(ParseOk({{"UVMEM_POOL", "4G"}}).runtime.pool_bytes_total, 4 * kGiB);
  EXPECT_EQ(ParseOk({{"UVMEM_POOL", "1048576"}}).runtime.pool_bytes_total, kMiB);
  EXPECT_EQ(ParseOk({{"UVMEM_POOL", "64K"}}).runtime.pool_bytes_total, 64 * kKiB);
  EXPECT_EQ(ParseOk({{"UVMEM_POOL", "2GiB"}}).runtime.pool_bytes_total, 2 * kGiB);
  EXPECT_EQ(ParseOk({{"UVMEM_POOL", "4G"}}).runtime.pool_bytes_per_node, 0u);
}

TEST(PreloadConfigTest, PoolErrors) {
  for (const char* bad : {"0", "0G", "abc", "4X", "-1", "+4G", " 4G", "4G ", "1.5G", "4 G",
                          "G", "0x100000", "17179869184G", "99999999999999999999999"}) {
    const std::string error = ParseError({{"UVMEM_POOL", bad}});
    EXPECT_THAT(error, HasSubstr(std::string("UVMEM_POOL=") + bad + ":")) << bad;
  }
  EXPECT_THAT(ParseError({{"UVMEM_POOL", "4X"}}), HasSubstr("512M"));
  EXPECT_THAT(ParseError({{"UVMEM_POOL", "0"}}), HasSubstr("empty"));
  EXPECT_THAT(ParseError({{"UVMEM_POOL", "17179869184G"}}), HasSubstr("2^64"));
}

TEST(PreloadConfigTest, FaultAroundAcceptsEveryPowerOfTwoUpTo512) {
  for (std::size_t pages = 1; pages <= 512; pages *= 2) {
    const std::string text = std::to_string(pages);
    EXPECT_EQ(ParseOk({{"UVMEM_FAULT_AROUND", text}}).runtime.fault_around_pages, pages);
  }
}

TEST(PreloadConfigTest, FaultAroundErrors) {
  for (const char* bad : {"0", "3", "48", "1024", "-16", "+16", "16 ", "0x10", "sixteen",
                          "99999999999999999999999"}) {
    const std::string error = ParseError({{"UVMEM_FAULT_AROUND", bad}});
    EXPECT_THAT(error, HasSubstr(std::string("UVMEM_FAULT_AROUND=") + bad + ":")) << bad;
    EXPECT_THAT(error, HasSubstr("power of two from 1")) << bad;
    EXPECT_THAT(error, HasSubstr("512")) << bad;
  }
}

TEST(PreloadConfigTest, Readahead) {
  EXPECT_EQ(ParseOk({{"UVMEM_READAHEAD", "0"}}).runtime.readahead_pages, 0u);
  EXPECT_EQ(ParseOk({{"UVMEM_READAHEAD", "100"}}).runtime.readahead_pages, 100u);
  EXPECT_EQ(ParseOk({{"UVMEM_READAHEAD", "8192"}}).runtime.readahead_pages, 8192u);
  for (const char* bad : {"8193", "-1", "lots", "1e3"}) {
    const std::string error = ParseError({{"UVMEM_READAHEAD", bad}});
    EXPECT_THAT(error, HasSubstr(std::string("UVMEM_READAHEAD=") + bad + ":")) << bad;
    EXPECT_THAT(error, HasSubstr("0 (off) to 8192")) << bad;
  }
}

TEST(PreloadConfigTest, FaultThreads) {
  EXPECT_EQ(ParseOk({{"UVMEM_FAULT_THREADS", "0"}}).runtime.fault_threads, 0);
  EXPECT_EQ(ParseOk({{"UVMEM_FAULT_THREADS", "4"}}).runtime.fault_threads, 4);
  EXPECT_EQ(ParseOk({{"UVMEM_FAULT_THREADS", "256"}}).runtime.fault_threads, 256);
  for (const char* bad : {"257", "-1", "many", "4294967297"}) {
    const std::string error = ParseError({{"UVMEM_FAULT_THREADS", bad}});
    EXPECT_THAT(error, HasSubstr(std::string("UVMEM_FAULT_THREADS=") + bad + ":")) << bad;
    EXPECT_THAT(error, HasSubstr("0 (one per NUMA node) to 256")) << bad;
  }
}

TEST(PreloadConfigTest, Numa) {
  EXPECT_EQ(ParseOk({{"UVMEM_NUMA", "local"}}).numa.kind, NumaPolicy::Kind::kLocal);
  const NumaPolicy bind = ParseOk({{"UVMEM_NUMA", "bind:1"}}).numa;
  EXPECT_EQ(bind.kind, NumaPolicy::Kind::kBind);
  EXPECT_EQ(bind.nodes, std::vector<NodeId>{NodeId{1}});
  const NumaPolicy interleave = ParseOk({{"UVMEM_NUMA", "interleave:0,1"}}).numa;
  EXPECT_EQ(interleave.kind, NumaPolicy::Kind::kInterleave);
  EXPECT_EQ(interleave.nodes, (std::vector<NodeId>{NodeId{0}, NodeId{1}}));
}

TEST(PreloadConfigTest, NumaErrorsNameTheVariableAndTheForms) {
  const std::string error = ParseError({{"UVMEM_NUMA", "remote"}});
  EXPECT_THAT(error, HasSubstr("UVMEM_NUMA=remote:"));
  EXPECT_THAT(error, HasSubstr("local, bind:N, preferred:N or interleave:N,M,..."));
  EXPECT_THAT(ParseError({{"UVMEM_NUMA", "bind:x"}}), HasSubstr("UVMEM_NUMA=bind:x: bind takes"));
}

TEST(PreloadConfigTest, Stats) {
  PreloadConfig text = ParseOk({{"UVMEM_STATS", "text"}});
  EXPECT_EQ(text.stats, PreloadConfig::StatsFormat::kText);
  EXPECT_EQ(text.stats_path, "");
  PreloadConfig json = ParseOk({{"UVMEM_STATS", "json"}});
  EXPECT_EQ(json.stats, PreloadConfig::StatsFormat::kJson);
  EXPECT_EQ(json.stats_path, "");
  PreloadConfig file = ParseOk({{"UVMEM_STATS", "/tmp/run stats.json"}});
  EXPECT_EQ(file.stats, PreloadConfig::StatsFormat::kJson);
  EXPECT_EQ(file.stats_path, "/tmp/run stats.json");
  // Any other word is a file name, relative to the program's working directory.
  PreloadConfig relative = ParseOk({{"UVMEM_STATS", "Text"}});
  EXPECT_EQ(relative.stats, PreloadConfig::StatsFormat::kJson);
  EXPECT_EQ(relative.stats_path, "Text");
}

TEST(PreloadConfigTest, StatsPid) {
  EXPECT_EQ(ParseOk({{"UVMEM_STATS_PID", "0"}}).stats_pid, 0);
  EXPECT_EQ(ParseOk({{"UVMEM_STATS_PID", "4194304"}}).stats_pid, 4194304);
  for (const char* bad : {"-5", "self", "12 ", "2147483648"}) {
    const std::string error = ParseError({{"UVMEM_STATS_PID", bad}});
    EXPECT_THAT(error, HasSubstr(std::string("UVMEM_STATS_PID=") + bad + ":")) << bad;
    EXPECT_THAT(error, HasSubstr("process id")) << bad;
  }
}

TEST(PreloadConfigTest, EverythingAtOnce) {
  const PreloadConfig config = ParseOk({{"UVMEM_POOL", "256M"},
                                        {"UVMEM_FAULT_AROUND", "64"},
                                        {"UVMEM_READAHEAD", "0"},
                                        {"UVMEM_FAULT_THREADS", "2"},
                                        {"UVMEM_NUMA", "preferred:0"},
                                        {"UVMEM_STATS", "text"},
                                        {"UVMEM_STATS_PID", "77"},
                                        {"UVMEM_BUDGET", "128M"},
                                        {"UVMEM_SWAP", "/var/tmp"},
                                        {"UVMEM_SWAP_MAX", "1G"},
                                        {"UVMEM_UNKNOWN", "ignored"}});
  EXPECT_EQ(config.runtime.budget_bytes, 128 * kMiB);
  EXPECT_EQ(config.runtime.swap_path, "/var/tmp");
  EXPECT_EQ(config.runtime.swap_max_bytes, kGiB);
  EXPECT_EQ(config.runtime.pool_bytes_total, 256 * kMiB);
  EXPECT_EQ(config.runtime.fault_around_pages, 64u);
  EXPECT_EQ(config.runtime.readahead_pages, 0u);
  EXPECT_EQ(config.runtime.fault_threads, 2);
  EXPECT_EQ(config.numa.kind, NumaPolicy::Kind::kPreferred);
  EXPECT_EQ(config.stats, PreloadConfig::StatsFormat::kText);
  EXPECT_EQ(config.stats_pid, 77);
}

TEST(PreloadConfigTest, Budget) {
  EXPECT_EQ(ParseOk({{"UVMEM_BUDGET", "512M"}}).runtime.budget_bytes, 512 * kMiB);
  EXPECT_EQ(ParseOk({{"UVMEM_BUDGET", "1M"}}).runtime.budget_bytes, kMiB);
  EXPECT_EQ(ParseOk({{"UVMEM_BUDGET", "1048576"}}).runtime.budget_bytes, kMiB);
  EXPECT_EQ(ParseOk({{"UVMEM_BUDGET", "3MiB"}}).runtime.budget_bytes, 3 * kMiB);
  // 0 is no budget: it turns off an inherited one.
  EXPECT_EQ(ParseOk({{"UVMEM_BUDGET", "0"}}).runtime.budget_bytes, 0u);
  // A budget up to the pool, inclusive.
  const PreloadConfig config = ParseOk({{"UVMEM_POOL", "2G"}, {"UVMEM_BUDGET", "2G"}});
  EXPECT_EQ(config.runtime.pool_bytes_total, 2 * kGiB);
  EXPECT_EQ(config.runtime.budget_bytes, 2 * kGiB);
}

TEST(PreloadConfigTest, ABudgetWithoutAPoolKeepsThePhysicalRamPool) {
  const std::size_t ram = static_cast<std::size_t>(sysconf(_SC_PHYS_PAGES)) *
                          static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const PreloadConfig config = ParseOk({{"UVMEM_BUDGET", "64M"}});
  EXPECT_EQ(config.runtime.pool_bytes_total, ram);
  EXPECT_EQ(config.runtime.budget_bytes, 64 * kMiB);
}

TEST(PreloadConfigTest, BudgetErrors) {
  for (const char* bad : {"abc", "4X", "-1", "+1G", " 1G", "1G ", "1.5G", "0x100000",
                          "17179869184G"}) {
    const std::string error = ParseError({{"UVMEM_BUDGET", bad}});
    EXPECT_THAT(error, HasSubstr(std::string("UVMEM_BUDGET=") + bad + ":")) << bad;
  }
  EXPECT_THAT(ParseError({{"UVMEM_BUDGET", "4X"}}), HasSubstr("512M"));
  for (const char* small : {"1", "4K", "1023K", "1048575"}) {
    const std::string error = ParseError({{"UVMEM_BUDGET", small}});
    EXPECT_THAT(error, HasSubstr(std::string("UVMEM_BUDGET=") + small + ":")) << small;
    EXPECT_THAT(error, HasSubstr("expected 0 (no budget) or at least 1M")) << small;
  }
}

TEST(PreloadConfigTest, ABudgetLargerThanThePoolNamesBoth) {
  const std::string error = ParseError({{"UVMEM_POOL", "1G"}, {"UVMEM_BUDGET", "2G"}});
  EXPECT_THAT(error, HasSubstr("UVMEM_BUDGET=2G: the budget (2147483648 bytes = 2.0 GiB) is "
                               "more than the frame pool (UVMEM_POOL=1G: 1073741824 bytes = "
                               "1.0 GiB)"));
  EXPECT_THAT(error, HasSubstr("lower UVMEM_BUDGET or raise UVMEM_POOL"));
  // One byte over.
  EXPECT_THAT(ParseError({{"UVMEM_POOL", "4M"}, {"UVMEM_BUDGET", "4194305"}}),
              HasSubstr("UVMEM_BUDGET=4194305: the budget"));
  // Without UVMEM_POOL the pool is the machine's RAM: a budget past it is an error too.
  const std::string ram_error = ParseError({{"UVMEM_BUDGET", "16777215T"}});
  EXPECT_THAT(ram_error, HasSubstr("UVMEM_BUDGET=16777215T: the budget"));
  EXPECT_THAT(ram_error, HasSubstr("UVMEM_POOL is unset: the machine's physical RAM"));
  // Each variable on its own is fine: ParsePreloadVariables does not compare them.
  absl::StatusOr<PreloadConfig> alone =
      ParsePreloadVariables([](const char* name) -> const char* {
        const std::string_view n(name);
        return n == "UVMEM_POOL" ? "1G" : n == "UVMEM_BUDGET" ? "2G" : nullptr;
      });
  ASSERT_TRUE(alone.ok()) << Message(alone.status());
  EXPECT_EQ(alone->runtime.budget_bytes, 2 * kGiB);
}

TEST(PreloadConfigTest, ParsePreloadVariablesStillChecksEachValue) {
  absl::StatusOr<PreloadConfig> config =
      ParsePreloadVariables([](const char* name) -> const char* {
        return std::string_view(name) == "UVMEM_BUDGET" ? "12Q" : nullptr;
      });
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(Message(config.status()), HasSubstr("UVMEM_BUDGET=12Q: expected a byte count"));
}

TEST(PreloadConfigTest, SwapPathIsTakenAsGiven) {
  EXPECT_EQ(ParseOk({{"UVMEM_SWAP", "/mnt/fast"}}).runtime.swap_path, "/mnt/fast");
  EXPECT_EQ(ParseOk({{"UVMEM_SWAP", "/dev/vdb"}}).runtime.swap_path, "/dev/vdb");
  EXPECT_EQ(ParseOk({{"UVMEM_SWAP", "swap dir"}}).runtime.swap_path, "swap dir");
  // Without a budget the swap settings are kept (and the runtime ignores them).
  const PreloadConfig config = ParseOk({{"UVMEM_SWAP", "/tmp"}, {"UVMEM_SWAP_MAX", "1G"}});
  EXPECT_EQ(config.runtime.budget_bytes, 0u);
  EXPECT_EQ(config.runtime.swap_path, "/tmp");
  EXPECT_EQ(config.runtime.swap_max_bytes, kGiB);
}

TEST(PreloadConfigTest, SwapMax) {
  EXPECT_EQ(ParseOk({{"UVMEM_SWAP_MAX", "8G"}}).runtime.swap_max_bytes, 8 * kGiB);
  EXPECT_EQ(ParseOk({{"UVMEM_SWAP_MAX", "1M"}}).runtime.swap_max_bytes, kMiB);
  EXPECT_EQ(ParseOk({{"UVMEM_SWAP_MAX", "0"}}).runtime.swap_max_bytes, 0u);  // default
  // Smaller than the budget is allowed: swap need not hold every page.
  const PreloadConfig config =
      ParseOk({{"UVMEM_POOL", "1G"}, {"UVMEM_BUDGET", "512M"}, {"UVMEM_SWAP_MAX", "64M"}});
  EXPECT_EQ(config.runtime.swap_max_bytes, 64 * kMiB);
  for (const char* bad : {"lots", "4X", "-4G", "1.5G", "17179869184G"}) {
    const std::string error = ParseError({{"UVMEM_SWAP_MAX", bad}});
    EXPECT_THAT(error, HasSubstr(std::string("UVMEM_SWAP_MAX=") + bad + ":")) << bad;
  }
  for (const char* small : {"1", "4095", "4K", "1023K"}) {
    const std::string error = ParseError({{"UVMEM_SWAP_MAX", small}});
    EXPECT_THAT(error, HasSubstr(std::string("UVMEM_SWAP_MAX=") + small + ":")) << small;
    EXPECT_THAT(error, HasSubstr("at least 1M (one swap cluster)")) << small;
  }
}

TEST(PreloadConfigTest, ReadsTheProcessEnvironmentThroughGetenv) {
  ASSERT_EQ(setenv("UVMEM_FAULT_AROUND", "128", 1), 0);
  absl::StatusOr<PreloadConfig> config = ParsePreloadConfig(&getenv);
  ASSERT_EQ(unsetenv("UVMEM_FAULT_AROUND"), 0);
  ASSERT_TRUE(config.ok()) << Message(config.status());
  EXPECT_EQ(config->runtime.fault_around_pages, 128u);
}

const char* PlainFunctionLookup(const char* name) {
  return std::string_view(name) == "UVMEM_NUMA" ? "bind:0" : nullptr;
}

TEST(PreloadConfigTest, TakesAPlainFunctionPointer) {
  absl::StatusOr<PreloadConfig> config = ParsePreloadConfig(&PlainFunctionLookup);
  ASSERT_TRUE(config.ok()) << Message(config.status());
  EXPECT_EQ(config->numa.kind, NumaPolicy::Kind::kBind);
}

// --- ParseByteSize -------------------------------------------------------------------

TEST(ParseByteSizeTest, Units) {
  struct Case {
    const char* text;
    std::size_t bytes;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"0", 0},
           {"1", 1},
           {"1048576", kMiB},
           {"100b", 100},
           {"100B", 100},
           {"64K", 64 * kKiB},
           {"64k", 64 * kKiB},
           {"64KB", 64 * kKiB},
           {"64KiB", 64 * kKiB},
           {"64kib", 64 * kKiB},
           {"512M", 512 * kMiB},
           {"512MiB", 512 * kMiB},
           {"4G", 4 * kGiB},
           {"4g", 4 * kGiB},
           {"2T", 2 * kGiB * 1024},
           {"16777215T", (std::size_t{16777215}) << 40},
           {"18446744073709551615", 18446744073709551615ull},
       }) {
    absl::StatusOr<std::size_t> bytes = ParseByteSize(c.text);
    ASSERT_TRUE(bytes.ok()) << c.text << ": " << Message(bytes.status());
    EXPECT_EQ(*bytes, c.bytes) << c.text;
  }
}

TEST(ParseByteSizeTest, Errors) {
  for (const char* bad : {"", "K", "abc", "4X", "4KK", "4Bi", "4BiB", "4iB", "-1", "+1", " 1",
                          "1 ", "1.5G", "1,024", "0x10", "16777216T", "18446744073709551616",
                          "99999999999999999999999"}) {
    absl::StatusOr<std::size_t> bytes = ParseByteSize(bad);
    EXPECT_FALSE(bytes.ok()) << "'" << bad << "' gave " << (bytes.ok() ? *bytes : 0);
    if (!bytes.ok()) {
      EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
  EXPECT_THAT(Message(ParseByteSize("4X").status()), HasSubstr("64K, 512M, 4G"));
  EXPECT_THAT(Message(ParseByteSize("16777216T").status()), HasSubstr("2^64"));
}

// --- ParseNumaPolicy / FormatNumaPolicy ------------------------------------------------

TEST(ParseNumaPolicyTest, EveryKindRoundTrips) {
  for (const char* text : {"local", "bind:0", "bind:1023", "preferred:2", "interleave:0",
                           "interleave:0,1", "interleave:3,1,2", "interleave:0,1023"}) {
    absl::StatusOr<NumaPolicy> policy = ParseNumaPolicy(text);
    ASSERT_TRUE(policy.ok()) << text << ": " << Message(policy.status());
    EXPECT_EQ(FormatNumaPolicy(*policy), text);
  }
  absl::StatusOr<NumaPolicy> preferred = ParseNumaPolicy("preferred:2");
  ASSERT_TRUE(preferred.ok());
  EXPECT_EQ(preferred->kind, NumaPolicy::Kind::kPreferred);
  EXPECT_EQ(preferred->nodes, std::vector<NodeId>{NodeId{2}});
  // Interleave keeps the order given (it decides which node page 0 lands on).
  absl::StatusOr<NumaPolicy> interleave = ParseNumaPolicy("interleave:3,1,2");
  ASSERT_TRUE(interleave.ok());
  EXPECT_EQ(interleave->nodes, (std::vector<NodeId>{NodeId{3}, NodeId{1}, NodeId{2}}));
}

TEST(ParseNumaPolicyTest, FormatsThePolicyConstructors) {
  EXPECT_EQ(FormatNumaPolicy(NumaPolicy::Local()), "local");
  EXPECT_EQ(FormatNumaPolicy(NumaPolicy::Bind(NodeId{4})), "bind:4");
  EXPECT_EQ(FormatNumaPolicy(NumaPolicy::Preferred(NodeId{0})), "preferred:0");
  EXPECT_EQ(FormatNumaPolicy(NumaPolicy::Interleave({NodeId{0}, NodeId{2}})), "interleave:0,2");
}

TEST(ParseNumaPolicyTest, SixtyFourInterleavedNodesAreTheLimit) {
  std::string text = "interleave:0";
  for (int node = 1; node < 64; ++node) {
    text += ',';
    text += std::to_string(node);
  }
  absl::StatusOr<NumaPolicy> policy = ParseNumaPolicy(text);
  ASSERT_TRUE(policy.ok()) << Message(policy.status());
  EXPECT_EQ(policy->nodes.size(), 64u);
  EXPECT_FALSE(ParseNumaPolicy(text + ",64").ok());
}

TEST(ParseNumaPolicyTest, Errors) {
  struct Case {
    const char* text;
    const char* says;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"", "local, bind:N, preferred:N or interleave:N,M,..."},
           {"remote", "local, bind:N, preferred:N or interleave:N,M,..."},
           {"Local", "local, bind:N"},
           {" local", "local, bind:N"},
           {"local:1", "the local policy takes no nodes"},
           {"local:", "the local policy takes no nodes"},
           {"bind", "bind takes one NUMA node number from 0 to 1023"},
           {"bind:", "bind takes one NUMA node number"},
           {"bind:x", "bind takes one NUMA node number"},
           {"bind:-1", "bind takes one NUMA node number"},
           {"bind:1,2", "bind takes one NUMA node number"},
           {"bind:1024", "bind takes one NUMA node number"},
           {"bind:99999999999999999999", "bind takes one NUMA node number"},
           {"preferred", "preferred takes one NUMA node number from 0 to 1023, as preferred:1"},
           {"preferred:one", "preferred takes one"},
           {"interleave", "interleave takes 1 to 64 distinct NUMA node numbers"},
           {"interleave:", "interleave takes 1 to 64"},
           {"interleave:,", "interleave takes 1 to 64"},
           {"interleave:0,", "interleave takes 1 to 64"},
           {"interleave:,0", "interleave takes 1 to 64"},
           {"interleave:0,,1", "interleave takes 1 to 64"},
           {"interleave:0 1", "interleave takes 1 to 64"},
           {"interleave:0-3", "interleave takes 1 to 64"},
           {"interleave:1,0,1", "node 1 is listed twice"},
           {"interleave:2000", "from 0 to 1023"},
       }) {
    absl::StatusOr<NumaPolicy> policy = ParseNumaPolicy(c.text);
    ASSERT_FALSE(policy.ok()) << c.text;
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(Message(policy.status()), HasSubstr(c.says)) << c.text;
  }
}

}  // namespace
}  // namespace uvmem::internal
