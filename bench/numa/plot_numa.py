#!/usr/bin/env python3
"""Plots numa_bench's CSV as an SVG: bandwidth and latency by NUMA placement.

Two panels: left, bandwidth in GB/s grouped by test and placement (memset, memcpy,
triad × local, remote, interleave), one bar per provider; right, pointer-chase latency in
ns per load by placement, one bar per provider. A placement that numa_bench found wrong
(the "placement_ok" rows of the CSV are 0: pages not on the intended nodes, or an
interleave that is not spread) is hatched and named under the title.

    plot_numa.py numa.csv numa.svg [--json numa.json] [--title TEXT] [--min-fraction 0.99]

The output's format follows its extension (numa.png works too).

--json (numa_bench's --json output) adds the run's size, repetitions, threads and kernel
under the title. Needs matplotlib (Debian: apt-get install python3-matplotlib).
"""
import argparse
import csv
import json
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("plot_numa.py needs matplotlib: apt-get install python3-matplotlib "
             "(or run this script with the python that has it, e.g. /usr/bin/python3)")

TESTS = ["memset", "memcpy", "triad"]
PLACEMENTS = ["local", "remote", "interleave"]
COLORS = {"kernel": "#4c72b0", "uvmem": "#dd8452"}


def read_rows(path):
    """{(provider, placement): {"memory_nodes", "cpu_node", test: value}} from the CSV."""
    rows = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            key = (r["provider"], r["placement"])
            d = rows.setdefault(key, {"memory_nodes": r["memory_nodes"], "cpu_node": r["cpu_node"]})
            d[r["test"]] = float(r["value"])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("svg")
    ap.add_argument("--json", help="numa_bench --json output: run parameters for the subtitle")
    ap.add_argument("--title", default="numa_bench: bandwidth and latency by NUMA placement")
    ap.add_argument("--min-fraction", type=float, default=0.99,
                    help="CSVs without placement_ok rows: a placement with fewer pages on its "
                         "nodes is marked wrong (numa_bench's default)")
    args = ap.parse_args()

    rows = read_rows(args.csv)
    if not rows:
        sys.exit(f"{args.csv}: no rows")
    providers = [p for p in COLORS if any(k[0] == p for k in rows)]
    providers += sorted({k[0] for k in rows} - set(providers))
    placements = [p for p in PLACEMENTS if any(k[1] == p for k in rows)]
    cpu_node = next(iter(rows.values()))["cpu_node"]

    def wrong(key):  # numa_bench's verdict; older CSVs have only the fraction
        r = rows.get(key, {})
        if "placement_ok" in r:
            return r["placement_ok"] == 0
        return "placement" in r and r["placement"] < args.min_fraction

    def label(pl):
        nodes = next((rows[k]["memory_nodes"] for k in rows if k[1] == pl), "?")
        return f"{pl}\n(node {nodes})"

    plt.rcParams["svg.hashsalt"] = "numa_bench"  # stable ids: the same CSV gives the same SVG
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable
    fig, (ax_bw, ax_lat) = plt.subplots(
        1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [max(3 * len(placements), 2), max(len(placements), 1) + 1]})
    width = 0.8 / len(providers)

    # Bandwidth: groups test × placement.
    groups = [(t, pl) for t in TESTS for pl in placements]
    for i, prov in enumerate(providers):
        xs, ys, hatches = [], [], []
        for g, (t, pl) in enumerate(groups):
            v = rows.get((prov, pl), {}).get(t)
            if v is None or v < 0:
                continue
            xs.append(g + (i - (len(providers) - 1) / 2) * width)
            ys.append(v)
            hatches.append("xx" if wrong((prov, pl)) else "")
        bars = ax_bw.bar(xs, ys, width, label=prov, color=COLORS.get(prov, None), edgecolor="black", linewidth=0.5)
        for b, h, y in zip(bars, hatches, ys):
            b.set_hatch(h)
            ax_bw.annotate(f"{y:.1f}", (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom", fontsize=7)
    ax_bw.set_xticks(range(len(groups)))
    ax_bw.set_xticklabels([f"{t}\n{pl}" for t, pl in groups], fontsize=8)
    for k in range(1, len(TESTS)):
        ax_bw.axvline(k * len(placements) - 0.5, color="grey", linewidth=0.5)
    ax_bw.set_ylabel("GB/s")
    ax_bw.set_title(f"bandwidth, threads on node {cpu_node} (higher is better)\n"
                    "10⁹ bytes/s counted as STREAM: memset 1×, memcpy 2×, triad 3× the buffer", fontsize=9)
    ax_bw.legend(fontsize=8)
    ax_bw.margins(y=0.12)

    # Latency: groups by placement.
    for i, prov in enumerate(providers):
        xs, ys, keys = [], [], []
        for g, pl in enumerate(placements):
            v = rows.get((prov, pl), {}).get("chase")
            if v is None or v < 0:
                continue
            xs.append(g + (i - (len(providers) - 1) / 2) * width)
            ys.append(v)
            keys.append((prov, pl))
        bars = ax_lat.bar(xs, ys, width, label=prov, color=COLORS.get(prov, None), edgecolor="black", linewidth=0.5)
        for b, key, y in zip(bars, keys, ys):
            b.set_hatch("xx" if wrong(key) else "")
            ax_lat.annotate(f"{y:.0f}", (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom", fontsize=7)
    ax_lat.set_xticks(range(len(placements)))
    ax_lat.set_xticklabels([label(pl) for pl in placements], fontsize=8)
    ax_lat.set_ylabel("ns per dependent load")
    ax_lat.set_title("pointer-chase latency (lower is better)\nrandom cycle over the 64-byte lines of one buffer",
                     fontsize=9)
    ax_lat.legend(fontsize=8)
    ax_lat.margins(y=0.12)
    if len(placements) == 1:
        ax_lat.set_xlim(-1, 1)

    bad = sorted(f"{p} {pl}" for (p, pl) in rows if wrong((p, pl)))
    subtitle = ""
    if args.json:
        with open(args.json) as f:
            j = json.load(f)
        subtitle = (f"{j.get('size_bytes', 0) >> 20} MiB per buffer, best of {j.get('reps')}, "
                    f"{j.get('threads')} thread(s), nodes {j.get('memory_nodes')}, kernel {j.get('kernel')}")
    if len(placements) == 1:
        subtitle += ("; " if subtitle else "") + "local placement only (remote and interleave need two NUMA nodes)"
    if bad:
        subtitle += ("; " if subtitle else "") + "WRONG placement (hatched): " + ", ".join(bad)
    fig.suptitle(args.title + ("\n" + subtitle if subtitle else ""), fontsize=11)
    fig.tight_layout()
    # No date in the SVG: the same CSV gives the same file. Other formats by extension.
    fig.savefig(args.svg, **({"metadata": {"Date": None}} if args.svg.endswith(".svg") else {"dpi": 100}))
    print(f"wrote {args.svg}")


if __name__ == "__main__":
    main()
