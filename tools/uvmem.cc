// uvmem — the command-line front end: `uvmem <command> [flags]`.
//
// Commands: info, run; stats comes later. Flags are absl flags, except run's, which
// run_command.cc parses itself (its flags end where PROGRAM begins, and PROGRAM's
// arguments must reach it untouched). `uvmem --help` lists the commands,
// `uvmem <command> --help` describes one. Exit codes: 0 success, 1 the command failed,
// 2 usage error; `uvmem run` exits with PROGRAM's status (docs/preload.md).
#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/reflection.h>
#include <absl/flags/usage.h>
#include <absl/flags/usage_config.h>
#include <absl/strings/match.h>
#include <fmt/format.h>

#include <array>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "info_command.h"
#include "run_command.h"
#include "uvmem/version.h"

ABSL_FLAG(bool, verbose, false,
          "info: also print what each userfaultfd feature does and which Linux added it");

namespace uvmem::internal {
namespace {

struct Command {
  std::string_view name;
  std::string_view summary;
  std::array<std::string_view, 4> flags;  // names of the absl flags the command reads
  int (*run)(const std::vector<char*>& args);
  // Set for a command that parses its own arguments: main hands it everything after
  // the command's name, unparsed, and prints this for its --help.
  std::string (*own_usage)() = nullptr;
};

int RunInfo(const std::vector<char*>& args) {
  if (!args.empty()) {
    std::fprintf(stderr, "uvmem info: unexpected argument '%s'\n", args.front());
    return 2;
  }
  return RunInfoCommand({.verbose = absl::GetFlag(FLAGS_verbose)});
}

constexpr Command kCommands[] = {
    {"info",
     "print what this machine offers uvmem: kernel, userfaultfd features and privilege, "
     "THP mode, NUMA topology",
     {"verbose"},
     &RunInfo},
    {"run",
     "run a program with its heap served by uvmem (preloads libuvmem_preload.so): "
     "uvmem run [flags] -- PROGRAM [ARGS...]",
     {},
     &RunRunCommand,
     &RunUsage},
};

const Command* FindCommand(std::string_view name) {
  for (const Command& c : kCommands) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string GeneralUsage() {
  std::string out = fmt::format(
      "uvmem {}: a user-space demand-paging runtime on userfaultfd.\n\n"
      "usage: uvmem <command> [flags]\n\ncommands:\n",
      UVMEM_VERSION_STRING);
  for (const Command& c : kCommands) {
    // Wrap the summary at word boundaries into its column.
    std::string_view summary = c.summary;
    std::string_view name = c.name;
    constexpr std::size_t kWidth = 78;
    do {
      std::size_t take = summary.size();
      if (take > kWidth) {
        take = summary.rfind(' ', kWidth);
        if (take == std::string_view::npos || take == 0) take = kWidth;
      }
      out += fmt::format("  {:<8} {}\n", name, summary.substr(0, take));
      summary.remove_prefix(take);
      while (!summary.empty() && summary.front() == ' ') summary.remove_prefix(1);
      name = "";
    } while (!summary.empty());
  }
  out += "\n`uvmem <command> --help` describes a command; --version prints the version.\n";
  return out;
}

// One line per flag the command reads, from the absl flag registry.
std::string CommandHelp(const Command& command) {
  std::string out = fmt::format("usage: uvmem {} [flags]\n\n{}\n", command.name, command.summary);
  bool any = false;
  for (std::string_view name : command.flags) {
    if (name.empty()) continue;
    // Debian's absl has its own string_view type: convert explicitly.
    const absl::CommandLineFlag* flag =
        absl::FindCommandLineFlag(absl::string_view(name.data(), name.size()));
    if (flag == nullptr) continue;
    if (!any) out += "\nflags:\n";
    any = true;
    out += fmt::format("  --{}  {} (default: {})\n", std::string(flag->Name()), flag->Help(),
                       flag->DefaultValue());
  }
  return out;
}

// The flag name in "--name=value", "-name" or "--noname" (a negated bool), as absl spells it.
bool IsKnownFlag(std::string_view arg) {
  while (arg.starts_with("-")) arg.remove_prefix(1);
  arg = arg.substr(0, arg.find('='));
  auto known = [](std::string_view name) {
    // absl's usage flags are parsed specially and are not in the flag registry.
    for (std::string_view builtin : {"helpfull", "helpshort", "helppackage", "helpon", "helpmatch",
                                     "version", "only_check_args"}) {
      if (name == builtin) return true;
    }
    return absl::FindCommandLineFlag(absl::string_view(name.data(), name.size())) != nullptr;
  };
  return known(arg) || (arg.starts_with("no") && known(arg.substr(2)));
}

bool IsHelpFlag(std::string_view arg) {
  return arg == "--help" || arg == "-help" || arg == "-h" || arg == "--h" || arg == "help";
}

}  // namespace
}  // namespace uvmem::internal

int main(int argc, char** argv) {
  using namespace uvmem::internal;
  absl::SetProgramUsageMessage(GeneralUsage());
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "tools/");
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.version_string = [] { return std::string("uvmem " UVMEM_VERSION_STRING "\n"); };
  absl::SetFlagsUsageConfig(config);

  // Help is handled here, before absl parses, so that `uvmem info --help` describes info.
  // Unknown flags are usage errors (exit 2) here too, rather than absl's exit 1.
  const Command* command = nullptr;
  std::string_view command_name;
  std::string_view unknown_flag;
  bool help = false;
  bool flag_before_command = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") break;
    if (IsHelpFlag(arg)) {
      help = true;
    } else if (arg.starts_with("-")) {
      if (command_name.empty()) flag_before_command = true;
      if (unknown_flag.empty() && !IsKnownFlag(arg)) unknown_flag = arg;
    } else if (command_name.empty()) {
      command_name = arg;
      command = FindCommand(arg);
      if (command != nullptr && command->own_usage != nullptr) {
        // `uvmem run ...`: the rest is the command's own, flags and PROGRAM alike.
        if (help) {
          std::fputs(command->own_usage().c_str(), stdout);
          return 0;
        }
        if (flag_before_command) {
          std::fprintf(stderr, "uvmem: flags of %s go after the command; see `uvmem %s --help`\n",
                       argv[i], argv[i]);
          return 2;
        }
        return command->run(std::vector<char*>(argv + i + 1, argv + argc));
      }
    }
  }
  if (!command_name.empty() && command == nullptr) {
    std::fputs(
        fmt::format("uvmem: unknown command '{}'\n\n{}", command_name, GeneralUsage()).c_str(),
        stderr);
    return 2;
  }
  if (!unknown_flag.empty() && !help) {
    const std::string hint =
        command != nullptr ? fmt::format("uvmem {} --help", command->name) : "uvmem --help";
    std::fputs(fmt::format("uvmem: unknown flag '{}'; see `{}`\n", unknown_flag, hint).c_str(),
               stderr);
    return 2;
  }
  if (help) {
    std::fputs(command != nullptr ? CommandHelp(*command).c_str() : GeneralUsage().c_str(), stdout);
    return 0;
  }

  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (command == nullptr || positional.size() < 2) {
    std::fprintf(stderr, "uvmem: no command given\n\n%s", GeneralUsage().c_str());
    return 2;
  }
  // positional: program name, the command, then the command's own arguments.
  std::vector<char*> args(positional.begin() + 2, positional.end());
  return command->run(args);
}
