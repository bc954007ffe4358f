// Tests of `uvmem run`'s pieces: argument parsing and checking, the preload search,
// LD_PRELOAD assembly and exit statuses. The command end to end (exec, exit status,
// signals, environment) is tested by the Tool.UvmemRun* ctests in tools/CMakeLists.txt.
#include "run_command.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace uvmem::internal {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;

std::string Message(const absl::Status& status) {
  return std::string(status.message().data(), status.message().size());
}

// Owns the strings an argv points into.
class Args {
 public:
  Args(std::initializer_list<std::string> args) : strings_(args) {
    for (std::string& s : strings_) pointers_.push_back(s.data());
  }
  Args(const Args&) = delete;
  Args& operator=(const Args&) = delete;
  const std::vector<char*>& get() const { return pointers_; }

 private:
  std::vector<std::string> strings_;
  std::vector<char*> pointers_;
};

// The request's program points into `args`: callers of these helpers use only its size.
RunRequest ParseOk(const Args& args, std::string_view cwd = "/tmp") {
  absl::StatusOr<RunRequest> request = ParseRunArgs(args.get(), cwd);
  EXPECT_TRUE(request.ok()) << Message(request.status());
  if (!request.ok()) return {};
  return *request;
}

std::vector<std::string> Program(const absl::StatusOr<RunRequest>& request) {
  std::vector<std::string> out;
  if (request.ok()) {
    for (char* arg : request->program) out.emplace_back(arg);
  }
  return out;
}

std::string ParseError(const Args& args, std::string_view cwd = "/tmp") {
  absl::StatusOr<RunRequest> request = ParseRunArgs(args.get(), cwd);
  EXPECT_FALSE(request.ok());
  if (request.ok()) return "";
  EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument);
  return Message(request.status());
}

TEST(ParseRunArgsTest, EveryFlagSetsItsVariableWithANormalizedValue) {
  Args args{"--pool",          "4G",   "--fault-around=32",   "--readahead", "0",
            "--fault-threads", "2",    "--numa=interleave:0,1", "--stats",   "--",
            "prog",            "--pool", "x"};
  absl::StatusOr<RunRequest> request = ParseRunArgs(args.get(), "/tmp");
  ASSERT_TRUE(request.ok()) << Message(request.status());
  EXPECT_FALSE(request->help);
  EXPECT_TRUE(request->stats_flag);
  EXPECT_TRUE(request->numa_flag);
  EXPECT_EQ(request->preload, "");
  EXPECT_THAT(request->variables,
              ElementsAre(Pair("UVMEM_POOL", "4294967296"), Pair("UVMEM_FAULT_AROUND", "32"),
                          Pair("UVMEM_READAHEAD", "0"), Pair("UVMEM_FAULT_THREADS", "2"),
                          Pair("UVMEM_NUMA", "interleave:0,1"), Pair("UVMEM_STATS", "text")));
  // Everything after "--" is the program's, flags included.
  EXPECT_THAT(Program(request), ElementsAre("prog", "--pool", "x"));
}

TEST(ParseRunArgsTest, FlagsEndAtTheFirstNonFlag) {
  Args args{"--numa", "bind:0", "sh", "-c", "exit 7", "--", "--help"};
  absl::StatusOr<RunRequest> request = ParseRunArgs(args.get(), "/tmp");
  ASSERT_TRUE(request.ok()) << Message(request.status());
  EXPECT_FALSE(request->help);
  EXPECT_THAT(Program(request), ElementsAre("sh", "-c", "exit 7", "--", "--help"));
}

TEST(ParseRunArgsTest, ProgramPointersAreTheCallersOwn) {
  Args args{"--", "prog", "arg"};
  absl::StatusOr<RunRequest> request = ParseRunArgs(args.get(), "/tmp");
  ASSERT_TRUE(request.ok());
  ASSERT_EQ(request->program.size(), 2u);
  EXPECT_EQ(request->program[0], args.get()[1]);
  EXPECT_EQ(request->program[1], args.get()[2]);
}

TEST(ParseRunArgsTest, SpellingsAbslUsersExpect) {
  const RunRequest request = ParseOk({"-fault_around", "8", "--fault_threads=1", "prog"});
  EXPECT_THAT(request.variables,
              ElementsAre(Pair("UVMEM_FAULT_AROUND", "8"), Pair("UVMEM_FAULT_THREADS", "1")));
}

TEST(ParseRunArgsTest, NormalizesPoolAndNuma) {
  EXPECT_THAT(ParseOk({"--pool", "64K", "p"}).variables,
              ElementsAre(Pair("UVMEM_POOL", "65536")));
  EXPECT_THAT(ParseOk({"--numa", "preferred:1", "p"}).variables,
              ElementsAre(Pair("UVMEM_NUMA", "preferred:1")));
}

TEST(ParseRunArgsTest, BudgetAndSwapSetTheirVariables) {
  const RunRequest request =
      ParseOk({"--pool", "2G", "--budget", "512M", "--swap", "/tmp", "--swap-max=4G", "p"});
  EXPECT_THAT(request.variables,
              ElementsAre(Pair("UVMEM_POOL", "2147483648"), Pair("UVMEM_BUDGET", "536870912"),
                          Pair("UVMEM_SWAP", "/tmp"), Pair("UVMEM_SWAP_MAX", "4294967296")));
  EXPECT_THAT(ParseOk({"--budget=1M", "p"}).variables,
              ElementsAre(Pair("UVMEM_BUDGET", "1048576")));
  EXPECT_THAT(ParseOk({"--swap_max", "64MiB", "p"}).variables,
              ElementsAre(Pair("UVMEM_SWAP_MAX", "67108864")));
  // 0 turns off an inherited budget; --swap-max 0 is the default size.
  EXPECT_THAT(ParseOk({"--budget", "0", "--swap-max", "0", "p"}).variables,
              ElementsAre(Pair("UVMEM_BUDGET", "0"), Pair("UVMEM_SWAP_MAX", "0")));
  // Without --pool the flags alone do not decide the pool: RunRunCommand checks.
  EXPECT_THAT(ParseOk({"--budget", "1T", "p"}).variables,
              ElementsAre(Pair("UVMEM_BUDGET", "1099511627776")));
  // --swap and --swap-max alone are allowed (they matter once a budget is set).
  EXPECT_THAT(ParseOk({"--swap", "/tmp", "p"}).variables, ElementsAre(Pair("UVMEM_SWAP", "/tmp")));
}

TEST(ParseRunArgsTest, SwapPathIsMadeAbsoluteAndMustExist) {
  EXPECT_THAT(ParseOk({"--swap", ".", "p"}, "/tmp").variables,
              ElementsAre(Pair("UVMEM_SWAP", "/tmp")));
  EXPECT_THAT(ParseOk({"--swap=tmp/", "p"}, "/").variables,
              ElementsAre(Pair("UVMEM_SWAP", "/tmp")));
  EXPECT_THAT(ParseOk({"--swap", "/tmp/../tmp/", "p"}).variables,
              ElementsAre(Pair("UVMEM_SWAP", "/tmp")));
  // An existing regular file is used from its start.
  char pattern[] = "/tmp/uvmem_swap_test_XXXXXX";
  const int fd = mkstemp(pattern);
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_THAT(ParseOk({"--swap", pattern, "p"}).variables,
              ElementsAre(Pair("UVMEM_SWAP", std::string(pattern))));
  unlink(pattern);
  const std::string missing = ParseError({"--swap", pattern, "p"});
  EXPECT_THAT(missing, HasSubstr(std::string("--swap ") + pattern + ": No such file"));
  EXPECT_THAT(missing, HasSubstr("name a directory"));
  EXPECT_THAT(ParseError({"--swap", "/dev/null", "p"}),
              HasSubstr("--swap /dev/null: is neither a directory, a regular file nor a block "
                        "device"));
}

TEST(ParseRunArgsTest, ABudgetAboveThePoolNamesBothFlags) {
  EXPECT_THAT(ParseError({"--pool", "1G", "--budget=2G", "p"}),
              HasSubstr("--budget=2G: the budget is more than the frame pool (--pool 1G); "
                        "lower --budget or raise --pool"));
  // The last of each flag counts.
  EXPECT_TRUE(ParseRunArgs(Args{"--pool", "1G", "--budget", "2G", "--pool", "4G", "p"}.get(),
                           "/tmp")
                  .ok());
  EXPECT_TRUE(ParseRunArgs(Args{"--pool", "1G", "--budget", "1G", "p"}.get(), "/tmp").ok());
}

TEST(ParseRunArgsTest, Stats) {
  EXPECT_THAT(ParseOk({"--stats", "p"}).variables, ElementsAre(Pair("UVMEM_STATS", "text")));
  EXPECT_THAT(ParseOk({"--stats=text", "p"}).variables, ElementsAre(Pair("UVMEM_STATS", "text")));
  EXPECT_THAT(ParseOk({"--stats=json", "p"}).variables, ElementsAre(Pair("UVMEM_STATS", "json")));
  // A file is made absolute against the working directory.
  EXPECT_THAT(ParseOk({"--stats=out.json", "p"}, "/tmp").variables,
              ElementsAre(Pair("UVMEM_STATS", "/tmp/out.json")));
  EXPECT_THAT(ParseOk({"--stats=./json", "p"}, "/tmp").variables,
              ElementsAre(Pair("UVMEM_STATS", "/tmp/json")));
  EXPECT_THAT(ParseOk({"--stats=/tmp/../tmp/a.json", "p"}, "/").variables,
              ElementsAre(Pair("UVMEM_STATS", "/tmp/a.json")));
  // --stats takes no separate value: the next word is the program.
  const RunRequest request = ParseOk({"--stats", "out.json"});
  EXPECT_THAT(request.variables, ElementsAre(Pair("UVMEM_STATS", "text")));
  ASSERT_EQ(request.program.size(), 1u);
  EXPECT_TRUE(request.stats_flag);
}

TEST(ParseRunArgsTest, Preload) {
  const RunRequest a = ParseOk({"--preload", "/x/lib.so", "p"});
  EXPECT_EQ(a.preload, "/x/lib.so");
  EXPECT_TRUE(a.variables.empty());
  EXPECT_EQ(ParseOk({"--preload=/y.so", "p"}).preload, "/y.so");
}

TEST(ParseRunArgsTest, Help) {
  EXPECT_TRUE(ParseOk({"--help"}).help);
  EXPECT_TRUE(ParseOk({"-h"}).help);
  EXPECT_TRUE(ParseOk({"--pool", "1G", "--help", "prog"}).help);
  EXPECT_FALSE(ParseOk({"prog", "--help"}).help);
}

TEST(ParseRunArgsTest, Errors) {
  struct Case {
    Args args;
    const char* says;
  };
  const Case cases[] = {
      {{}, "no program given"},
      {{"--"}, "no program given"},
      {{"--pool", "1G"}, "no program given"},
      {{"--bogus", "p"}, "unknown flag '--bogus'"},
      {{"--verbose", "p"}, "unknown flag '--verbose'"},
      {{"--numa"}, "--numa needs a value"},
      {{"--numa=", "p"}, "--numa=: the value is empty"},
      {{"--numa", "bogus", "p"}, "--numa bogus: expected local, bind:N"},
      {{"--numa=bind:x", "p"}, "--numa=bind:x: bind takes one NUMA node number"},
      {{"--numa", "interleave:1,1", "p"}, "node 1 is listed twice"},
      {{"--pool", "4X", "p"}, "--pool 4X: expected a byte count"},
      {{"--pool", "0", "p"}, "--pool 0: the frame pool cannot be empty"},
      {{"--fault-around", "48", "p"}, "--fault-around 48: expected a power of two"},
      {{"--fault-around=0", "p"}, "--fault-around=0: expected a power of two"},
      {{"--readahead", "9000", "p"}, "--readahead 9000: expected 0 (off) to 8192"},
      {{"--fault-threads", "-1", "p"}, "--fault-threads -1: expected 0 (one per NUMA node)"},
      {{"--stats=", "p"}, "--stats= needs a file name"},
      {{"--stats=/nonexistent/dir/x.json", "p"}, "directory /nonexistent/dir does not exist"},
      {{"--stats=/tmp", "p"}, "is a directory"},
      {{"--preload", "", "p"}, "--preload : the value is empty"},
      {{"--budget", "lots", "p"}, "--budget lots: expected a byte count"},
      {{"--budget=512Q", "p"}, "--budget=512Q: expected a byte count"},
      {{"--budget", "4K", "p"}, "--budget 4K: expected 0 (no budget) or at least 1M"},
      {{"--budget", "-1G", "p"}, "--budget -1G: expected a byte count"},
      {{"--budget"}, "--budget needs a value"},
      {{"--swap-max", "1.5G", "p"}, "--swap-max 1.5G: expected a byte count"},
      {{"--swap-max", "100", "p"}, "--swap-max 100: expected 0 (the default"},
      {{"--swap", "", "p"}, "--swap : the value is empty"},
      {{"--swap=/nonexistent/swapdir", "p"}, "--swap=/nonexistent/swapdir: No such file"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseError(c.args), HasSubstr(c.says)) << c.says;
  }
  // The preload's own wording: the message does not mention the variable.
  EXPECT_THAT(ParseError({"--fault-around", "48", "p"}), Not(HasSubstr("UVMEM_")));
}

TEST(CheckNumaNodesTest, NodesMustExist) {
  const NumaTopology two = NumaTopology::TwoNodeForTest();
  EXPECT_TRUE(CheckNumaNodes(NumaPolicy::Local(), two).ok());
  EXPECT_TRUE(CheckNumaNodes(NumaPolicy::Bind(NodeId{1}), two).ok());
  EXPECT_TRUE(CheckNumaNodes(NumaPolicy::Interleave({NodeId{0}, NodeId{1}}), two).ok());
  absl::Status status = CheckNumaNodes(NumaPolicy::Interleave({NodeId{0}, NodeId{2}}), two);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("no NUMA node 2; it has nodes 0, 1"));
}

TEST(PrependPreloadTest, KeepsOtherEntriesAndDropsCopiesOfItself) {
  EXPECT_EQ(PrependPreload("/a/uv.so", ""), "/a/uv.so");
  EXPECT_EQ(PrependPreload("/a/uv.so", "/b/x.so"), "/a/uv.so:/b/x.so");
  EXPECT_EQ(PrependPreload("/a/uv.so", "/b/x.so /c/y.so"), "/a/uv.so:/b/x.so:/c/y.so");
  EXPECT_EQ(PrependPreload("/a/uv.so", "/b/x.so:/a/uv.so::/c/y.so "),
            "/a/uv.so:/b/x.so:/c/y.so");
  EXPECT_EQ(PrependPreload("/a/uv.so", "/a/uv.so"), "/a/uv.so");
}

TEST(ExecFailureStatusTest, AsAShellDoes) {
  EXPECT_EQ(ExecFailureStatus(ENOENT), 127);
  EXPECT_EQ(ExecFailureStatus(ENOTDIR), 127);
  EXPECT_EQ(ExecFailureStatus(EACCES), 126);
  EXPECT_EQ(ExecFailureStatus(ENOEXEC), 126);
  EXPECT_EQ(ExecFailureStatus(E2BIG), 126);
}

TEST(PreloadCandidatesTest, BuildTreeFirstThenInstalledLayouts) {
  const std::vector<std::string> candidates = PreloadCandidates("/opt/uvmem/bin/uvmem");
  ASSERT_GE(candidates.size(), 2u);
  EXPECT_EQ(candidates[0], "/opt/uvmem/lib/preload/libuvmem_preload.so");
  EXPECT_EQ(candidates[1], "/opt/uvmem/lib/libuvmem_preload.so");
  for (const std::string& c : candidates) EXPECT_TRUE(c.starts_with("/opt/uvmem/lib")) << c;
  // No duplicates (CMAKE_INSTALL_LIBDIR may be plain "lib").
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    for (std::size_t j = i + 1; j < candidates.size(); ++j) EXPECT_NE(candidates[i], candidates[j]);
  }
}

class LocatePreloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/uvmem_run_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
    fs::create_directories(root_ / "bin");
    fs::create_directories(root_ / "lib" / "preload");
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string Touch(const fs::path& path) {
    std::ofstream(path).put('x');
    return path.string();
  }
  std::string Exe() const { return (root_ / "bin" / "uvmem").string(); }
  fs::path root_;
};

TEST_F(LocatePreloadTest, FindsTheBuildTreeLibraryBesideTheBinary) {
  EXPECT_EQ(LocatePreload("", nullptr, Exe()).status().code(), absl::StatusCode::kNotFound);
  const std::string installed = Touch(root_ / "lib" / "libuvmem_preload.so");
  EXPECT_EQ(*LocatePreload("", nullptr, Exe()), installed);
  const std::string built = Touch(root_ / "lib" / "preload" / "libuvmem_preload.so");
  EXPECT_EQ(*LocatePreload("", nullptr, Exe()), built);
  EXPECT_EQ(*LocatePreload("", "", Exe()), built);  // an empty variable is unset
}

TEST_F(LocatePreloadTest, FlagBeatsVariableBeatsSearch) {
  Touch(root_ / "lib" / "preload" / "libuvmem_preload.so");
  const std::string by_env = Touch(root_ / "env.so");
  const std::string by_flag = Touch(root_ / "flag.so");
  EXPECT_EQ(*LocatePreload("", by_env.c_str(), Exe()), by_env);
  EXPECT_EQ(*LocatePreload(by_flag, by_env.c_str(), Exe()), by_flag);
}

TEST_F(LocatePreloadTest, NamedPathsAreNotSearchedPast) {
  Touch(root_ / "lib" / "preload" / "libuvmem_preload.so");
  absl::StatusOr<std::string> by_flag = LocatePreload("/nonexistent/x.so", nullptr, Exe());
  EXPECT_EQ(by_flag.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(by_flag.status()), HasSubstr("--preload /nonexistent/x.so: no such file"));
  absl::StatusOr<std::string> by_env = LocatePreload("", "/nonexistent/y.so", Exe());
  EXPECT_THAT(Message(by_env.status()), HasSubstr("UVMEM_PRELOAD_PATH=/nonexistent/y.so"));
  absl::StatusOr<std::string> dir = LocatePreload(root_.string(), nullptr, Exe());
  EXPECT_THAT(Message(dir.status()), HasSubstr("is a directory"));
}

TEST_F(LocatePreloadTest, NotFoundSaysWhatWasTriedAndHowToFixIt) {
  absl::StatusOr<std::string> path = LocatePreload("", nullptr, Exe());
  ASSERT_FALSE(path.ok());
  const std::string message = Message(path.status());
  EXPECT_THAT(message, HasSubstr((root_ / "lib" / "preload" / "libuvmem_preload.so").string()));
  EXPECT_THAT(message, HasSubstr("--preload PATH"));
  EXPECT_THAT(message, HasSubstr("UVMEM_PRELOAD_PATH"));
}

TEST_F(LocatePreloadTest, RelativePathsBecomeAbsolute) {
  const std::string lib = Touch(root_ / "rel.so");
  const fs::path saved = fs::current_path();
  fs::current_path(root_);
  absl::StatusOr<std::string> path = LocatePreload("./rel.so", nullptr, Exe());
  fs::current_path(saved);
  ASSERT_TRUE(path.ok()) << Message(path.status());
  EXPECT_EQ(*path, lib);
}

TEST_F(LocatePreloadTest, PathsLdSoWouldSplitAreRefused) {
  const std::string spaced = Touch(root_ / "a b.so");
  EXPECT_EQ(LocatePreload(spaced, nullptr, Exe()).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::string colon = Touch(root_ / "a:b.so");
  EXPECT_EQ(LocatePreload(colon, nullptr, Exe()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RunUsageTest, DescribesEveryFlagVariableAndExitCode) {
  const std::string usage = RunUsage();
  for (const char* text :
       {"--pool", "--fault-around", "--readahead", "--fault-threads", "--numa", "--stats",
        "--stats=FILE", "--preload", "--budget", "--swap", "--swap-max", "UVMEM_BUDGET",
        "UVMEM_SWAP", "UVMEM_SWAP_MAX", "512M", "UVMEM_POOL", "UVMEM_FAULT_AROUND", "UVMEM_READAHEAD",
        "UVMEM_FAULT_THREADS", "UVMEM_NUMA", "UVMEM_STATS", "UVMEM_STATS_PID",
        "UVMEM_PRELOAD_PATH", "LD_PRELOAD", "127", "126", "default 16", "default 64"}) {
    EXPECT_THAT(usage, HasSubstr(text));
  }
}

}  // namespace
}  // namespace uvmem::internal
