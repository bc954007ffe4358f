// End-to-end tests of libuvmem_preload.so: programs that know nothing of uvmem run with
// LD_PRELOAD set — a probe program (tests/preload_probe.cc), a shell pipeline, python3 —
// exit normally, and really allocate from uvmem's heap; UVMEM_STATS writes its JSON report
// in the process UVMEM_STATS_PID names.
//
// UVMEM_PRELOAD_PATH and UVMEM_PRELOAD_PROBE_PATH come from tests/CMakeLists.txt.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace {

struct Result {
  int status = -1;  // waitpid status
  std::string out;
  std::string err;
  bool exited_ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  std::string Describe() const {
    std::ostringstream s;
    if (WIFEXITED(status)) {
      s << "exit " << WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      s << "signal " << WTERMSIG(status);
    } else {
      s << "status " << status;
    }
    s << "\n--- stdout ---\n" << out << "--- stderr ---\n" << err;
    return s.str();
  }
};

struct RunOptions {
  bool preload = true;
  std::vector<std::string> env;  // NAME=value added to (a clean copy of) the environment
  bool stats_pid_is_child = false;  // UVMEM_STATS_PID=<the child's own pid>
  int timeout_s = 120;              // then it is killed (a run takes well under a second)
};

// Runs argv with its stdout and stderr captured; kills its process group on timeout.
Result RunProgram(const std::vector<std::string>& argv, const RunOptions& options) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string var = *e;
    if (var.rfind("LD_PRELOAD=", 0) == 0 || var.rfind("UVMEM_", 0) == 0) continue;
    env.push_back(var);
  }
  if (options.preload) env.push_back(std::string("LD_PRELOAD=") + UVMEM_PRELOAD_PATH);
  for (const std::string& var : options.env) env.push_back(var);

  int out_pipe[2], err_pipe[2];
  Result result;
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0) {
    result.err = "pipe failed";
    return result;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);  // its own process group: a hung grandchild is killed with it
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(err_pipe[1], STDERR_FILENO);
    close(out_pipe[0]);
    close(out_pipe[1]);
    close(err_pipe[0]);
    close(err_pipe[1]);
    if (options.stats_pid_is_child) {
      env.push_back("UVMEM_STATS_PID=" + std::to_string(getpid()));
    }
    std::vector<char*> args, envp;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (pid < 0) {
    result.err = "fork failed";
    return result;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options.timeout_s);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      result.err += "\n[killed after " + std::to_string(options.timeout_s) + " s: hung]";
      break;
    }
    if (poll(fds, 2, 1000) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char buffer[4096];
      const ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
      if (n > 0) {
        (i == 0 ? result.out : result.err).append(buffer, static_cast<std::size_t>(n));
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  waitpid(pid, &result.status, 0);
  kill(-pid, SIGKILL);  // whatever it left behind
  return result;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/uvmem-preload-test-" +
         std::to_string(getpid()) + "-" + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

const std::string kProbe = UVMEM_PRELOAD_PROBE_PATH;

TEST(PreloadTest, TheLibraryExists) {
  EXPECT_TRUE(Exists(UVMEM_PRELOAD_PATH)) << UVMEM_PRELOAD_PATH;
  EXPECT_TRUE(Exists(kProbe)) << kProbe;
}

TEST(PreloadTest, ProbeRunsWithoutThePreload) {
  const Result r = RunProgram({kProbe, "all"}, {.preload = false});
  ASSERT_TRUE(r.exited_ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "uvmem=0\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "heap=other\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "runtime_threads=0\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "ok\n")) << r.Describe();
}

TEST(PreloadTest, ProbeRunsOnUvmemsHeapUnderThePreload) {
  const Result r = RunProgram({kProbe, "all"}, {});
  ASSERT_TRUE(r.exited_ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "uvmem=1\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "heap=uvmem\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "paged=1\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "ok\n")) << r.Describe();
  EXPECT_FALSE(Contains(r.err, "uvmem:")) << r.Describe();  // no warning, no report
}

// The same checks, but the probe never calls uvmem_malloc_stats_get.
TEST(PreloadTest, ProbeRunsUnderThePreloadWithoutAskingForStatistics) {
  const Result r = RunProgram({kProbe, "nostats"}, {});
  ASSERT_TRUE(r.exited_ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "uvmem=1\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "heap=uvmem\n")) << r.Describe();
  EXPECT_FALSE(Contains(r.out, "runtime_threads=0\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "ok\n")) << r.Describe();
  EXPECT_FALSE(Contains(r.err, "uvmem:")) << r.Describe();
}

TEST(PreloadTest, HugeSizesFailCleanlyWithoutThePreload) {
  const Result r = RunProgram({kProbe, "huge"}, {.preload = false});
  EXPECT_TRUE(r.exited_ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "ok\n")) << r.Describe();
}

// malloc(SIZE_MAX), new(SIZE_MAX): NULL/ENOMEM and bad_alloc, as with glibc.
TEST(PreloadTest, HugeSizesFailCleanlyUnderThePreload) {
  const Result r = RunProgram({kProbe, "huge"}, {});
  EXPECT_TRUE(r.exited_ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "uvmem=1\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "ok\n")) << r.Describe();
}

TEST(PreloadTest, ShellPipelineUnderThePreload) {
  const Result r = RunProgram({"/bin/sh", "-c", "echo hi | cat"}, {});
  ASSERT_TRUE(r.exited_ok()) << r.Describe();
  EXPECT_EQ(r.out, "hi\n");
  EXPECT_FALSE(Contains(r.err, "uvmem:")) << r.Describe();
}

// A program exec'd by a preloaded shell (forked, so detached) gets a runtime of its own.
TEST(PreloadTest, ProgramsExecdFromAPreloadedShellGetTheirOwnRuntime) {
  const Result r =
      RunProgram({"/bin/sh", "-c", "true; " + kProbe + " nostats; echo status=$?"}, {});
  ASSERT_TRUE(r.exited_ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "uvmem=1\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "heap=uvmem\n")) << r.Describe();
  // Fault handler threads of its own: the heap is paged, not a detached copy.
  EXPECT_FALSE(Contains(r.out, "runtime_threads=0\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "runtime_threads=")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "ok\nstatus=0\n")) << r.Describe();
}

TEST(PreloadTest, Python3UnderThePreload) {
  const std::string python = "/usr/bin/python3";
  if (!Exists(python)) GTEST_SKIP() << "no " << python;
  const std::string script =
      "import ctypes, json, subprocess, threading\n"
      "lib = ctypes.CDLL(None)\n"
      "print('uvmem', hasattr(lib, 'uvmem_malloc_stats_get'))\n"
      "d = [str(i) * 10 for i in range(200000)]\n"
      "m = {i: bytes(i % 1000) for i in range(20000)}\n"
      "def work(k):\n"
      "    global total\n"
      "    x = [list(range(k, k + 100)) for _ in range(2000)]\n"
      "    assert sum(len(y) for y in x) == 200000\n"
      "ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]\n"
      "[t.start() for t in ts]\n"
      "[t.join() for t in ts]\n"
      "print('sum', sum(len(x) for x in d), sum(len(v) for v in m.values()))\n"
      "print('json', json.loads(json.dumps({'a': list(range(5))}))['a'][4])\n"
      "print('sub', subprocess.run(['/bin/echo', 'child'], capture_output=True).stdout."
      "decode().strip())\n";
  const Result r = RunProgram({python, "-c", script}, {});
  ASSERT_TRUE(r.exited_ok()) << r.Describe();
  std::uint64_t digits = 0;
  for (int i = 0; i < 200000; ++i) digits += std::to_string(i).size() * 10;
  std::uint64_t bytes = 0;
  for (int i = 0; i < 20000; ++i) bytes += i % 1000;
  EXPECT_TRUE(Contains(r.out, "uvmem True\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "sum " + std::to_string(digits) + " " + std::to_string(bytes) + "\n"))
      << r.Describe();
  EXPECT_TRUE(Contains(r.out, "json 4\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "sub child\n")) << r.Describe();
  EXPECT_FALSE(Contains(r.err, "uvmem:")) << r.Describe();
}

TEST(PreloadTest, StatsJsonFileIsWrittenByTheProcessStatsPidNames) {
  const std::string path = TempPath("stats.json");
  unlink(path.c_str());
  // "nostats": the probe itself never asks; the report at exit does.
  const Result r =
      RunProgram({kProbe, "nostats"}, {.env = {"UVMEM_STATS=" + path}, .stats_pid_is_child = true});
  ASSERT_TRUE(r.exited_ok()) << r.Describe();
  ASSERT_TRUE(Exists(path)) << r.Describe();
  const std::string json = ReadFile(path);
  EXPECT_TRUE(Contains(json, "\"faults\"")) << json;
  EXPECT_TRUE(Contains(json, "\"malloc_calls\"")) << json;
  EXPECT_TRUE(Contains(json, "\"paged\": true")) << json;
  EXPECT_TRUE(Contains(json, "\"mode\": \"paged\"")) << json;
  unlink(path.c_str());
}

TEST(PreloadTest, StatsAreNotWrittenByOtherProcesses) {
  const std::string path = TempPath("other.json");
  unlink(path.c_str());
  // Pid 1 is never the probe.
  const Result r =
      RunProgram({kProbe, "nostats"}, {.env = {"UVMEM_STATS=" + path, "UVMEM_STATS_PID=1"}});
  ASSERT_TRUE(r.exited_ok()) << r.Describe();
  EXPECT_FALSE(Exists(path));
  unlink(path.c_str());
}

TEST(PreloadTest, StatsJsonToStderr) {
  // (Not coreutils: its atexit handler closes stderr before the report is written.)
  const Result r = RunProgram({kProbe, "nostats"}, {.env = {"UVMEM_STATS=json"}});
  ASSERT_TRUE(r.exited_ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "ok\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.err, "\"faults\"")) << r.Describe();
  EXPECT_TRUE(Contains(r.err, "\"malloc_calls\"")) << r.Describe();
}

// Every program that exits normally reports, asking the runtime for its statistics while
// the heap is live; coreutils' true has a small, fresh heap at exit. Run it repeatedly.
TEST(PreloadTest, StatsReportAtExitNeverHangs) {
  const std::string path = TempPath("true.json");
  for (int i = 0; i < 30; ++i) {
    unlink(path.c_str());
    const Result r =
        RunProgram({"/bin/true"}, {.env = {"UVMEM_STATS=" + path}, .timeout_s = 20});
    ASSERT_TRUE(r.exited_ok()) << "run " << i << ": " << r.Describe();
    EXPECT_TRUE(Contains(ReadFile(path), "\"faults\"")) << "run " << i;
  }
  unlink(path.c_str());
}

TEST(PreloadTest, ABadVariableIsReportedAndTheProgramStillRuns) {
  const Result r = RunProgram({kProbe, "nostats"}, {.env = {"UVMEM_FAULT_AROUND=48"}});
  ASSERT_TRUE(r.exited_ok()) << r.Describe();
  EXPECT_TRUE(Contains(r.out, "ok\n")) << r.Describe();
  EXPECT_TRUE(Contains(r.err, "UVMEM_FAULT_AROUND=48")) << r.Describe();
  EXPECT_FALSE(Contains(r.err, "uvmem: uvmem:")) << r.Describe();  // prefixed once
}

}  // namespace
