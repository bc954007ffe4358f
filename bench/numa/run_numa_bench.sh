#!/usr/bin/env bash
# Runs numa_bench with CSV and JSON output and plots the CSV to an SVG. Builds nothing.
#
#   bench/numa/run_numa_bench.sh [BINARY] [OUTDIR] [-- numa_bench flags...]
#
# BINARY  numa_bench (default build/bench/numa/numa_bench; build it with
#         cmake --build build --target numa_bench)
# OUTDIR  where numa.txt (the table), numa.csv, numa.json and numa.svg go (default numa-out)
# Example: bench/numa/run_numa_bench.sh build/bench/numa/numa_bench /tmp/numa -- --threads 4
# The plot needs matplotlib (apt-get install python3-matplotlib); $PYTHON picks the python.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=build/bench/numa/numa_bench
out=numa-out
if [[ $# -gt 0 && $1 != -- ]]; then bin=$1; shift; fi
if [[ $# -gt 0 && $1 != -- ]]; then out=$1; shift; fi
if [[ $# -gt 0 && $1 == -- ]]; then shift; fi
if [[ ! -x $bin ]]; then
  echo "run_numa_bench.sh: no numa_bench at $bin (cmake --build build --target numa_bench)" >&2
  exit 2
fi
mkdir -p "$out"

# The first python that has matplotlib: $PYTHON, python3, then Debian's own.
python=""
for p in ${PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null && "$p" -c 'import matplotlib' 2>/dev/null; then python=$p; break; fi
done

echo "==> $bin --csv=$out/numa.csv --json=$out/numa.json $*" >&2
status=0
"$bin" --csv="$out/numa.csv" --json="$out/numa.json" "$@" | tee "$out/numa.txt" || status=$?
if [[ -z $python ]]; then
  echo "run_numa_bench.sh: no python with matplotlib: apt-get install python3-matplotlib" >&2
  exit 2
fi
"$python" "$here/plot_numa.py" "$out/numa.csv" "$out/numa.svg" --json "$out/numa.json"
exit "$status"
