#include "run_command.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>

#include "config/preload_config.h"

#ifndef UVMEM_INSTALL_LIBDIR
#define UVMEM_INSTALL_LIBDIR "lib"
#endif
#ifndef UVMEM_LIBRARY_ARCHITECTURE
#define UVMEM_LIBRARY_ARCHITECTURE ""
#endif

namespace uvmem::internal {
namespace {

namespace fs = std::filesystem;

// Debian's absl has its own string_view type: convert explicitly.
std::string Message(const absl::Status& status) {
  return std::string(status.message().data(), status.message().size());
}

bool IsRegularFileOrLink(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode);
}

// Runs the preload's own parser on one variable on its own (the checks across variables
// come later, over all of them), as the preload will see it, and rewrites "NAME=value: why" as "<flag>: why".
absl::Status CheckAsPreloadWill(const char* name, const std::string& value,
                                std::string_view flag) {
  absl::StatusOr<PreloadConfig> config =
      ParsePreloadVariables([&](const char* asked) -> const char* {
        return std::string_view(asked) == name ? value.c_str() : nullptr;
      });
  if (config.ok()) return absl::OkStatus();
  std::string message = Message(config.status());
  const std::string prefix = fmt::format("{}={}: ", name, value);
  if (message.starts_with(prefix)) message.erase(0, prefix.size());
  return absl::InvalidArgumentError(fmt::format("{}: {}", flag, message));
}

absl::Status Usage(std::string_view message) {
  return absl::InvalidArgumentError(std::string(message));
}

// The flags that take a value, with their variables. --stats and --preload are special.
struct ValueFlag {
  std::string_view name;
  const char* variable;
};
constexpr ValueFlag kValueFlags[] = {
    {"pool", kEnvPool},
    {"fault-around", kEnvFaultAround},
    {"readahead", kEnvReadahead},
    {"fault-threads", kEnvFaultThreads},
    {"numa", kEnvNuma},
    {"budget", kEnvBudget},
    {"swap", kEnvSwap},
    {"swap-max", kEnvSwapMax},
};

// OK when `path` can take swap: an existing directory, regular file or block device that
// this process may write. Else InvalidArgument saying what is wrong (without naming the
// flag or variable: callers prefix it).
absl::Status CheckSwapPath(const std::string& path) {
  constexpr std::string_view kForms =
      "name a directory (an unlinked swap file is made in it), an existing file or a block "
      "device";
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(
        fmt::format("{} ({}); {}", std::strerror(errno), ::strerrorname_np(errno), kForms));
  }
  const bool dir = S_ISDIR(st.st_mode);
  if (!dir && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    return absl::InvalidArgumentError(
        fmt::format("is neither a directory, a regular file nor a block device; {}", kForms));
  }
  if (::access(path.c_str(), dir ? (W_OK | X_OK) : (R_OK | W_OK)) != 0) {
    return absl::InvalidArgumentError(fmt::format(
        "cannot {} it: {} ({})", dir ? "create a file in" : "read and write",
        std::strerror(errno), ::strerrorname_np(errno)));
  }
  return absl::OkStatus();
}

// The last value a size flag gave, for the checks across flags.
struct GivenSize {
  std::string shown;  // "--pool 4G" as typed; "" = not given
  std::size_t bytes = 0;
};

}  // namespace

absl::StatusOr<RunRequest> ParseRunArgs(const std::vector<char*>& args, std::string_view cwd) {
  RunRequest request;
  GivenSize pool;
  GivenSize budget;
  std::size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.size() < 2 || arg.front() != '-') break;  // PROGRAM ("-" alone too)

    // "--name=value", "-name value": split, normalize the name.
    std::string_view body = arg.substr(arg.starts_with("--") ? 2 : 1);
    const std::size_t eq = body.find('=');
    std::string name(body.substr(0, eq));
    for (char& c : name) c = c == '_' ? '-' : c;
    const std::optional<std::string_view> attached =
        eq == std::string_view::npos ? std::nullopt
                                     : std::optional<std::string_view>(body.substr(eq + 1));
    const std::string flag = fmt::format("--{}", name);

    if (name == "help" || name == "h") {
      request.help = true;
      continue;
    }
    if (name == "stats") {
      request.stats_flag = true;
      if (!attached) {
        request.variables.emplace_back(kEnvStats, "text");
        continue;
      }
      if (attached->empty()) {
        return Usage("--stats= needs a file name (or use --stats alone for text on stderr)");
      }
      if (*attached == "text" || *attached == "json") {
        request.variables.emplace_back(kEnvStats, std::string(*attached));
        continue;
      }
      fs::path file{std::string(*attached)};
      if (file.is_relative()) file = fs::path(std::string(cwd)) / file;
      file = file.lexically_normal();
      std::error_code error;
      const fs::path dir = file.parent_path();
      if (!dir.empty() && !fs::is_directory(dir, error)) {
        return Usage(fmt::format("--stats={}: directory {} does not exist", *attached,
                                 dir.string()));
      }
      if (file.filename().empty() || fs::is_directory(file, error)) {
        return Usage(fmt::format("--stats={}: is a directory; name a file", *attached));
      }
      request.variables.emplace_back(kEnvStats, file.string());
      continue;
    }

    // Every other flag takes a value: attached, or the next argument.
    const ValueFlag* value_flag = nullptr;
    for (const ValueFlag& f : kValueFlags) {
      if (f.name == name) value_flag = &f;
    }
    if (value_flag == nullptr && name != "preload") {
      return Usage(fmt::format("unknown flag '{}'; see `uvmem run --help`", arg));
    }
    std::string value;
    if (attached) {
      value = std::string(*attached);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return Usage(fmt::format("{} needs a value; see `uvmem run --help`", flag));
    }
    const std::string shown = attached ? fmt::format("{}={}", flag, value)
                                       : fmt::format("{} {}", flag, value);
    if (value.empty()) return Usage(fmt::format("{}: the value is empty", shown));

    if (name == "preload") {
      request.preload = value;
      continue;
    }
    if (name == "pool" || name == "budget" || name == "swap-max") {
      absl::StatusOr<std::size_t> bytes = ParseByteSize(value);
      if (!bytes.ok()) return Usage(fmt::format("{}: {}", shown, Message(bytes.status())));
      value = fmt::format("{}", *bytes);
      if (name == "pool") pool = {shown, *bytes};
      if (name == "budget") budget = {shown, *bytes};
    } else if (name == "swap") {
      fs::path path{value};
      if (path.is_relative()) path = fs::path(std::string(cwd)) / path;
      value = path.lexically_normal().string();
      if (value.size() > 1 && value.back() == '/') value.pop_back();  // "dir/" -> "dir"
      if (absl::Status status = CheckSwapPath(value); !status.ok()) {
        return Usage(fmt::format("{}: {}", shown, Message(status)));
      }
    } else if (name == "numa") {
      absl::StatusOr<NumaPolicy> policy = ParseNumaPolicy(value);
      if (!policy.ok()) return Usage(fmt::format("{}: {}", shown, Message(policy.status())));
      value = FormatNumaPolicy(*policy);
      request.numa_flag = true;
    }
    if (absl::Status status = CheckAsPreloadWill(value_flag->variable, value, shown);
        !status.ok()) {
      return status;
    }
    request.variables.emplace_back(value_flag->variable, value);
  }
  // Across flags (the environment's values are checked with them by RunRunCommand).
  if (!budget.shown.empty() && !pool.shown.empty() && budget.bytes > pool.bytes) {
    return Usage(fmt::format("{}: the budget is more than the frame pool ({}); lower --budget "
                             "or raise --pool",
                             budget.shown, pool.shown));
  }
  request.program.assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
  if (request.program.empty() && !request.help) {
    return Usage("no program given; usage: uvmem run [flags] [--] PROGRAM [ARGS...]");
  }
  return request;
}

absl::Status CheckNumaNodes(const NumaPolicy& policy, const NumaTopology& topology) {
  for (NodeId node : policy.nodes) {
    if (topology.has_node(node)) continue;
    std::string nodes;
    for (int i = 0; i < topology.num_nodes(); ++i) {
      nodes += fmt::format("{}{}", i == 0 ? "" : ", ", topology.node_id(i).value);
    }
    return absl::InvalidArgumentError(
        fmt::format("this machine has no NUMA node {}; it has node{} {} (see `uvmem info`)",
                    node.value, topology.num_nodes() == 1 ? "" : "s", nodes));
  }
  return absl::OkStatus();
}

std::vector<std::string> PreloadCandidates(std::string_view exe_path) {
  const fs::path dir = fs::path(std::string(exe_path)).parent_path();
  std::vector<fs::path> paths = {dir / ".." / "lib" / "preload" / kPreloadLibraryName,
                                 dir / ".." / "lib" / kPreloadLibraryName};
  if (std::string_view(UVMEM_LIBRARY_ARCHITECTURE).size() > 0) {
    paths.push_back(dir / ".." / "lib" / UVMEM_LIBRARY_ARCHITECTURE / kPreloadLibraryName);
  }
  paths.push_back(dir / ".." / UVMEM_INSTALL_LIBDIR / kPreloadLibraryName);
  std::vector<std::string> out;
  for (const fs::path& p : paths) {
    std::string candidate = p.lexically_normal().string();
    bool seen = false;
    for (const std::string& c : out) seen = seen || c == candidate;
    if (!seen) out.push_back(std::move(candidate));
  }
  return out;
}

absl::StatusOr<std::string> LocatePreload(std::string_view flag_path, const char* env_path,
                                          std::string_view exe_path) {
  std::string found;
  if (!flag_path.empty() || (env_path != nullptr && env_path[0] != '\0')) {
    const bool by_flag = !flag_path.empty();
    const std::string path = by_flag ? std::string(flag_path) : std::string(env_path);
    if (!IsRegularFileOrLink(path)) {
      return absl::NotFoundError(fmt::format(
          "{}{}: {}", by_flag ? std::string("--preload ") : fmt::format("{}=", kEnvPreloadPath),
          path, ::access(path.c_str(), F_OK) == 0 ? "is a directory" : "no such file"));
    }
    found = path;
  } else {
    const std::vector<std::string> candidates = PreloadCandidates(exe_path);
    for (const std::string& candidate : candidates) {
      if (IsRegularFileOrLink(candidate)) {
        found = candidate;
        break;
      }
    }
    if (found.empty()) {
      std::string tried;
      for (const std::string& c : candidates) tried += fmt::format("\n  {}", c);
      return absl::NotFoundError(fmt::format(
          "cannot find {} next to {}; tried:{}\nbuild it (target uvmem_preload), or name it "
          "with --preload PATH or {}=PATH",
          kPreloadLibraryName, exe_path, tried, kEnvPreloadPath));
    }
  }
  std::error_code error;
  fs::path absolute = fs::absolute(fs::path(found), error);
  if (!error) found = absolute.lexically_normal().string();
  if (found.find_first_of(" :") != std::string::npos) {
    return absl::InvalidArgumentError(
        fmt::format("{}: LD_PRELOAD cannot hold a path with a space or a colon; move or link "
                    "the library elsewhere",
                    found));
  }
  return found;
}

std::string PrependPreload(std::string_view path, std::string_view existing) {
  std::string out(path);
  std::size_t begin = 0;
  while (begin < existing.size()) {
    std::size_t end = existing.find_first_of(" :", begin);
    if (end == std::string_view::npos) end = existing.size();
    const std::string_view entry = existing.substr(begin, end - begin);
    if (!entry.empty() && entry != path) {
      out += ':';
      out += entry;
    }
    begin = end + 1;
  }
  return out;
}

int ExecFailureStatus(int error) {
  return error == ENOENT || error == ENOTDIR ? kRunExitNotFound : kRunExitNotExecutable;
}

std::string RunUsage() {
  return fmt::format(
      R"(usage: uvmem run [flags] [--] PROGRAM [ARGS...]

Runs PROGRAM with {lib} preloaded, so that its malloc, free, new
and delete are served by uvmem: heap pages are filled on first touch by uvmem's
userfaultfd fault engine, from a NUMA-aware frame pool. uvmem checks the flags, sets
the UVMEM_* variables below, puts the library first in LD_PRELOAD (keeping what was
there) and then becomes PROGRAM (exec, same pid): PROGRAM's exit status and signals
are its own.

flags (each sets the variable beside it; a variable not set by a flag keeps its value
from the environment, else its default):
  --pool BYTES          UVMEM_POOL           frame pool over all nodes: 512M, 4G,
                                             1048576 (binary units; default: RAM)
  --fault-around PAGES  UVMEM_FAULT_AROUND   pages mapped per fault: a power of two
                                             from 1 (off) to 512 (default {far})
  --readahead PAGES     UVMEM_READAHEAD      pages filled ahead of sequential faults:
                                             0 (off) to 8192 (default {ra})
  --fault-threads N     UVMEM_FAULT_THREADS  fault-handling threads: 0 to 256
                                             (default 0 = one per NUMA node)
  --numa POLICY         UVMEM_NUMA           where heap frames come from: local,
                                             bind:N, preferred:N, interleave:N,M,...
                                             (default local)
  --budget BYTES        UVMEM_BUDGET         most bytes of heap pages resident at
                                             once, at most the pool: 512M, 2G (binary
                                             units; at least 1M; default 0 = no
                                             budget); cold pages are swapped out
  --swap PATH           UVMEM_SWAP           where swapped pages go: a directory (an
                                             unlinked file is made in it), or an
                                             existing file or block device, which is
                                             overwritten (default $TMPDIR, else /tmp)
  --swap-max BYTES      UVMEM_SWAP_MAX       most bytes of swap: 1G, 64G (binary
                                             units; default 0 = the pool's size, at
                                             least 4 x the budget; at least 1M)
  --stats               UVMEM_STATS=text     at exit, a statistics summary on stderr
  --stats=FILE          UVMEM_STATS=FILE     at exit, the statistics as JSON in FILE
                                             (--stats=json: JSON on stderr)
  --preload PATH        the library to preload; default ${env}, else
                        found beside this uvmem: ../lib/preload/ (build tree), ../lib/,
                        ../lib/<multiarch>/
  --help                this text

Flags end at `--` or at the first argument that is not a flag; the rest is PROGRAM and
its arguments, passed untouched. Only PROGRAM's own process writes the statistics
(UVMEM_STATS_PID is set to its pid), not the processes it starts.

exit status: PROGRAM's own; 2 for a bad flag or UVMEM_* variable (PROGRAM is not
started); 1 when the library cannot be found; 127 when PROGRAM is not found; 126
when it cannot be executed.

--swap and --swap-max matter only with a budget. A relative --swap PATH is made
absolute; it must exist.

examples: uvmem run --pool 4G --numa interleave:0,1 --stats -- redis-server --port 7000
          uvmem run --budget 512M --swap /mnt/nvme --stats -- ./prog
Plain `LD_PRELOAD=/path/to/{lib} PROGRAM` works the same way with the
same variables; see docs/preload.md.
)",
      fmt::arg("lib", kPreloadLibraryName), fmt::arg("far", kPreloadFaultAroundPages),
      fmt::arg("ra", kPreloadReadaheadPages), fmt::arg("env", kEnvPreloadPath));
}

int RunRunCommand(const std::vector<char*>& args) {
  auto fail = [](int code, std::string_view message) {
    std::fputs(fmt::format("uvmem run: {}\n", message).c_str(), stderr);
    return code;
  };
  std::error_code cwd_error;
  const std::string cwd = fs::current_path(cwd_error).string();
  absl::StatusOr<RunRequest> request = ParseRunArgs(args, cwd);
  if (!request.ok()) return fail(kRunExitUsage, Message(request.status()));
  if (request->help) {
    std::fputs(RunUsage().c_str(), stdout);
    return 0;
  }

  // The environment PROGRAM will see: the flags' variables over the inherited ones.
  for (const auto& [name, value] : request->variables) {
    if (::setenv(name.c_str(), value.c_str(), 1) != 0) {
      return fail(kRunExitFailure, fmt::format("setenv {}: {}", name, std::strerror(errno)));
    }
  }
  // Inherited variables are checked too, as the preload will read them.
  absl::StatusOr<PreloadConfig> config = ParsePreloadConfig(&getenv);
  if (!config.ok()) {
    // "NAME=value: why". A variable a flag set was checked alone already, so it failed a
    // check across variables (a --budget over an inherited UVMEM_POOL): no hint then.
    const std::string message = Message(config.status());
    const std::string name = message.substr(0, message.find('='));
    bool by_flag = false;
    for (const auto& variable : request->variables) by_flag = by_flag || variable.first == name;
    return fail(kRunExitUsage,
                by_flag ? message
                        : fmt::format("{} (from the environment; unset it or pass the matching "
                                      "flag)",
                                      message));
  }
  // An inherited UVMEM_SWAP is checked as --swap is, when a budget will use it.
  if (const char* swap = std::getenv(kEnvSwap);
      swap != nullptr && swap[0] != '\0' && config->runtime.budget_bytes != 0) {
    if (absl::Status status = CheckSwapPath(swap); !status.ok()) {
      return fail(kRunExitUsage, fmt::format("{}={}: {}", kEnvSwap, swap, Message(status)));
    }
  }
  if (absl::Status status = CheckNumaNodes(config->numa, NumaTopology::Detect());
      !status.ok()) {
    const std::string numa = FormatNumaPolicy(config->numa);
    return fail(kRunExitUsage,
                fmt::format("{}: {}",
                            request->numa_flag ? fmt::format("--numa {}", numa)
                                               : fmt::format("{}={}", kEnvNuma, numa),
                            Message(status)));
  }
  // Only PROGRAM's own process reports (exec keeps this pid). An inherited
  // UVMEM_STATS_PID without --stats belongs to an outer run and is kept.
  const char* stats_pid = std::getenv(kEnvStatsPid);
  if (config->stats != PreloadConfig::StatsFormat::kNone &&
      (request->stats_flag || stats_pid == nullptr || stats_pid[0] == '\0')) {
    ::setenv(kEnvStatsPid, fmt::format("{}", ::getpid()).c_str(), 1);
  }

  std::error_code exe_error;
  const std::string exe = fs::read_symlink("/proc/self/exe", exe_error).string();
  absl::StatusOr<std::string> preload =
      LocatePreload(request->preload, std::getenv(kEnvPreloadPath), exe);
  if (!preload.ok()) return fail(kRunExitFailure, Message(preload.status()));
  const char* existing = std::getenv("LD_PRELOAD");
  const std::string ld_preload = PrependPreload(*preload, existing ? existing : "");
  ::setenv("LD_PRELOAD", ld_preload.c_str(), 1);

  std::vector<char*> argv = request->program;
  argv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  ::execvp(argv[0], argv.data());
  const int error = errno;
  return fail(ExecFailureStatus(error),
              fmt::format("cannot execute '{}': {} ({})", argv[0], std::strerror(error),
                          ::strerrorname_np(error)));
}

}  // namespace uvmem::internal
