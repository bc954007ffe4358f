#!/usr/bin/env python3
"""Runs clone_bench several times and writes the median figures as a Markdown block for docs/benchmarks.md.

clone_bench (bench/clone/clone_bench.cc) measures, in one process, for N bytes with every 4 KiB page
present and written: uvmem's Range::Clone (and the Release of the untouched clone), fork() of a
process holding the same N bytes in ordinary anonymous memory (4 KiB pages; THP too), memcpy of
the N bytes, and the first write to each page after a clone / a fork on both sides (uvmem source
and clone, kernel parent and child), pages in order and shuffled. This driver runs it --runs times
(default 5), one run at a time, alternating which side goes first (--order), and reports for every
figure the median over runs (of each run's own median where a run repeats a measurement); the
"min" columns are the smallest value seen in any run.

Targets (the clone issue): clone time <= fork() time (4 KiB pages); first write per page after a
clone <= 3x the kernel's copy-on-write fault (uvmem source vs kernel parent, uvmem clone vs kernel
child, sequential and random). They are printed as met / NOT met; --check-targets turns a miss into
exit status 2. A verification mismatch (exit status 3 of clone_bench), a crash or any other
non-zero exit is a failure: the driver stops and exits 1, printing the run's stderr.

  python3 bench/clone/run_clone_bench.py [--bytes 1G] [--runs 5] [--reps 5] [--write-reps 1]
      [--binary build/bench/clone/clone_bench] [--markdown out.md] [--json out.json]
      [--no-alternate] [--check-targets] [--from-json SAVED.json] [-- EXTRA clone_bench FLAGS]

Standard library only. Build first:
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build build --target clone_bench
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET_CLONE_VS_FORK = 1.0
TARGET_WRITE_VS_KERNEL = 3.0


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=str(REPO / "build" / "bench" / "clone" / "clone_bench"))
    ap.add_argument("--bytes", default="1G", help="clone_bench --bytes (default 1G)")
    ap.add_argument("--runs", type=int, default=5, help="clone_bench processes, one after another")
    ap.add_argument("--reps", type=int, default=5, help="clone_bench --reps: clone/fork/memcpy per run")
    ap.add_argument("--write-reps", type=int, default=1, help="clone_bench --write_reps")
    ap.add_argument("--no-alternate", action="store_true",
                    help="always --order=kernel-first (default: alternate kernel-first/uvmem-first)")
    ap.add_argument("--markdown", help="write the Markdown block here (default: stdout only)")
    ap.add_argument("--json", help="write the per-run results and the medians here")
    ap.add_argument("--check-targets", action="store_true", help="exit 2 when a target is missed")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--from-json", help="do not run: re-render the Markdown of a file written by --json")
    ap.add_argument("extra", nargs="*", help="more clone_bench flags (after --)")
    return ap.parse_args()


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def loadavg():
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def mem_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0.0


def run_once(args, order, index):
    with tempfile.NamedTemporaryFile(prefix="clone_bench-", suffix=".json", delete=False) as tmp:
        jpath = tmp.name
    cmd = [args.binary, f"--bytes={args.bytes}", f"--reps={args.reps}", f"--write_reps={args.write_reps}",
           f"--order={order}", f"--json={jpath}"] + args.extra
    print(f"[run {index + 1}/{args.runs}] {' '.join(shlex.quote(c) for c in cmd)}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired as e:
        os.unlink(jpath)
        sys.exit(f"run {index + 1}: timed out after {args.timeout:.0f} s\nstderr:\n{(e.stderr or b'')[-4000:]}")
    elapsed = time.monotonic() - t0
    if p.returncode != 0:
        what = {3: "VERIFICATION FAILED (a side saw wrong bytes)"}.get(p.returncode, "failed")
        sig = f" (signal {-p.returncode})" if p.returncode < 0 else ""
        print(p.stdout, file=sys.stderr)
        print(p.stderr[-6000:], file=sys.stderr)
        try:
            os.unlink(jpath)
        except OSError:
            pass
        sys.exit(f"run {index + 1} (--order={order}): clone_bench exit status {p.returncode}{sig}: {what}")
    with open(jpath) as f:
        data = json.load(f)
    os.unlink(jpath)
    data["_elapsed_s"] = elapsed
    data["_stdout"] = p.stdout
    print(f"[run {index + 1}] {elapsed:.1f} s: clone {data.get('clone_ms_median', -1):.3f} ms, "
          f"fork {data.get('fork4k_ms_median', -1):.3f} ms", file=sys.stderr, flush=True)
    return data


def aggregate(runs):
    """Median over runs of every numeric figure; *_min figures take the minimum."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    med = {}
    for k in keys:
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
        if not vals:
            continue
        med[k] = min(vals) if k.endswith("_min") else statistics.median(vals)
    spread = {}
    for k in keys:
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
        if vals:
            spread[k] = (min(vals), max(vals))
    return med, spread


def fmt(v, spec=".2f"):
    return "—" if v is None else format(v, spec)


def ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def fx(v):
    return "—" if v is None else f"{v:.2f}×"


def verdict(ok):
    return "met" if ok else "**NOT met**"


def markdown(args, runs, med, spread, command, env):
    g = med.get
    out = []
    mib = int(g("bytes", 0)) >> 20
    out.append(f"Command (Release build):\n\n```sh\n{command}\n```\n")
    out.append(f"- date: {env['date']}; host: {env['host']}; {env['cpus']} CPUs ({env['cpu']}); "
               f"{env['mem']:.1f} GiB RAM; kernel {env['kernel']}")
    out.append(f"- uvmem: HEAD {env['head']}{' + uncommitted changes' if env['dirty'] else ''}; "
               f"binary `{env['binary']}`; extra flags `{' '.join(args.extra) or '(none)'}`")
    out.append(f"- load average before / after: {env['load_before']} / {env['load_after']}")
    out.append(f"- N = {mib} MiB ({int(g('pages', 0))} pages of 4 KiB), every page present and written; "
               f"{len(runs)} runs (`--order` alternated: {'no' if args.no_alternate else 'yes'}), "
               f"each with --reps={args.reps} clone+release / fork / memcpy and --write_reps={args.write_reps}; "
               f"figures are medians over runs of each run's median, min = smallest in any run")
    out.append(f"- uvmem: MOVE path {'yes' if runs[0].get('uvmem_move_path') else 'no (COPY)'}, fault-around / "
               f"CoW-around window {int(g('uvmem_fault_around_pages', 0))} pages; THP `{runs[0].get('thp_enabled', '?')}`, "
               f"THP share of the THP mapping {fmt((g('thp_share') or 0) * 100, '.0f')} %")
    out.append(f"- wall time per run {fmt(g('_elapsed_s'), '.1f')} s; peak RSS {fmt((g('peak_rss_kb') or 0) / 1024, '.0f')} MiB\n")

    fork = g("fork4k_ms_median")
    out.append("### Whole range: clone against fork() and memcpy (ms; ratio to fork() with 4 KiB pages)\n")
    out.append("| operation | median ms | min ms | runs' medians (min–max) | vs fork 4 KiB |")
    out.append("|---|---:|---:|---:|---:|")

    def row(name, key):
        m = g(key + "_median")
        if m is None:
            return
        lo, hi = spread.get(key + "_median", (None, None))
        out.append(f"| {name} | {fmt(m, '.3f')} | {fmt(g(key + '_min'), '.3f')} | {fmt(lo, '.3f')}–{fmt(hi, '.3f')} | "
                   f"{fx(ratio(m, fork))} |")

    row("uvmem `Range::Clone`", "clone_ms")
    row("uvmem `Release` of the untouched clone", "release_ms")
    row("`fork()`, 4 KiB pages (`MADV_NOHUGEPAGE`)", "fork4k_ms")
    row(f"`fork()`, THP (`MADV_HUGEPAGE`, {fmt((g('thp_share') or 0) * 100, '.0f')} % huge)", "forkthp_ms")
    row("`memcpy` of the N bytes (destination faulted in before)", "memcpy_ms")
    out.append("")

    out.append("### First write to each page after the clone / the fork (ns per page; one byte per page)\n")
    out.append("| order | uvmem source | uvmem clone | kernel parent | kernel child | source / parent | clone / child |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for o, name in (("seq", "sequential"), ("random", "random")):
        w = f"write_{o}_"
        us, uc, kp, kc = (g(w + k) for k in ("uvmem_source_ns", "uvmem_clone_ns", "kernel_parent_ns", "kernel_child_ns"))
        if us is None and kp is None:
            continue
        out.append(f"| {name} | {fmt(us, '.0f')} | {fmt(uc, '.0f')} | {fmt(kp, '.0f')} | {fmt(kc, '.0f')} | "
                   f"{fx(ratio(us, kp))} | {fx(ratio(uc, kc))} |")
    out.append("")
    extras = [
        ("memcpy, per 4 KiB page", "memcpy_ns_per_page"),
        ("kernel, THP mapping: first write after fork, sequential, parent", "write_seq_thp_parent_ns"),
        ("kernel, THP mapping: first write after fork, sequential, child", "write_seq_thp_child_ns"),
        ("uvmem: the clone's first read of each page after the source wrote them all (sequential)",
         "read_seq_uvmem_clone_after_source_ns"),
        ("uvmem: the same, random order", "read_random_uvmem_clone_after_source_ns"),
        ("uvmem: writing the source again after its clone was released", "uvmem_rewrite_ns_per_page"),
        ("kernel: writing the parent again after the child exited", "kernel_rewrite_ns_per_page"),
    ]
    out.append("| also measured | ns per page |")
    out.append("|---|---:|")
    for name, key in extras:
        if g(key) is not None:
            out.append(f"| {name} | {fmt(g(key), '.0f')} |")
    out.append("")

    trial_keys = [(o, side) for o in ("seq", "random") for side in ("source", "clone")
                  if isinstance(runs[0].get(f"write_{o}_uvmem_{side}_trials_ns_per_page"), list)]
    ntrials = min((len(runs[0][f"write_{o}_uvmem_{side}_trials_ns_per_page"]) for o, side in trial_keys), default=0)
    if ntrials > 1:
        out.append("uvmem first write by trial within a run (ns per page; median over runs of the i-th trial; "
                   "trials run source, clone, source, clone, ... each on a fresh clone):\n")
        out.append("| pass | " + " | ".join(f"trial {i + 1}" for i in range(ntrials)) + " |")
        out.append("|---|" + "---:|" * ntrials)
        for o, side in trial_keys:
            k = f"write_{o}_uvmem_{side}_trials_ns_per_page"
            vals = [statistics.median(r[k][i] for r in runs if len(r.get(k, [])) > i) for i in range(ntrials)]
            out.append(f"| {o}, uvmem {side} | " + " | ".join(f"{v:.0f}" for v in vals) + " |")
        out.append("")
    if g("cow_seq_source_faults") is not None:
        out.append("uvmem's counters for each first-write trial (median over runs): fault messages, pages per "
                   "fault round trip, copies and moves counted by the runtime (`CloneStats`).\n")
        out.append("| trial | faults | pages / fault | copies (source side) | copies (clone side) | moves |")
        out.append("|---|---:|---:|---:|---:|---:|")
    for o in ("seq", "random"):
        for side, name in (("source", "source writes"), ("clone_read_after_source", "clone reads after the source wrote"),
                           ("clone", "clone writes")):
            p = f"cow_{o}_{side}"
            if g(p + "_faults") is None:
                continue
            out.append(f"| {o}: {name} | {fmt(g(p + '_faults'), '.0f')} | {fmt(g(p + '_pages_per_fault'), '.1f')} | "
                       f"{fmt(g(p + '_rt_copies_source_side'), '.0f')} | {fmt(g(p + '_rt_copies_clone_side'), '.0f')} | "
                       f"{fmt(g(p + '_rt_cow_moves'), '.0f')} |")
    out.append("")

    out.append("### Targets\n")
    out.append("| target | measured | verdict |")
    out.append("|---|---|---|")
    cl = g("clone_ms_median")
    results = []
    if cl is not None and fork:
        ok = cl <= TARGET_CLONE_VS_FORK * fork
        results.append(ok)
        out.append(f"| clone time ≤ fork() time (4 KiB pages) | {fmt(cl, '.3f')} ms vs {fmt(fork, '.3f')} ms = "
                   f"{fmt(cl / fork)}× | {verdict(ok)} |")
    for o, name in (("seq", "sequential"), ("random", "random")):
        for u, k, uname, kname in (("uvmem_source_ns", "kernel_parent_ns", "source", "parent"),
                                   ("uvmem_clone_ns", "kernel_child_ns", "clone", "child")):
            a, b = g(f"write_{o}_{u}"), g(f"write_{o}_{k}")
            if a is None or not b:
                continue
            ok = a <= TARGET_WRITE_VS_KERNEL * b
            results.append(ok)
            out.append(f"| first write ≤ 3× kernel CoW fault, {name}, uvmem {uname} vs kernel {kname} | "
                       f"{a:.0f} vs {b:.0f} ns = {a / b:.2f}× | {verdict(ok)} |")
    out.append("")
    return "\n".join(out), results


def main():
    args = parse_args()
    if not args.from_json and not os.access(args.binary, os.X_OK):
        sys.exit(f"no executable at {args.binary}: build it first (see --help)")
    if args.runs < 1:
        sys.exit("--runs must be >= 1")
    command = "python3 bench/clone/run_clone_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    binary_shown = os.path.relpath(args.binary, REPO) if args.binary.startswith(str(REPO)) else args.binary
    env = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "mem": mem_gib(),
        "kernel": platform.release(),
        "head": sh(["git", "rev-parse", "--short", "HEAD"]) or "?",
        "dirty": bool(sh(["git", "status", "--porcelain", "--untracked-files=no"])),
        "binary": binary_shown,
        "load_before": loadavg(),
    }
    runs = []
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        env, runs = saved["env"], saved["runs"]
        command = saved.get("command", command)
        args.extra = saved.get("extra", args.extra)
        args.reps, args.write_reps = int(runs[0].get("reps", args.reps)), int(runs[0].get("write_reps", args.write_reps))
        args.no_alternate = len({r.get("order") for r in runs}) == 1 and len(runs) > 1
    else:
        for i in range(args.runs):
            order = "kernel-first" if args.no_alternate or i % 2 == 0 else "uvmem-first"
            runs.append(run_once(args, order, i))
        env["load_after"] = loadavg()
    med, spread = aggregate(runs)
    md, results = markdown(args, runs, med, spread, command, env)
    print(md)
    if args.markdown:
        Path(args.markdown).write_text(md + "\n")
        print(f"wrote {args.markdown}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "command": command, "extra": args.extra, "median": med, "runs": [
            {k: v for k, v in r.items() if k != "_stdout"} for r in runs]}, indent=1) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.check_targets and not all(results):
        sys.exit(2)


if __name__ == "__main__":
    main()
