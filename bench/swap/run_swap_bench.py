#!/usr/bin/env python3
"""Runs swap_workloads under the kernel's swap and under uvmem's, and the raw bandwidth of the disk.

For a resident budget B (--budget MiB, default 256; --quick: 64) and working sets W = 2 x B and
4 x B (--multiples), every workload of swap_workloads (seq, uniform, zipf) runs in each mode:

  kernel         plain anonymous memory in a memory cgroup limited to B (cgroup v1:
                 memory.limit_in_bytes = B, memory.memsw.limit_in_bytes left unlimited; cgroup
                 v2: memory.max = B, memory.swap.max = max), with the kernel swapping to a swap
                 file this script creates in --swap-dir (fallocate + mkswap + swapon) and
                 removes afterwards.
  uvmem          a uvmem Runtime with budget_bytes = B and swap_path = --swap-dir (the same file
                 system), in its own memory cgroup with no limit: not constrained by the kernel,
                 only observed (its peak charge and page cache are reported next to B).
  uvmem-limited  the same, its cgroup limited to B + --uvmem-limit-slack MiB (default 48): the
                 budget, the pool's slack, metadata and program, and whatever page cache its swap
                 file keeps, all under one limit — the kernel mode's footing. The kernel may not
                 swap this group's anonymous memory (v1: memsw limit = memory limit, swappiness
                 0; v2: memory.swap.max = 0): only the page cache is the kernel's to reclaim. (uvmem's swap file
                 is written with buffered I/O: without a limit, its pages can stay in the page
                 cache and a "swap-in" never reaches the disk. The report marks such figures.)

Raw bandwidth (swap_workloads --mode=raw) of the same file system is measured before and after
the runs: O_DIRECT sequential write and read of a --raw-mib file in 1 MiB requests, a read+write
mix, and 4 KiB random reads at queue depth 1. The higher of the two measurements is the ceiling.

Everything is undone in a finally block (and on SIGINT/SIGTERM/SIGHUP): the benchmark process
still running is killed (by its pid), the swap file is swapoff'd and deleted, the cgroups are
removed. Names carry the driver's pid (swap file uvmem-swapbench-PID.swap, swapon priority 100;
cgroups uvmem-swapbench-PID and uvmem-swapbench-uvmem-PID), so a run never touches another's;
those of a run whose pid is gone (SIGKILL) are removed at start. Runs are serialised by an flock
on /run/lock/uvmem-swapbench.lock: a second run waits for the first.

The cgroups are made as children of this script's own memory cgroup (so the processes stay
where the machine's process tracking expects them); --cgroup-parent picks another parent (e.g.
the root of the hierarchy).

Targets (issue 6): seq: uvmem >= 2x the kernel's throughput and >= 70% of the raw sequential
read bandwidth; uniform and zipf: uvmem >= 1x the kernel. They are printed as met / NOT met;
--check-targets turns a miss into exit status 2. A data mismatch, a crash or a non-zero exit of
any run is a failure (exit status 1).

  sudo python3 bench/swap/run_swap_bench.py [--quick | --budget 256] [--multiples 2,4]
      [--workloads seq,uniform,zipf] [--modes kernel,uvmem,uvmem-limited] [--swap-dir /var/tmp]
      [--uvmem-limit-slack 32] [--reps 1]
      [--markdown FILE] [--json FILE] [--binary PATH]

Standard library only. Root is required (swapon, cgroups).
"""

import argparse
import datetime
import json
import os
import fcntl
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Names carry the driver's pid, so that runs never touch each other's swap file or cgroups;
# leftovers of a run whose pid is gone (killed with SIGKILL) are removed at start.
PID = os.getpid()
SWAP_RE = re.compile(r"^uvmem-swapbench-(\d+)\.swap$")
CG_RE = re.compile(r"^uvmem-swapbench(?:-uvmem)?-(\d+)$")
SWAP_NAME = "uvmem-swapbench-%d.swap" % PID
CG_KERNEL = "uvmem-swapbench-%d" % PID
CG_UVMEM = "uvmem-swapbench-uvmem-%d" % PID
SWAP_PRIORITY = 100  # above any other swap area, so the kernel mode swaps to this file
LOCK_PATH = "/run/lock/uvmem-swapbench.lock" if os.path.isdir("/run/lock") else "/tmp/uvmem-swapbench.lock"
MiB = 1 << 20
ALL_WORKLOADS = ["seq", "uniform", "zipf"]
TARGET_SEQ_VS_KERNEL = 2.0
TARGET_SEQ_VS_RAW = 0.70
TARGET_RANDOM_VS_KERNEL = 1.0


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", help="swap_workloads executable (default: newest build*/ copy)")
    p.add_argument("--budget", type=int, help="budget B in MiB (default 256; --quick: 64)")
    p.add_argument("--quick", action="store_true",
                   help="budget 64 MiB, raw file 256 MiB, 2 s of random reads")
    p.add_argument("--multiples", default="2,4", help="working sets as multiples of B")
    p.add_argument("--workloads", default=",".join(ALL_WORKLOADS))
    p.add_argument("--modes", default="kernel,uvmem,uvmem-limited",
                   help="kernel, uvmem (no memory limit), uvmem-limited (cgroup limit B + "
                   "--uvmem-limit-slack); default all three")
    p.add_argument("--reps", type=int, default=1, help="runs per cell; the median is reported")
    p.add_argument("--swap-dir", default=os.environ.get("TMPDIR") or "/var/tmp",
                   help="directory of both swap files and the raw test ($TMPDIR, else /var/tmp)")
    p.add_argument("--swap-size", type=int, help="kernel swap file in MiB (default 2 x max W)")
    p.add_argument("--raw-mib", type=int, help="raw test file in MiB (default 1024; quick 256)")
    p.add_argument("--no-raw", action="store_true", help="skip the raw bandwidth measurement")
    p.add_argument("--cgroup-parent", help="memory cgroup directory to create the cgroups in "
                   "(default: this process's own memory cgroup)")
    p.add_argument("--timeout", type=int, default=1200, help="seconds per run before it is killed")
    p.add_argument("--args", default="", help="extra arguments for every workload run "
                   "(e.g. '--passes=2 --accesses_per_page=1')")
    p.add_argument("--uvmem-limit-slack", type=int, default=48,
                   help="mode uvmem-limited: the uvmem process's cgroup is limited to B + this "
                   "many MiB (its pool slack, metadata, program; the page cache of its swap file "
                   "must fit there too). Default %(default)s")
    p.add_argument("--uvmem-args", default="", help="extra arguments for uvmem runs only")
    p.add_argument("--markdown", help="also write the report to this file")
    p.add_argument("--json", help="write every run's JSON to this file")
    p.add_argument("--check-targets", action="store_true", help="exit 2 when a target is missed")
    return p.parse_args()


def find_binary(explicit):
    if explicit:
        return Path(explicit)
    found = sorted(REPO.glob("build*/bench/swap/swap_workloads"),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    if not found:
        sys.exit("swap_workloads not built: cmake --build build --target swap_workloads")
    return found[0]


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), (r.stderr or r.stdout).strip()))
    return r


def read(path, default=""):
    try:
        return Path(path).read_text()
    except OSError:
        return default


# ---- cgroups -----------------------------------------------------------------------------

class Cgroups:
    """Memory cgroups, v1 (/sys/fs/cgroup/memory) or v2 (a cgroup2 mount with the memory
    controller). Creates children of `parent`; remembers what it made to remove it."""

    def __init__(self, parent=None):
        self.version, self.root = self._find_hierarchy()
        if parent:
            self.parent = Path(parent)
        else:
            self.parent = self.root / self._own_path().lstrip("/")
        if not self.parent.is_dir():
            raise RuntimeError("cgroup parent %s does not exist" % self.parent)
        if self.version == 2:
            controllers = read(self.parent / "cgroup.subtree_control").split()
            if "memory" not in controllers:
                (self.parent / "cgroup.subtree_control").write_text("+memory")
        self.made = []

    @staticmethod
    def _find_hierarchy():
        v1 = Path("/sys/fs/cgroup/memory")
        if (v1 / "memory.limit_in_bytes").exists():
            return 1, v1
        # Not mounted: try mounting the v1 memory controller there (fails when v2 owns it).
        if v1.is_dir() or Path("/sys/fs/cgroup").is_dir():
            try:
                v1.mkdir(exist_ok=True)
                if subprocess.run(["mount", "-t", "cgroup", "-o", "memory", "cgroup", str(v1)],
                                  capture_output=True).returncode == 0:
                    log("mounted the cgroup v1 memory controller at %s" % v1)
                    return 1, v1
            except OSError:
                pass
        for line in read("/proc/mounts").splitlines():
            f = line.split()
            if len(f) > 2 and f[2] == "cgroup2":
                root = Path(f[1])
                if "memory" in read(root / "cgroup.controllers").split():
                    return 2, root
        raise RuntimeError("no memory cgroup controller: neither cgroup v1 at "
                           "/sys/fs/cgroup/memory nor a cgroup2 mount with 'memory'")

    def _own_path(self):
        for line in read("/proc/self/cgroup").splitlines():
            num, ctl, path = line.split(":", 2)
            if self.version == 1 and "memory" in ctl.split(","):
                return path
            if self.version == 2 and num == "0":
                return path
        return "/"

    def create(self, name, limit_bytes=None, kernel_swap=True):
        """A fresh cgroup `name`, limited to `limit_bytes` if given. kernel_swap: the kernel
        may swap the group's anonymous memory out (the kernel mode); False: it may not
        (uvmem-limited, whose anonymous memory is uvmem's to page: only the page cache of its
        swap file is the kernel's to reclaim)."""
        d = self.parent / name
        if d.exists():
            self.remove(d)  # left by a killed run
        d.mkdir()
        self.made.append(d)
        if limit_bytes is not None:
            if self.version == 1:
                (d / "memory.limit_in_bytes").write_text(str(limit_bytes))
                # memsw (memory + swap): unlimited lets the kernel swap freely; equal to the
                # memory limit leaves no room for swap.
                if not kernel_swap:
                    (d / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
                    (d / "memory.swappiness").write_text("0")
            else:
                (d / "memory.max").write_text(str(limit_bytes))
                (d / "memory.swap.max").write_text("max" if kernel_swap else "0")
        return d

    def remove(self, d):
        d = Path(d)
        for _ in range(50):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                # Still has tasks (exiting) or charges being moved: wait a little.
                time.sleep(0.1)
        else:
            log("WARNING: could not remove cgroup %s" % d)
            return
        if d in self.made:
            self.made.remove(d)

    def cleanup(self):
        for d in list(reversed(self.made)):
            self.remove(d)


# ---- swap file ---------------------------------------------------------------------------

def active_swaps():
    return [line.split()[0] for line in read("/proc/swaps").splitlines()[1:] if line.strip()]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_dead_leftovers(swap_dir, cgroups):
    """Swap files and cgroups of earlier runs whose driver is gone (SIGKILL, a crash)."""
    candidates = set(active_swaps())
    candidates.update(str(p) for p in Path(swap_dir).glob("uvmem-swapbench-*.swap"))
    for path in sorted(candidates):
        m = SWAP_RE.match(Path(path).name)
        if m and int(m.group(1)) != PID and not pid_alive(int(m.group(1))):
            log("removing a swap file left by a dead run: %s" % path)
            swap_off(path)
    if cgroups is not None:
        for d in cgroups.parent.glob("uvmem-swapbench*"):
            m = CG_RE.match(d.name)
            if m and int(m.group(1)) != PID and not pid_alive(int(m.group(1))):
                log("removing a cgroup left by a dead run: %s" % d)
                cgroups.remove(d)


def swap_on(path, size_mib):
    path = Path(path)
    sh("fallocate", "-l", "%dM" % size_mib, str(path))
    os.chmod(path, 0o600)
    sh("mkswap", str(path))
    sh("swapon", "-p", str(SWAP_PRIORITY), str(path))


def swap_off(path):
    path = Path(path)
    if str(path) in active_swaps():
        r = sh("swapoff", str(path), check=False)
        if r.returncode != 0:
            log("WARNING: swapoff %s failed: %s" % (path, r.stderr.strip()))
    if path.exists() and str(path) not in active_swaps():
        path.unlink()


# ---- runs ----------------------------------------------------------------------------------

class Runner:
    def __init__(self, binary, timeout):
        self.binary = binary
        self.timeout = timeout
        self.child = None

    def run(self, args, cgroup_dir=None):
        cmd = [str(self.binary)] + args
        procs = None
        if cgroup_dir is not None:
            procs = str(Path(cgroup_dir) / "cgroup.procs")

        def enter():
            if procs:
                with open(procs, "w") as f:
                    f.write(str(os.getpid()))

        log("$ %s%s" % (" ".join(cmd), "   (in %s)" % cgroup_dir if cgroup_dir else ""))
        t0 = time.time()
        self.child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, preexec_fn=enter)
        try:
            out, err = self.child.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return {"error": "timed out after %d s" % self.timeout, "cmd": cmd}
        rc = self.child.returncode
        self.child = None
        wall = time.time() - t0
        result = None
        for line in out.splitlines():
            if line.startswith("{"):
                try:
                    result = json.loads(line)
                except ValueError:
                    pass
        tail = "\n".join(err.strip().splitlines()[-15:])
        if rc != 0 or result is None:
            why = ("killed by signal %d" % -rc) if rc < 0 else ("exit status %d" % rc)
            return {"error": why, "stderr": tail, "cmd": cmd, "result": result}
        result["wall_s"] = wall
        mism = [l for l in err.splitlines() if l.startswith("MISMATCH")]
        if mism:
            result["mismatch_lines"] = mism[:10]
        return result

    def kill(self):
        if self.child is not None and self.child.poll() is None:
            self.child.kill()  # our own child, by its pid
            try:
                self.child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.child = None


def median_run(runs, key):
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0] if runs else None
    ok.sort(key=lambda r: r.get(key, 0))
    return ok[len(ok) // 2]


# ---- report --------------------------------------------------------------------------------

def fmt_tput(r, workload):
    if r is None or "error" in r:
        return "FAILED" if r is not None else "—"
    if workload == "seq":
        return "%.0f MB/s" % r["mb_per_s"]
    return "%.1f k/s" % (r["accesses_per_s"] / 1e3)


def from_cache(r):
    """True when uvmem swapped in far more than the disk read: the page cache served it."""
    if r is None or "error" in r:
        return False
    swapped_in = r.get("uvmem_timed_bytes_read", 0)
    read = r.get("process_read_bytes", r.get("disk_read_bytes", 0))
    return swapped_in > (64 << 20) and read < swapped_in / 2


def disturbed(r):
    """True when the disk read far more than this process did: other I/O shared the disk."""
    if r is None or "error" in r or "process_read_bytes" not in r:
        return False
    return r.get("disk_read_bytes", 0) > 1.5 * r["process_read_bytes"] + (64 << 20)


def tput(r, workload):
    if r is None or "error" in r:
        return None
    return r["mb_per_s"] if workload == "seq" else r["accesses_per_s"]


def us(ns):
    return "%.0f" % (ns / 1e3) if ns >= 10e3 else "%.1f" % (ns / 1e3)


def lat(r, p50, p99):
    if r is None or "error" in r or not r.get(p50):
        return "—"
    return "%s / %s" % (us(r[p50]), us(r[p99]))


def machine_lines(args, budget, binary, raw_runs, load_before, load_after, swap_size):
    cpu = ""
    for line in read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    dev = sh("findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", args.swap_dir, check=False).stdout.strip()
    lines = [
        "- date: %s; host: %s; %d CPUs (%s); %.1f GiB RAM; kernel %s" % (
            datetime.datetime.now().isoformat(timespec="seconds"), platform.node(),
            os.cpu_count(), cpu, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
            platform.release()),
        "- load average before / after: %s / %s" % (load_before, load_after),
        "- swap dir: `%s` on %s; kernel swap file %d MiB; vm.page-cluster=%s, cgroup "
        "swappiness %s; THP %s (kernel-mode mapping MADV_NOHUGEPAGE)" % (
            args.swap_dir, dev or "?", swap_size, read("/proc/sys/vm/page-cluster").strip(),
            read("/proc/sys/vm/swappiness").strip(),
            read("/sys/kernel/mm/transparent_hugepage/enabled").strip()),
        "- budget B = %d MiB; binary `%s`; extra args `%s`, uvmem `%s`; modes %s; "
        "%s" % (
            budget, binary, args.args or "(none)", args.uvmem_args or "(none)", args.modes,
            "median of %d runs" % args.reps if args.reps % 2 else
            "the upper median of %d runs (the faster of two)" % args.reps if args.reps == 2 else
            "the upper median of %d runs" % args.reps),
    ]
    for i, raw in enumerate(raw_runs):
        if "error" in raw:
            lines.append("- raw bandwidth (%s): FAILED %s" % (("before", "after")[i], raw["error"]))
            continue
        lines.append(
            "- raw O_DIRECT bandwidth (%s): seq write %.0f MB/s, seq read %.0f MB/s, read+write "
            "mix %.0f MB/s read (+ as much written), 4 KiB random read QD1 %.0f IOPS, "
            "p50 %s us, p99 %s us" % (
                ("before", "after")[i], raw["seq_write_mb_per_s"], raw["seq_read_mb_per_s"],
                raw["rw_mix_read_mb_per_s"], raw["rand4k_read_iops"],
                us(raw["rand4k_read_p50_ns"]), us(raw["rand4k_read_p99_ns"])))
    return lines


UVMEM_VARIANTS = ("uvmem", "uvmem-limited")


def variant_title(mode, limit_mib):
    if mode == "uvmem":
        return "uvmem with no memory limit (its process in a cgroup without a limit, observed)"
    return ("uvmem held to %d MiB (its process in a cgroup limited to B + %d MiB: its budget, pool "
            "slack, metadata and the page cache of its swap file all in that limit)" % (
                limit_mib[0], limit_mib[1]))


def report(args, budget, multiples, workloads, cells, raw_runs, meta, limit_mib):
    ok_raw = [r for r in raw_runs if "error" not in r]
    raw_read = max((r["seq_read_mb_per_s"] for r in ok_raw), default=None)
    raw_mix = max((r["rw_mix_read_mb_per_s"] for r in ok_raw), default=None)
    variants = [v for v in UVMEM_VARIANTS if any(key[2] == v for key in cells)] or ["uvmem"]
    out = []
    out += meta
    out.append("")
    out.append("Throughput: seq = MB/s of pages touched (each page read and written, 4 KiB); "
               "uniform / zipf = thousand accesses per second. Access latency (us, p50 / p99) = "
               "every timed access; page-in = the sampled accesses (1 in 8) that mincore() found "
               "not resident just before, timed the same way in both modes; uvmem swap-in = the "
               "runtime's own histogram (fault to page mapped; bucket bounds, ±25 %). "
               "% of raw = seq MB/s over the raw O_DIRECT sequential read bandwidth.")
    verdicts = []
    failures = []
    notes = set()
    for w in workloads:
        for m in multiples:
            for mode in ("kernel",) + UVMEM_VARIANTS:
                r = cells.get((w, m, mode))
                if r is None:
                    continue
                if "error" in r:
                    failures.append("%s %s %d×: %s\n%s" % (w, mode, m, r["error"], r.get("stderr", "")))
                elif r.get("mismatches", 0) or r.get("verify_bad_pages", 0):
                    failures.append("%s %s %d×: %d data mismatches (%d bad pages)" % (
                        w, mode, m, r.get("mismatches", 0), r.get("verify_bad_pages", 0)))
    for variant in variants:
        out.append("")
        out.append("Kernel against %s:" % variant_title(variant, limit_mib))
        out.append("")
        out.append("| workload | W/B | kernel | uvmem | uvmem/kernel | uvmem % of raw | access p50/p99 us kernel | access p50/p99 us uvmem | page-in p50/p99 us kernel | page-in p50/p99 us uvmem | uvmem swap-in p50/p99 us | mismatches k/u |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for w in workloads:
            for m in multiples:
                k = cells.get((w, m, "kernel"))
                u = cells.get((w, m, variant))
                tk, tu = tput(k, w), tput(u, w)
                ratio = "%.2f×" % (tu / tk) if tk and tu else "—"
                pct = "%.0f %%" % (100 * tu / raw_read) if (w == "seq" and tu and raw_read) else ""
                mm = "%s / %s" % (k.get("mismatches", "—") if k and "error" not in k else "—",
                                  u.get("mismatches", "—") if u and "error" not in u else "—")
                cached = from_cache(u)
                if cached:
                    notes.add("†")
                du = disturbed(u)  # uvmem only: its O_DIRECT reads are all charged to it
                if du:
                    notes.add("‡")
                out.append("| %s | %d× | %s | %s%s%s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    w, m, fmt_tput(k, w), fmt_tput(u, w),
                    " †" if cached else "", " ‡" if du else "", ratio, pct,
                    lat(k, "access_p50_ns", "access_p99_ns"), lat(u, "access_p50_ns", "access_p99_ns"),
                    lat(k, "pagein_p50_ns", "pagein_p99_ns"), lat(u, "pagein_p50_ns", "pagein_p99_ns"),
                    lat(u, "uvmem_swapin_p50_ns", "uvmem_swapin_p99_ns"), mm))
                label = "%s, W = %d× B, %s" % (w, m, variant)
                if not (tk and tu):
                    verdicts.append((label, "no figure for one side", None))
                    continue
                first = len(verdicts)
                if w == "seq":
                    v = tu / tk >= TARGET_SEQ_VS_KERNEL
                    verdicts.append((label, "≥ %.0f× kernel: %.3f×" % (TARGET_SEQ_VS_KERNEL, tu / tk), v))
                    if raw_read:
                        v = tu >= TARGET_SEQ_VS_RAW * raw_read
                        verdicts.append((label, "≥ %.0f %% of raw read bandwidth (%.0f MB/s): %.0f %%"
                                         " (%.0f %% of the raw read+write mix, %.0f MB/s)" % (
                                             100 * TARGET_SEQ_VS_RAW, raw_read, 100 * tu / raw_read,
                                             100 * tu / raw_mix, raw_mix), v))
                else:
                    v = tu / tk >= TARGET_RANDOM_VS_KERNEL
                    verdicts.append((label, "≥ %.0f× kernel: %.3f×" % (TARGET_RANDOM_VS_KERNEL, tu / tk), v))
                if cached:  # a page-cache figure says nothing about swap: no verdict
                    for i in range(first, len(verdicts)):
                        vl, text, _ = verdicts[i]
                        verdicts[i] = (vl, text + " (uvmem served from the page cache †)", "cache")

    if "‡" in notes:
        out.append("")
        out.append("‡ the block device read over 1.5× what the uvmem process read during its timed "
                   "phase (its O_DIRECT reads are charged to it; on a quiet disk the device reads "
                   "at most ≈1.4× that): another process's I/O shared the disk (a build, a test), "
                   "and the figure is likely low. See the process / "
                   "disk read columns below. (Not applied to kernel rows: in every kernel row of "
                   "the runs so far the device read more than the kernel charged to the process, "
                   "so other I/O cannot be told from the kernel's own.)")
    if "†" in notes:
        out.append("")
        out.append("† uvmem's swap-ins were served from the page cache, not the disk: the process "
                   "read from storage less than half of the bytes uvmem swapped in during the timed phase "
                   "(uvmem writes its swap file with buffered I/O, and with memory to spare the "
                   "kernel keeps the file's pages in memory). Such a figure measures copies from "
                   "memory, not swap: no verdict is drawn from it. See the cache column below.")
    # Details: what each side did.
    out.append("")
    out.append("Details (timed phase): MB the process read from storage (/proc/self/io "
               "read_bytes: its O_DIRECT reads, or the kernel's swap-ins on its behalf), MB read / "
               "written on the block device (device counters: other processes' I/O included), swap-ins "
               "(kernel pswpin; uvmem pages_swapped_in), peak RSS (VmHWM), peak charge of the "
               "process's cgroup (kernel: limited to B) and the page cache in it at the end of "
               "the timed phase, pages the kernel swapped out (pswpout: for uvmem runs, of the "
               "uvmem process itself — should be 0), and for uvmem its readahead pages / hits, "
               "direct reclaims and peak frames used (range pages + metadata).")
    out.append("")
    out.append("| workload | W/B | mode | s | process read MB | disk read MB | disk written MB | swap-ins | peak RSS MiB | cgroup peak MiB | cache MiB | kernel pswpout | readahead / hits | direct reclaims | peak frames MiB |")
    out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for w in workloads:
        for m in multiples:
            for mode in ("kernel",) + UVMEM_VARIANTS:
                r = cells.get((w, m, mode))
                if r is None or "error" in r:
                    continue
                uv = mode != "kernel"
                swapins = r.get("uvmem_timed_pages_swapped_in", 0) if uv else r.get("kernel_pswpin", 0)
                ra = ("%d / %d" % (r.get("uvmem_timed_readahead_pages", 0),
                                   r.get("uvmem_timed_readahead_hits", 0)) if uv else "")
                dr = str(r.get("uvmem_timed_direct_reclaims", "")) if uv else ""
                pf = ("%.0f" % (r.get("uvmem_peak_used_frames", 0) * 4096 / MiB)) if uv else ""
                out.append("| %s | %d× | %s | %.1f | %.0f | %.0f | %.0f | %d | %.0f | %.0f | %.0f | %d | %s | %s | %s |" % (
                    w, m, mode, r["seconds"], r.get("process_read_bytes", 0) / 1e6,
                    r.get("disk_read_bytes", 0) / 1e6,
                    r.get("disk_written_bytes", 0) / 1e6, swapins, r.get("vm_hwm_kib", 0) / 1024,
                    r.get("cgroup_peak_bytes", 0) / MiB, r.get("cgroup_cache_bytes", 0) / MiB,
                    r.get("kernel_pswpout", 0), ra, dr, pf))

    out.append("")
    out.append("Targets (issue 6):")
    out.append("")
    for label, text, v in verdicts:
        mark = {True: "**met**", False: "**NOT met**", None: "**not measured**",
                "cache": "**not comparable**"}[v]
        out.append("- %s — %s → %s" % (label, text, mark))
    if failures:
        out.append("")
        out.append("FAILURES:")
        out.append("")
        for f in failures:
            out.append("    " + f.replace("\n", "\n    "))
    missed = any(v is False for _, _, v in verdicts)
    return "\n".join(out) + "\n", bool(failures), missed


# ---- main ----------------------------------------------------------------------------------

class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted("signal %d" % signum)


def main():
    args = parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: swapon and memory cgroups need it")
    budget = args.budget or (64 if args.quick else 256)
    multiples = [int(x) for x in args.multiples.split(",") if x]
    workloads = [w for w in args.workloads.split(",") if w]
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in ("kernel",) + UVMEM_VARIANTS:
            sys.exit("unknown mode %r (kernel, uvmem, uvmem-limited)" % m)
    limit_slack = args.uvmem_limit_slack
    raw_mib = args.raw_mib or (256 if args.quick else 1024)
    binary = find_binary(args.binary)
    swap_dir = Path(args.swap_dir).resolve()
    args.swap_dir = str(swap_dir)
    swap_size = args.swap_size or 2 * max(multiples) * budget
    swap_file = swap_dir / SWAP_NAME
    busy = sum(int(sh("pgrep", "-c", "-x", name, check=False).stdout.strip() or 0)
               for name in ("cc1plus", "ninja", "ld", "collect2", "make"))
    if busy:
        log("WARNING: %s compiler/linker processes running: timings will be noisy" % busy)
    others = [s for s in active_swaps() if s != str(swap_file)]
    if others:
        log("WARNING: other swap areas are active (%s); this run's file gets priority %d, "
            "so the kernel uses it first" % (others, SWAP_PRIORITY))

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    runner = Runner(binary, args.timeout)
    cgroups = None
    swap_made = False
    cells, all_runs, raw_runs = {}, [], []
    load_before = " ".join(read("/proc/loadavg").split()[:3])
    lock = open(LOCK_PATH, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("another run_swap_bench.py holds %s: waiting for it to finish (two runs at once "
            "would swap to the same disk and skew each other)" % LOCK_PATH)
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        cgroups = Cgroups(args.cgroup_parent)
        log("memory cgroups: v%d, under %s" % (cgroups.version, cgroups.parent))
        remove_dead_leftovers(swap_dir, cgroups)
        if not args.no_raw:
            raw_runs.append(runner.run(["--mode=raw", "--swap_path=%s" % swap_dir,
                                        "--raw_mib=%d" % raw_mib,
                                        "--raw_random_seconds=%d" % (2 if args.quick else 5)]))
            log(json.dumps(raw_runs[-1]))
        if "kernel" in modes:
            swap_made = True
            swap_on(swap_file, swap_size)
            log("swapon %s (%d MiB)" % (swap_file, swap_size))
        extra = args.args.split()
        for rep in range(args.reps):
            for w in workloads:
                for m in multiples:
                    order = modes if rep % 2 == 0 else list(reversed(modes))
                    for mode in order:
                        a = ["--mode=%s" % mode, "--workload=%s" % w, "--ws_mib=%d" % (m * budget),
                             "--budget_mib=%d" % budget, "--swap_path=%s" % swap_dir,
                             "--seed=%d" % (rep + 1)] + extra
                        if mode == "kernel":
                            cg = cgroups.create(CG_KERNEL, budget * MiB)
                        else:
                            a[0] = "--mode=uvmem"
                            a += args.uvmem_args.split()
                            cg = cgroups.create(CG_UVMEM, (budget + limit_slack) * MiB
                                                if mode == "uvmem-limited" else None,
                                                kernel_swap=False)
                        try:
                            r = runner.run(a, cg)
                        finally:
                            cgroups.remove(cg)
                        r.update({"rep": rep, "multiple": m, "variant": mode})
                        all_runs.append(r)
                        if "error" in r:
                            log("FAILED: %s\n%s" % (r["error"], r.get("stderr", "")))
                        else:
                            log("  %s %s W=%d×B: %.1f s, %s, mismatches %d" % (
                                mode, w, m, r["seconds"], fmt_tput(r, w), r["mismatches"]))
                        cells.setdefault((w, m, mode), []).append(r)
        if not args.no_raw:
            raw_runs.append(runner.run(["--mode=raw", "--swap_path=%s" % swap_dir,
                                        "--raw_mib=%d" % raw_mib,
                                        "--raw_random_seconds=%d" % (2 if args.quick else 5)]))
            log(json.dumps(raw_runs[-1]))
    except (KeyboardInterrupt, Interrupted) as e:
        log("interrupted (%s): cleaning up" % e)
        runner.kill()
        raise SystemExit(130)
    finally:
        runner.kill()
        if cgroups is not None:
            cgroups.cleanup()
        if swap_made or str(swap_file) in active_swaps() or swap_file.exists():
            swap_off(swap_file)
            log("swapoff %s, removed" % swap_file)
        left = [s for s in active_swaps() if s == str(swap_file)]
        if left:
            log("WARNING: swap still active: %s" % left)

    load_after = " ".join(read("/proc/loadavg").split()[:3])
    med = {}
    for key, runs in cells.items():
        med[key] = median_run(runs, "mb_per_s")
    meta = machine_lines(args, budget, binary, raw_runs, load_before, load_after, swap_size)
    text, failed, missed = report(args, budget, multiples, workloads, med, raw_runs, meta,
                                  (budget + limit_slack, limit_slack))
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"raw": raw_runs, "runs": all_runs}, indent=1))
    if failed:
        return 1
    if missed and args.check_targets:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
