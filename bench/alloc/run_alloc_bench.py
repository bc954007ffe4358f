#!/usr/bin/env python3
"""Runs alloc_workloads under several malloc implementations via LD_PRELOAD and compares them.

Every workload of alloc_workloads (see the top of alloc_workloads.cc) is run under every selected
allocator, --reps times, in one invocation. The allocator order is rotated on each repetition so
that machine noise is spread over all of them. For each run it records the workload's own wall
time (printed by the program, excluding process start-up) and the process's peak RSS in KiB.
The median of the repetitions is reported.

Peak RSS is the program's own VmHWM, which it prints at exit. os.wait4's ru_maxrss is recorded
too (JSON: ru_maxrss_kib) but not reported: Linux keeps the pre-exec high-water mark of the
forked child, i.e. this Python process's ~16 MiB, across exec, which swamps small workloads.
It is the fallback if the program prints no peak_rss_kib.

Allocators:
  glibc     no preload (the system malloc)
  jemalloc  libjemalloc.so.2          (Debian: libjemalloc2)
  tcmalloc  libtcmalloc_minimal.so.4  (Debian: libtcmalloc-minimal4)
  mimalloc  libmimalloc.so.2          (Debian: libmimalloc2.0)
  uvmem     --uvmem-preload, default build/lib/preload/libuvmem_preload.so
An allocator whose library is missing is skipped with a note.

Correctness: every run of a workload must print the same checksum, whatever the allocator; a
mismatch, a crash, a non-zero exit or a preload that ld.so refused is a failure (exit status 1).

Targets (for --subject, default uvmem): geometric-mean time <= 1.0x mimalloc; no workload slower
than 2x glibc; peak RSS <= 1.2x mimalloc in every workload. They are reported, and only turn into
the exit status with --check-targets (exit 2 when one is missed).

  python3 bench/alloc/run_alloc_bench.py [--reps 3] [--quick] [--allocators glibc,mimalloc,...]
      [--workloads larson,...] [--binary PATH] [--uvmem-preload PATH] [--markdown FILE]
      [--json FILE]

Standard library only. Timings are noisy on a shared machine: read the ratios, not the seconds.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIB_DIRS = [
    "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
    "/usr/local/lib",
]
# name -> (library file name, Debian package)
PEER_LIBS = {
    "jemalloc": ("libjemalloc.so.2", "libjemalloc2"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
    "mimalloc": ("libmimalloc.so.2", "libmimalloc2.0"),
}
ALL_ALLOCATORS = ["glibc", "jemalloc", "tcmalloc", "mimalloc", "uvmem"]
RESULT_RE = re.compile(r"checksum=([0-9a-f]+) elapsed_s=([0-9.]+)(?: peak_rss_kib=([0-9]+))?")

TARGET_GEOMEAN_VS_MIMALLOC = 1.0
TARGET_MAX_VS_GLIBC = 2.0
TARGET_RSS_VS_MIMALLOC = 1.2


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", help="alloc_workloads executable (default: newest build*/ copy)")
    p.add_argument("--uvmem-preload", default=str(REPO / "build/lib/preload/libuvmem_preload.so"),
                   help="uvmem's LD_PRELOAD library (default: %(default)s)")
    p.add_argument("--allocators", default=",".join(ALL_ALLOCATORS),
                   help="comma list from %s (default: all)" % ",".join(ALL_ALLOCATORS))
    p.add_argument("--workloads", help="comma list (default: every workload the program lists)")
    p.add_argument("--reps", type=int, default=3, help="runs per workload and allocator")
    p.add_argument("--quick", action="store_true", help="pass --quick (smoke test sizes)")
    p.add_argument("--scale", type=float, help="pass --scale=F to the workloads")
    p.add_argument("--subject", default="uvmem",
                   help="allocator compared with each peer and checked against the targets")
    p.add_argument("--timeout", type=float, default=600, help="seconds per run before it is killed")
    p.add_argument("--markdown", help="also write the Markdown report to this file")
    p.add_argument("--json", help="write every sample and the medians as JSON to this file")
    p.add_argument("--check-targets", action="store_true",
                   help="exit 2 if the subject misses a target")
    args = p.parse_args()
    if args.reps < 1:
        p.error("--reps must be >= 1")
    return args


def find_binary(explicit):
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            sys.exit(f"run_alloc_bench: --binary {path} does not exist")
        return path
    # Sanitizer builds (build-asan, build-tsan) would measure the sanitizer, not the allocator.
    found = [c for c in REPO.glob("build*/bench/alloc/alloc_workloads")
             if c.is_file() and "san" not in c.parts[-4]]
    if not found:
        sys.exit("run_alloc_bench: alloc_workloads not found under build*/bench/alloc/; build it "
                 "(cmake --build build --target alloc_workloads) or pass --binary")
    return max(found, key=lambda c: c.stat().st_mtime)


def find_allocators(names, uvmem_preload):
    """Returns ({name: preload path or None for glibc}, [notes about skipped allocators])."""
    found, notes = {}, []
    for name in names:
        if name == "glibc":
            found[name] = None
        elif name == "uvmem":
            path = Path(uvmem_preload)
            if path.is_file():
                found[name] = str(path.resolve())
            else:
                notes.append(f"uvmem skipped: {path} not found (build the preload library, or "
                             "pass --uvmem-preload)")
        elif name in PEER_LIBS:
            lib, package = PEER_LIBS[name]
            paths = [Path(d) / lib for d in LIB_DIRS if (Path(d) / lib).is_file()]
            if paths:
                found[name] = str(paths[0])
            else:
                notes.append(f"{name} skipped: {lib} not found in {', '.join(LIB_DIRS)} "
                             f"(apt-get install {package}, or run tools/install-deps.sh)")
        else:
            sys.exit(f"run_alloc_bench: unknown allocator '{name}'; choose from "
                     f"{','.join(ALL_ALLOCATORS)}")
    return found, notes


def package_version(name):
    package = "libc6" if name == "glibc" else PEER_LIBS.get(name, (None, None))[1]
    if package is None:
        return ""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                             capture_output=True, text=True, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""
    except OSError:
        return ""


def run_once(binary, workload, preload, extra_args, timeout):
    """Runs one workload; returns a dict with checksum, time_s, rss_kib or error."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    cmd = [str(binary), f"--workload={workload}"] + extra_args
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, rusage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # keeps Popen from waiting again
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    result = {"ru_maxrss_kib": rusage.ru_maxrss, "exit": proc.returncode}
    if "cannot be preloaded" in stderr:
        result["error"] = "ld.so refused the preload: " + stderr.strip().splitlines()[0]
    elif proc.returncode != 0:
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        result["error"] = f"exit status {proc.returncode}: {tail}"
    else:
        m = RESULT_RE.search(stdout)
        if m is None:
            result["error"] = f"no result line in output: {stdout.strip()[:200]!r}"
        else:
            result["checksum"] = m.group(1)
            result["time_s"] = float(m.group(2))
            peak = int(m.group(3) or 0)
            result["rss_kib"] = peak if peak > 0 else rusage.ru_maxrss
    return result


def geomean(values):
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def fmt_time(t):
    return "—" if t is None else f"{t:.3f}"


def fmt_rss(kib):
    return "—" if kib is None else f"{kib / 1024:.1f}"


def build_report(ctx, workloads, allocs, medians, failures, notes):
    """Returns (markdown text, {target: met or None}) from medians[(workload, alloc)]."""
    lines = []
    add = lines.append
    add("## Allocator benchmark (alloc_workloads)")
    add("")
    add(f"- date: {ctx['date']}; host: {ctx['host']}; {ctx['cpus']} CPUs; kernel {ctx['kernel']}")
    add(f"- load average before / after: {ctx['load_before']} / {ctx['load_after']}")
    add(f"- binary: `{ctx['binary']}`; workload args: `{' '.join(ctx['extra_args']) or '(none)'}`;"
        f" median of {ctx['reps']} runs, allocator order rotated each rep")
    for name in allocs:
        path = ctx["paths"][name]
        version = ctx["versions"].get(name)
        add(f"- {name}: " + ("system malloc, no preload" if path is None else f"`{path}`")
            + (f" ({version})" if version else ""))
    for note in notes:
        add(f"- note: {note}")
    add("")

    def med(w, a, key):
        return medians.get((w, a), {}).get(key)

    add("### Wall time (s) and peak RSS (MiB), median")
    add("")
    add("| workload | " + " | ".join(f"{a} s | {a} MiB" for a in allocs) + " |")
    add("|---|" + "---:|---:|" * len(allocs))
    for w in workloads:
        cells = []
        for a in allocs:
            cells += [fmt_time(med(w, a, "time_s")), fmt_rss(med(w, a, "rss_kib"))]
        add(f"| {w} | " + " | ".join(cells) + " |")
    add("")

    subject = ctx["subject"]
    peers = [a for a in allocs if a != subject]
    if subject in allocs and peers:
        add(f"### {subject} relative to each peer (time ratio / RSS ratio; < 1 is better)")
        add("")
        add("| workload | " + " | ".join(f"vs {p} time | vs {p} RSS" for p in peers) + " |")
        add("|---|" + "---:|---:|" * len(peers))
        for w in workloads:
            cells = []
            for p in peers:
                cells += [fmt_ratio(ratio(med(w, subject, "time_s"), med(w, p, "time_s"))),
                          fmt_ratio(ratio(med(w, subject, "rss_kib"), med(w, p, "rss_kib")))]
            add(f"| {w} | " + " | ".join(cells) + " |")
        add("")

    add("### Geometric means over workloads (< 1 is better)")
    add("")
    refs = [r for r in ("glibc", "mimalloc") if r in allocs]
    header = ["allocator"]
    for r in refs:
        header += [f"time vs {r}", f"RSS vs {r}"]
    if "glibc" in allocs:
        header.append("worst time vs glibc")
    add("| " + " | ".join(header) + " |")
    add("|---|" + "---:|" * (len(header) - 1))
    for a in allocs:
        row = [a]
        for r in refs:
            for key in ("time_s", "rss_kib"):
                row.append(fmt_ratio(geomean([ratio(med(w, a, key), med(w, r, key))
                                              for w in workloads])))
        if a == "glibc":
            row.append("—")
        elif "glibc" in allocs:
            worst = max(((ratio(med(w, a, "time_s"), med(w, "glibc", "time_s")), w)
                         for w in workloads
                         if ratio(med(w, a, "time_s"), med(w, "glibc", "time_s")) is not None),
                        default=(None, ""))
            row.append(f"{fmt_ratio(worst[0])} ({worst[1]})" if worst[0] else "—")
        add("| " + " | ".join(row) + " |")
    add("")

    add(f"### Targets for {subject}")
    add("")
    targets = {}
    if subject not in allocs:
        add(f"Not evaluated: {subject} was not run.")
    else:
        def verdict(ok):
            return "not evaluated" if ok is None else ("**met**" if ok else "**NOT met**")

        gm = None
        if "mimalloc" in allocs:
            gm = geomean([ratio(med(w, subject, "time_s"), med(w, "mimalloc", "time_s"))
                          for w in workloads])
        ok = None if gm is None else gm <= TARGET_GEOMEAN_VS_MIMALLOC
        targets["geomean_time_vs_mimalloc"] = ok
        add(f"- geometric-mean time ≤ {TARGET_GEOMEAN_VS_MIMALLOC}× mimalloc: {fmt_ratio(gm)} → "
            f"{verdict(ok)}")

        ok, detail = None, "glibc not run"
        if "glibc" in allocs:
            rs = {w: ratio(med(w, subject, "time_s"), med(w, "glibc", "time_s"))
                  for w in workloads}
            rs = {w: r for w, r in rs.items() if r is not None}
            if rs:
                slow = [f"{w} {fmt_ratio(r)}" for w, r in rs.items() if r > TARGET_MAX_VS_GLIBC]
                worst = max(rs, key=rs.get)
                ok = not slow
                detail = ("slower: " + ", ".join(slow)) if slow else \
                    f"worst {worst} {fmt_ratio(rs[worst])}"
        targets["max_time_vs_glibc"] = ok
        add(f"- no workload slower than {TARGET_MAX_VS_GLIBC}× glibc: {detail} → {verdict(ok)}")

        ok, detail = None, "mimalloc not run"
        if "mimalloc" in allocs:
            rs = {w: ratio(med(w, subject, "rss_kib"), med(w, "mimalloc", "rss_kib"))
                  for w in workloads}
            rs = {w: r for w, r in rs.items() if r is not None}
            if rs:
                over = [f"{w} {fmt_ratio(r)}" for w, r in rs.items() if r > TARGET_RSS_VS_MIMALLOC]
                ok = not over
                detail = (("over: " + ", ".join(over)) if over else
                          f"worst {max(rs, key=rs.get)} {fmt_ratio(max(rs.values()))}") + \
                    f"; geomean {fmt_ratio(geomean(rs.values()))}"
        targets["rss_vs_mimalloc"] = ok
        add(f"- peak RSS ≤ {TARGET_RSS_VS_MIMALLOC}× mimalloc in every workload: {detail} → "
            f"{verdict(ok)}")
    add("")

    if failures:
        add("### Failures")
        add("")
        for f in failures:
            add(f"- {f}")
        add("")
    return "\n".join(lines), targets


def loadavg():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main():
    args = parse_args()
    binary = find_binary(args.binary)
    listed = subprocess.run([str(binary), "--list"], capture_output=True, text=True, check=True)
    all_workloads = listed.stdout.split()
    workloads = args.workloads.split(",") if args.workloads else all_workloads
    unknown = [w for w in workloads if w not in all_workloads]
    if unknown:
        sys.exit(f"run_alloc_bench: unknown workload(s) {unknown}; known: {all_workloads}")
    names = [n for n in args.allocators.split(",") if n]
    paths, notes = find_allocators(names, args.uvmem_preload)
    allocs = [n for n in names if n in paths]
    for note in notes:
        print(f"run_alloc_bench: {note}", file=sys.stderr)
    if not allocs:
        sys.exit("run_alloc_bench: no allocator available")

    extra_args = (["--quick"] if args.quick else []) + \
        ([f"--scale={args.scale}"] if args.scale is not None else [])
    ctx = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
        "load_before": loadavg(), "binary": str(binary), "extra_args": extra_args,
        "reps": args.reps, "paths": paths, "subject": args.subject,
        "versions": {n: package_version(n) for n in allocs},
    }

    samples = {}  # (workload, alloc) -> [result dicts]
    failures = []
    total = args.reps * len(workloads) * len(allocs)
    done = 0
    for rep in range(args.reps):
        order = allocs[rep % len(allocs):] + allocs[:rep % len(allocs)]
        for w in workloads:
            for a in order:
                r = run_once(binary, w, paths[a], extra_args, args.timeout)
                done += 1
                samples.setdefault((w, a), []).append(r)
                status = r.get("error") or (f"{r['time_s']:.3f} s  {r['rss_kib'] / 1024:.1f} MiB"
                                            f"  checksum {r['checksum']}")
                print(f"[{done}/{total}] rep {rep + 1} {w:<13} {a:<9} {status}", file=sys.stderr,
                      flush=True)
                if "error" in r:
                    failures.append(f"{w} under {a} (rep {rep + 1}): {r['error']}")

    # Every successful run of a workload must agree on the checksum; glibc's is the reference.
    for w in workloads:
        sums = {}
        for a in allocs:
            for r in samples.get((w, a), []):
                if "checksum" in r:
                    sums.setdefault(r["checksum"], set()).add(a)
        if len(sums) > 1:
            ref = next((c for c, s in sums.items() if "glibc" in s),
                       max(sums, key=lambda c: len(sums[c])))
            bad = sorted({a for c, s in sums.items() if c != ref for a in s})
            failures.append(f"{w}: checksum mismatch: reference {ref} "
                            f"({','.join(sorted(sums[ref]))}); differing: {', '.join(bad)} "
                            f"({', '.join(c for c in sums if c != ref)})")

    medians = {}
    for (w, a), rs in samples.items():
        ok = [r for r in rs if "time_s" in r]
        if ok:
            medians[(w, a)] = {"time_s": statistics.median(r["time_s"] for r in ok),
                               "rss_kib": statistics.median(r["rss_kib"] for r in ok)}
    ctx["load_after"] = loadavg()

    report, targets = build_report(ctx, workloads, allocs, medians, failures, notes)
    print(report)
    if args.markdown:
        Path(args.markdown).write_text(report + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "context": ctx, "workloads": workloads, "allocators": allocs, "notes": notes,
            "samples": [{"workload": w, "allocator": a, **r}
                        for (w, a), rs in samples.items() for r in rs],
            "medians": [{"workload": w, "allocator": a, **m} for (w, a), m in medians.items()],
            "targets": targets, "failures": failures,
        }, indent=2) + "\n")
    if failures:
        print(f"run_alloc_bench: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    if args.check_targets and any(v is False or v is None for v in targets.values()) \
            or (args.check_targets and not targets):
        print("run_alloc_bench: a target was missed or not evaluated", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
