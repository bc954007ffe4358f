// run_command.h — `uvmem run`: start a program with its heap served by uvmem.
//
//   uvmem run [flags] [--] PROGRAM [ARGS...]
//
// Checks the flags (and any UVMEM_* variables already in the environment) with the
// parsers of lib/config, sets the UVMEM_* variables, puts libuvmem_preload.so first in
// LD_PRELOAD and execs PROGRAM in place: PROGRAM keeps uvmem's pid, and its exit status
// and signals are its own. docs/preload.md describes the variables and the exit codes.
//
// The pieces are separate functions so that tests can check them without exec.
// Thread-safety: call from one thread (the command's main); RunRunCommand changes the
// process environment.
#ifndef UVMEM_TOOLS_RUN_COMMAND_H_
#define UVMEM_TOOLS_RUN_COMMAND_H_

#include <absl/status/status.h>
#include <absl/status/statusor.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "platform/numa_topology.h"
#include "uvmem/runtime.h"

namespace uvmem::internal {

// Exit codes of `uvmem run` itself; otherwise the exit status is PROGRAM's.
inline constexpr int kRunExitFailure = 1;         // the preload library cannot be found
inline constexpr int kRunExitUsage = 2;           // a bad flag or UVMEM_* variable
inline constexpr int kRunExitNotExecutable = 126; // PROGRAM exists but exec failed
inline constexpr int kRunExitNotFound = 127;      // PROGRAM not found

// The preload library's file name, and the variable that names it outright.
inline constexpr char kPreloadLibraryName[] = "libuvmem_preload.so";
inline constexpr char kEnvPreloadPath[] = "UVMEM_PRELOAD_PATH";

// `uvmem run`'s arguments, checked.
struct RunRequest {
  bool help = false;  // --help (or -h) was given: print RunUsage(), run nothing
  // UVMEM_* variables to set, in flag order, with normalized values (a size such as
  // "4G" becomes "4294967296", a --stats file or --swap path an absolute path). A flag
  // given twice appears twice; the last wins.
  std::vector<std::pair<std::string, std::string>> variables;
  bool stats_flag = false;     // --stats or --stats=... was given
  bool numa_flag = false;      // --numa was given
  std::string preload;         // --preload PATH as given; "" = locate the library
  std::vector<char*> program;  // PROGRAM and its arguments, untouched (pointers into argv)
};

// Parses `uvmem run`'s arguments: everything after the word "run". Flags are
// `--name VALUE` or `--name=VALUE` (one dash works too, and _ for -), except --stats,
// whose file must follow '='. Flags end at "--" or at the first argument that does not
// start with '-'; the rest is PROGRAM and its arguments. `cwd` makes a relative
// --stats=FILE or --swap PATH absolute (the program may change directory before it
// exits or before its heap starts). Sizes (--pool, --budget, --swap-max) take binary
// units (K, M, G, T). Each flag is checked on its own as the preload will check its
// variable; across flags, a --budget above a --pool is an error. Variables inherited from
// the environment are not looked at (RunRunCommand checks them with the flags').
// Errors: InvalidArgument with a one-line message naming the flag (unknown flag, missing
// value, bad value, a --stats directory that does not exist, a --swap PATH that does not
// exist, is not a directory, regular file or block device, or cannot be written,
// --budget above --pool, no PROGRAM).
absl::StatusOr<RunRequest> ParseRunArgs(const std::vector<char*>& args, std::string_view cwd);

// OK when every node of `policy` exists in `topology`; else InvalidArgument naming the
// missing node and the nodes this machine has.
absl::Status CheckNumaNodes(const NumaPolicy& policy, const NumaTopology& topology);

// Where to look for the library when neither --preload nor UVMEM_PRELOAD_PATH says, for
// a uvmem binary at `exe_path` in directory DIR, in order:
//   DIR/../lib/preload/   the build tree;
//   DIR/../lib/, DIR/../lib/<multiarch>/, DIR/../<CMAKE_INSTALL_LIBDIR>/   installed.
std::vector<std::string> PreloadCandidates(std::string_view exe_path);

// The library to preload, as an absolute path: `flag_path` when not empty, else
// `env_path` when not null or empty, else the first of PreloadCandidates(exe_path) that
// exists. Errors: NotFound saying what was tried and how to point at the library (a
// path given by flag or variable that does not exist is not searched past);
// InvalidArgument for a path with a space or colon (LD_PRELOAD would split it).
absl::StatusOr<std::string> LocatePreload(std::string_view flag_path, const char* env_path,
                                          std::string_view exe_path);

// The new LD_PRELOAD: `path` first, then the entries of `existing` (separated by spaces
// or colons, as ld.so reads them) other than `path` itself, joined by ':'.
std::string PrependPreload(std::string_view path, std::string_view existing);

// The exit status a shell gives when exec fails with `error`: 127 when the program was
// not found (ENOENT, ENOTDIR), 126 otherwise (EACCES, ENOEXEC, ...).
int ExecFailureStatus(int error);

// `uvmem run --help`.
std::string RunUsage();

// The whole command: parse, check, set the environment, exec. Returns an exit code only
// when PROGRAM was not started (after printing why on stderr); on success it does not
// return. `args` is everything after the word "run".
int RunRunCommand(const std::vector<char*>& args);

}  // namespace uvmem::internal

#endif  // UVMEM_TOOLS_RUN_COMMAND_H_
