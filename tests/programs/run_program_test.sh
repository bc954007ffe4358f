#!/usr/bin/env bash
# Runs a real program under `uvmem run` and checks it behaves as it does natively.
#
#   run_program_test.sh <uvmem-binary> <python|sqlite|redis> <source-dir>
#
#   python  python3 <source-dir>/python_workload.py, natively and under uvmem: stdout identical
#   python-swap  python3 <source-dir>/python_swap_workload.py (~420 MB) natively and under
#           `uvmem run --budget 64M`: stdout identical, and the stats show pages swapped out
#   sqlite  sqlite3 on a fresh on-disk db fed <source-dir>/sqlite_workload.sql, natively and
#           under uvmem: stdout identical
#   redis   <source-dir>/redis_check.sh with redis-server started under uvmem
#
# Under uvmem the program runs as `<uvmem-binary> run --stats=<tmp>/stats.json -- PROGRAM...`,
# which must exit 0 and leave a stats JSON whose STATS_FAULTS_KEY (below) is > 0.
# Exits 77 (ctest SKIP_RETURN_CODE) when the program is not installed.
# <uvmem-binary> may be tests/programs/fake_uvmem_run.sh, a development stand-in.
set -euo pipefail

# Where the fault count sits in the stats JSON: dot-separated keys from the top level.
STATS_FAULTS_KEY="runtime.faults"
RUN_TIMEOUT=280  # seconds for one run of a workload (native or under uvmem)
# PYTHONMALLOC for both python runs. CPython's default (pymalloc) serves objects up to 512
# bytes from its own mmap()ed arenas, so only larger blocks would reach the preloaded
# malloc; "malloc" sends every object through it. UVMEM_TEST_PYTHONMALLOC= (empty) keeps
# the default.
PYTHON_MALLOC=${UVMEM_TEST_PYTHONMALLOC-malloc}
SKIP=77

usage() { echo "usage: $0 <uvmem-binary> <python|python-swap|sqlite|redis> <source-dir>" >&2; exit 2; }
(($# == 3)) || usage
uvmem=$1
which=$2
src=$(cd "$3" && pwd)
case $which in python | python-swap | sqlite | redis) ;; *) usage ;; esac

fail() { echo "run_program_test[$which]: FAIL: $*" >&2; exit 1; }
skip() { echo "run_program_test[$which]: SKIP: $*"; exit $SKIP; }
say() { echo "run_program_test[$which]: $*"; }

if [[ $uvmem == */* ]]; then  # absolute: the runs happen in a temp dir
  [[ -x $uvmem ]] || fail "no uvmem binary at '$uvmem'"
  uvmem=$(cd "$(dirname "$uvmem")" && pwd)/$(basename "$uvmem")
else
  uvmem=$(command -v "$uvmem") || fail "no uvmem binary '$1' in PATH"
fi

# The python the workload runs on: Debian's (tools/install-deps.sh installs it), else PATH's.
python=/usr/bin/python3
[[ -x $python ]] || python=$(command -v python3 || true)

case $which in
  python | python-swap) [[ -n $python ]] || skip "python3 is not installed" ;;
  sqlite) command -v sqlite3 >/dev/null || skip "sqlite3 is not installed" ;;
  redis)
    for p in redis-server redis-cli redis-benchmark redis-check-rdb; do
      command -v $p >/dev/null || skip "$p is not installed (redis-server, redis-tools)"
    done ;;
esac
[[ -n $python ]] || fail "python3 is needed to read the stats JSON"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/uvmem-program-$which.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
stats=$tmp/stats.json

now_ms() { date +%s%3N; }
native_ms=0 uvmem_ms=0  # set by timed

# timed <label> <stdout-file> <stderr-file> <command...>: runs it bounded; fails on non-zero.
timed() {
  local label=$1 out=$2 err=$3 start rc
  shift 3
  start=$(now_ms)
  set +e
  timeout --kill-after=10 "$RUN_TIMEOUT" "$@" >"$out" 2>"$err"
  rc=$?
  set -e
  local ms=$(($(now_ms) - start))
  printf -v "${label}_ms" %d "$ms"
  if ((rc != 0)); then
    echo "---- stderr of the $label run (last 40 lines) ----" >&2
    tail -n 40 "$err" >&2
    ((rc == 124 || rc == 137)) && fail "$label run timed out after ${RUN_TIMEOUT}s"
    fail "$label run exited with status $rc"
  fi
  say "$label run: $((ms / 1000)).$(printf %03d $((ms % 1000))) s"
}

check_stats() {  # check_stats [key]: the stats JSON's <key> (default STATS_FAULTS_KEY) is > 0
  local key=${1:-$STATS_FAULTS_KEY}
  [[ -s $stats ]] || fail "uvmem run left no stats JSON at --stats=$stats"
  local faults
  faults=$("$python" - "$stats" "$key" <<'PY'
import json, sys
path, key = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        node = json.load(f)
except Exception as e:
    sys.exit(f"stats JSON {path} does not parse: {e}")
for part in key.split("."):
    if not isinstance(node, dict) or part not in node:
        sys.exit(f"stats JSON has no '{key}' (missing '{part}'); top-level keys: "
                 f"{sorted(json.load(open(path)).keys())}")
    node = node[part]
if isinstance(node, bool) or not isinstance(node, int):
    sys.exit(f"stats '{key}' is {node!r}, not an integer")
print(node)
PY
  ) || fail "could not read '$key' from the stats JSON"
  ((faults > 0)) || fail "stats say $key = $faults; expected > 0 (did the preload take over?)"
  say "stats: $key = $faults ($(wc -c <"$stats") bytes of JSON)"
}

compare() {  # compare <native-out> <uvmem-out>
  if ! cmp -s "$1" "$2"; then
    echo "---- diff native uvmem ----" >&2
    diff -u "$1" "$2" | head -n 60 >&2 || true
    fail "output under uvmem differs from the native run"
  fi
  say "outputs identical ($(wc -l <"$1") lines)"
}

under_uvmem=("$uvmem" run "--stats=$stats" --)

case $which in
  python)
    export PYTHONDONTWRITEBYTECODE=1
    if [[ -n $PYTHON_MALLOC ]]; then export PYTHONMALLOC=$PYTHON_MALLOC; else unset PYTHONMALLOC; fi
    say "$("$python" --version 2>&1) ($python), PYTHONMALLOC=${PYTHONMALLOC:-default}"
    workload=$src/python_workload.py
    cd "$tmp"
    timed native "$tmp/native.out" "$tmp/native.err" "$python" "$workload"
    timed uvmem "$tmp/uvmem.out" "$tmp/uvmem.err" "${under_uvmem[@]}" "$python" "$workload"
    compare "$tmp/native.out" "$tmp/uvmem.out"
    check_stats
    ;;
  python-swap)
    export PYTHONDONTWRITEBYTECODE=1 PYTHONMALLOC=${PYTHON_MALLOC:-pymalloc}
    workload=$src/python_swap_workload.py
    cd "$tmp"
    timed native "$tmp/native.out" "$tmp/native.err" "$python" "$workload"
    timed uvmem "$tmp/uvmem.out" "$tmp/uvmem.err" \
      "$uvmem" run --budget 64M --swap "$tmp" "--stats=$stats" -- "$python" "$workload"
    compare "$tmp/native.out" "$tmp/uvmem.out"
    check_stats
    check_stats runtime.swap.pages_swapped_out
    check_stats runtime.swap.pages_swapped_in
    # The swap file had no name (O_TMPFILE, or mkstemp + unlink) and is gone with the process.
    leftovers=$(find "$tmp" -mindepth 1 -maxdepth 1 ! -name '*.out' ! -name '*.err' ! -name stats.json)
    [[ -z $leftovers ]] || fail "files left in the swap directory after exit: $leftovers"
    say "swap directory empty after exit"
    ;;
  sqlite)
    sql=$src/sqlite_workload.sql
    mkdir "$tmp/native" "$tmp/uvmem"
    cd "$tmp"
    # shellcheck disable=SC2016  # the inner shell expands them
    timed native "$tmp/native.out" "$tmp/native.err" \
      sh -c 'exec sqlite3 -bail -batch "$1" <"$2"' sh "$tmp/native/work.db" "$sql"
    # The shell only redirects stdin and execs sqlite3 under uvmem.
    # shellcheck disable=SC2016
    timed uvmem "$tmp/uvmem.out" "$tmp/uvmem.err" \
      sh -c 'exec "$@" <"$0"' "$sql" "${under_uvmem[@]}" sqlite3 -bail -batch "$tmp/uvmem/work.db"
    compare "$tmp/native.out" "$tmp/uvmem.out"
    check_stats
    ;;
  redis)
    start=$(now_ms)
    set +e
    timeout --kill-after=10 500 "$src/redis_check.sh" "${under_uvmem[@]}"
    rc=$?
    set -e
    ((rc == 0)) || fail "redis_check.sh exited with status $rc"
    ms=$(($(now_ms) - start))
    say "redis_check under uvmem: $((ms / 1000)).$(printf %03d $((ms % 1000))) s"
    check_stats
    ;;
esac
if [[ $which != redis ]]; then
  say "slowdown under uvmem: $(awk -v a="$uvmem_ms" -v b="$native_ms" 'BEGIN { printf "%.2fx", a / (b ? b : 1) }')"
fi
say "PASS"
