#!/usr/bin/env bash
# DEVELOPMENT AID ONLY — not the uvmem runtime. A stand-in for `uvmem run` used to develop and
# check the program tests (run_program_test.sh) while build/tools/uvmem has no `run`
# subcommand or the preload library does not exist yet, and to test the harness itself:
#
#   tests/programs/run_program_test.sh tests/programs/fake_uvmem_run.sh python tests/programs
#
# Accepts `run [--stats[=FILE]] -- PROGRAM ARGS...`, runs PROGRAM with mimalloc preloaded
# (libmimalloc2.0, if installed; otherwise with no preload) and writes a minimal stats JSON,
# {"runtime": {"faults": 1}}, to FILE (stderr for a bare --stats).
set -euo pipefail
mimalloc=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2
usage() { echo "usage: $0 run [--stats[=FILE]] -- PROGRAM [ARGS...]" >&2; exit 2; }

[[ ${1:-} == run ]] || usage
shift
stats=""
want_stats=0
while (($#)); do
  case $1 in
    --stats) want_stats=1 ;;
    --stats=*) want_stats=1; stats=${1#--stats=} ;;
    --) shift; break ;;
    *) usage ;;
  esac
  shift
done
(($#)) || usage

preload=${LD_PRELOAD:-}
if [[ -e $mimalloc ]]; then
  preload="$mimalloc${preload:+:$preload}"
else
  echo "fake_uvmem_run: $mimalloc not installed; running without a preload" >&2
fi

set +e
LD_PRELOAD=$preload "$@"
rc=$?
set -e
if ((want_stats)); then
  json='{"runtime": {"faults": 1}}'
  if [[ -n $stats ]]; then echo "$json" >"$stats"; else echo "$json" >&2; fi
fi
exit $rc
