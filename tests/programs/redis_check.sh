#!/usr/bin/env bash
# Runs redis-server under a wrapper command, loads it with redis-benchmark and known keys, and
# checks everything reads back correctly.
#
#   redis_check.sh [WRAPPER...]
#
# The server runs as `WRAPPER... redis-server ARGS` (no WRAPPER: natively), e.g.
#   redis_check.sh build/tools/uvmem run --stats=/tmp/s.json --
# on its own free loopback port (never 6379), with no persistence configured. Steps:
#   1. redis-benchmark (set,get,lpush,lpop,incr; 20000 requests, 8 clients, 256-byte values),
#      bounded by `timeout`, then its side effects checked (the INCR counter, the SET value, the
#      emptied list);
#   2. N string keys of varied length, hashes and lists written with `redis-cli --pipe` into
#      db 1, every string key, and a sample of hash fields and list elements, read back;
#      DBSIZE, INFO memory and MEMORY USAGE (malloc_usable_size) checked;
#   3. BGSAVE (a fork: the child serializes the parent's heap), the RDB checked with
#      redis-check-rdb and loaded into a second, native redis-server on which step 2's reads
#      are repeated;
#   4. FLUSHDB ASYNC (frees on redis's background thread), SHUTDOWN NOSAVE, and the wrapper
#      must exit 0.
# Any mismatch, error or timeout exits non-zero with a message. The servers are always killed
# on exit.
set -euo pipefail

N=${REDIS_CHECK_KEYS:-10000}  # string keys
HASHES=200                   # of 50 fields each
LISTS=20                     # of 500 elements each
STARTUP_TIMEOUT=60           # seconds for the server to answer PING
CLI_TIMEOUT=120              # seconds for any one redis-cli / redis-benchmark run

wrapper=("$@")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/uvmem-redis.XXXXXX")
runner_pid=""   # the background job: the wrapper (or redis-server itself when native)
server_pid=""   # redis-server's own pid, from INFO server
reload_pid=""   # the native server that loads the RDB
port=""

die() {
  echo "redis_check: FAIL: $*" >&2
  for f in "$tmp/redis.log" "$tmp/server.out" "$tmp/reload.log"; do
    if [[ -s $f ]]; then
      echo "---- last lines of $(basename "$f") ----" >&2
      tail -n 30 "$f" >&2
    fi
  done
  exit 1
}

kill_pid() {  # kill_pid <pid>: TERM, then KILL after 5 s
  local pid=$1 i
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  kill_pid "$reload_pid"
  kill_pid "$server_pid"
  kill_pid "$runner_pid"
  wait 2>/dev/null || true
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cli() {  # cli <port> [redis-cli args...]: bounded redis-cli against 127.0.0.1:<port>
  local p=$1
  shift
  timeout "$CLI_TIMEOUT" redis-cli -h 127.0.0.1 -p "$p" "$@"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_ping() {  # wait_for_ping <port> <pid>: 0 when PONG, 1 if <pid> died first
  local p=$1 pid=$2 deadline=$((SECONDS + STARTUP_TIMEOUT))
  while ((SECONDS < deadline)); do
    if [[ $(timeout 5 redis-cli -h 127.0.0.1 -p "$p" ping 2>/dev/null) == PONG ]]; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  die "redis-server on port $p did not answer PING within ${STARTUP_TIMEOUT}s"
}

server_args() {  # server_args <port> <logfile>
  printf '%s\n' --port "$1" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$tmp" --dbfilename dump.rdb --logfile "$2" --databases 4
}

command -v redis-server >/dev/null || die "redis-server is not installed"
command -v redis-cli >/dev/null || die "redis-cli is not installed"
command -v redis-benchmark >/dev/null || die "redis-benchmark is not installed"

# ---- start the server under the wrapper, on a free port ----------------------------------------
base=$((20000 + $$ % 10000))
for attempt in 0 1 2 3 4 5 6 7; do
  port=$((20000 + (base - 20000 + attempt * 997) % 10000))
  port_in_use "$port" && continue
  mapfile -t args < <(server_args "$port" "$tmp/redis.log")
  echo "redis_check: starting: ${wrapper[*]:+${wrapper[*]} }redis-server --port $port ..."
  "${wrapper[@]}" redis-server "${args[@]}" >"$tmp/server.out" 2>&1 </dev/null &
  runner_pid=$!
  if wait_for_ping "$port" "$runner_pid"; then
    break
  fi
  wait "$runner_pid" 2>/dev/null || true
  runner_pid=""
  if grep -qi 'address already in use' "$tmp/redis.log" "$tmp/server.out" 2>/dev/null; then
    echo "redis_check: port $port taken, trying another"
    continue
  fi
  die "redis-server exited during startup"
done
[[ -n $runner_pid ]] || die "found no free port"
server_pid=$(cli "$port" info server | tr -d '\r' | sed -n 's/^process_id://p')
[[ $server_pid =~ ^[0-9]+$ ]] || die "could not read process_id from INFO server"
echo "redis_check: redis-server pid $server_pid on 127.0.0.1:$port" \
  "($(cli "$port" info server | tr -d '\r' | grep -E '^redis_version:'))"

# ---- 1. redis-benchmark --------------------------------------------------------------------------
echo "redis_check: redis-benchmark"
bench_start=$SECONDS
if ! timeout 120 redis-benchmark -h 127.0.0.1 -p "$port" -n 20000 -c 8 -q \
    -t set,get,lpush,lpop,incr -d 256 >"$tmp/bench.out" 2>&1; then
  cat "$tmp/bench.out" >&2
  die "redis-benchmark failed or timed out"
fi
tr '\r' '\n' <"$tmp/bench.out" | grep -E 'requests per second' || true
grep -qiE 'error|refused' "$tmp/bench.out" && die "redis-benchmark reported errors"
for t in SET GET LPUSH LPOP INCR; do
  tr '\r' '\n' <"$tmp/bench.out" | grep -q "^$t: .*requests per second" ||
    die "redis-benchmark did not complete the $t test"
done
echo "redis_check: benchmark took $((SECONDS - bench_start)) s"
# Without -r every request of a test hits one key.
[[ $(cli "$port" get counter:__rand_int__) == 20000 ]] ||
  die "INCR counter is '$(cli "$port" get counter:__rand_int__)', expected 20000"
[[ $(cli "$port" strlen key:__rand_int__) == 256 ]] || die "SET value is not 256 bytes"
[[ $(cli "$port" llen mylist) == 0 ]] || die "LPUSH/LPOP list is not empty"

# ---- 2. known keys ------------------------------------------------------------------------------
# gen.awk writes load.resp (the redis protocol for --pipe), check.cmds (read commands, one a
# line) and check.expected (their replies, one a line, as redis-cli prints them raw).
cat >"$tmp/gen.awk" <<'AWK'
function resp(n, a,    s, i) {
  s = "*" n "\r\n"
  for (i = 1; i <= n; i++) s = s "$" length(a[i]) "\r\n" a[i] "\r\n"
  printf "%s", s > load
}
function strval(i,    unit, len, v) {
  unit = sprintf("v%05d-%x.", i, (i * 2654435761) % 4294967296)
  len = 20 + (i * 37) % 480
  v = unit
  while (length(v) < len) v = v unit
  return substr(v, 1, len)
}
BEGIN {
  load = dir "/load.resp"; cmds = dir "/check.cmds"; want = dir "/check.expected"
  for (i = 0; i < n; i++) {
    a[1] = "SET"; a[2] = sprintf("uvmem:str:%05d", i); a[3] = strval(i)
    resp(3, a)
    print "GET " a[2] > cmds; print a[3] > want
  }
  for (h = 0; h < hashes; h++) {
    delete a
    a[1] = "HSET"; a[2] = sprintf("uvmem:hash:%03d", h); k = 2
    for (f = 0; f < 50; f++) { a[++k] = sprintf("f%02d", f); a[++k] = sprintf("h%d-%d-%s", h, f, substr("abcdefghijklmnopqrstuvwxyz", 1 + (h + f) % 26)) }
    resp(k, a)
    print "HLEN " a[2] > cmds; print 50 > want
    f = (h * 7) % 50
    print "HGET " a[2] " " sprintf("f%02d", f) > cmds; print a[4 + 2 * f] > want
  }
  for (l = 0; l < lists; l++) {
    delete a
    a[1] = "RPUSH"; a[2] = sprintf("uvmem:list:%02d", l); k = 2
    for (e = 0; e < 500; e++) a[++k] = sprintf("e%d.%d.%0" (1 + e % 40) "d", l, e, e)
    resp(k, a)
    print "LLEN " a[2] > cmds; print 500 > want
    e = (l * 53) % 500
    print "LINDEX " a[2] " " e > cmds; print a[3 + e] > want
  }
  print "DBSIZE" > cmds; print n + hashes + lists > want
}
AWK
awk -v dir="$tmp" -v n="$N" -v hashes="$HASHES" -v lists="$LISTS" -f "$tmp/gen.awk" </dev/null ||
  die "generating the key set failed"
echo "redis_check: writing $N strings, $HASHES hashes, $LISTS lists into db 1 ($(wc -c <"$tmp/load.resp") bytes of protocol)"
cli "$port" -n 1 --pipe <"$tmp/load.resp" >"$tmp/pipe.out" 2>&1 || {
  cat "$tmp/pipe.out" >&2
  die "redis-cli --pipe failed"
}
expected_replies=$((N + HASHES + LISTS))
grep -q "errors: 0, replies: $expected_replies" "$tmp/pipe.out" || {
  cat "$tmp/pipe.out" >&2
  die "redis-cli --pipe: expected 'errors: 0, replies: $expected_replies'"
}

check_reads() {  # check_reads <port> <what>: every read in check.cmds gives check.expected
  local p=$1 what=$2
  cli "$p" -n 1 <"$tmp/check.cmds" >"$tmp/check.got" 2>&1 || die "$what: redis-cli reads failed"
  if ! cmp -s "$tmp/check.expected" "$tmp/check.got"; then
    echo "---- diff expected got ($what) ----" >&2
    diff "$tmp/check.expected" "$tmp/check.got" | head -n 20 >&2
    die "$what: $(diff "$tmp/check.expected" "$tmp/check.got" | grep -c '^>' || true) replies differ from the values written"
  fi
  echo "redis_check: $what: $(wc -l <"$tmp/check.cmds") reads match"
}
check_reads "$port" "read-back"

info_field() {  # info_field <port> <section> <field>
  cli "$1" info "$2" | tr -d '\r' | sed -n "s/^$3://p"
}
used_memory=$(info_field "$port" memory used_memory)
value_bytes=$(awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++) s += 20 + (i * 37) % 480; print s }')
echo "redis_check: INFO memory: used_memory=$used_memory used_memory_rss=$(info_field "$port" memory used_memory_rss)" \
  "mem_allocator=$(info_field "$port" memory mem_allocator) (string values: $value_bytes bytes)"
[[ $used_memory =~ ^[0-9]+$ ]] || die "INFO memory has no used_memory"
((used_memory > value_bytes)) || die "used_memory $used_memory is below the $value_bytes bytes of values stored"
((used_memory < 1024 * 1024 * 1024)) || die "used_memory $used_memory is implausibly large"
usage=$(cli "$port" -n 1 memory usage uvmem:str:00009)  # zmalloc_size: malloc_usable_size
len9=$(cli "$port" -n 1 strlen uvmem:str:00009)
if ! [[ $usage =~ ^[0-9]+$ ]] || ((usage < len9)); then
  die "MEMORY USAGE is '$usage' for a $len9-byte value"
fi

# ---- 3. BGSAVE: the fork child writes the parent's heap ------------------------------------------
echo "redis_check: BGSAVE"
[[ $(cli "$port" bgsave) == *"Background saving started"* ]] || die "BGSAVE did not start"
deadline=$((SECONDS + 120))
while [[ $(info_field "$port" persistence rdb_bgsave_in_progress) != 0 ]]; do
  ((SECONDS < deadline)) || die "BGSAVE did not finish within 120 s"
  sleep 0.2
done
[[ $(info_field "$port" persistence rdb_last_bgsave_status) == ok ]] || die "BGSAVE failed"
timeout "$CLI_TIMEOUT" redis-check-rdb "$tmp/dump.rdb" >"$tmp/check-rdb.out" 2>&1 || {
  cat "$tmp/check-rdb.out" >&2
  die "redis-check-rdb rejected the RDB written by the BGSAVE child"
}
reload_port=$((20000 + (port - 20000 + 5003) % 10000))
for _ in 1 2 3 4 5 6 7 8; do
  port_in_use "$reload_port" || break
  reload_port=$((20000 + (reload_port - 20000 + 131) % 10000))
done
mapfile -t args < <(server_args "$reload_port" "$tmp/reload.log")
redis-server "${args[@]}" >/dev/null 2>&1 </dev/null &
reload_pid=$!
wait_for_ping "$reload_port" "$reload_pid" || die "the native redis-server could not load the RDB"
check_reads "$reload_port" "RDB reloaded natively"
[[ $(cli "$reload_port" get counter:__rand_int__) == 20000 ]] || die "RDB: INCR counter differs"
cli "$reload_port" shutdown nosave >/dev/null 2>&1 || true
wait "$reload_pid" 2>/dev/null || true
reload_pid=""

# ---- 4. free everything, shut down --------------------------------------------------------------
[[ $(cli "$port" -n 1 flushdb async) == OK ]] || die "FLUSHDB ASYNC failed"
[[ $(cli "$port" -n 1 dbsize) == 0 ]] || die "db 1 not empty after FLUSHDB"
[[ $(cli "$port" ping) == PONG ]] || die "server stopped answering after FLUSHDB ASYNC"
echo "redis_check: SHUTDOWN NOSAVE"
cli "$port" shutdown nosave >/dev/null 2>&1 || true  # the connection drops: no reply
deadline=$((SECONDS + 60))
while kill -0 "$runner_pid" 2>/dev/null; do
  ((SECONDS < deadline)) || die "redis-server (wrapper pid $runner_pid) did not exit within 60 s of SHUTDOWN"
  sleep 0.1
done
set +e
wait "$runner_pid"
rc=$?
set -e
runner_pid=""
server_pid=""
((rc == 0)) || die "the server command exited with status $rc"
if [[ -s $tmp/server.out ]]; then
  echo "---- server command output ----"
  cat "$tmp/server.out"
fi
echo "redis_check: OK"
