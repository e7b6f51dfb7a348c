#!/usr/bin/env bash
# bench/run.sh BUILD_DIR — the data-plane benchmark behind `make bench`.
#
# Starts, on loopback, two `corral-sim --fast` nodes, a corral-proxy routing to both from a
# snapshot file, and a reference reverse proxy (nginx, its own config and prefix in a temp dir)
# keeping connections alive to both nodes. Then, in the same run, measures with wrk:
#   1. non-streaming POST /api/generate throughput at 32 and 256 connections: direct to one node,
#      via nginx, via corral-proxy;
#   2. latency added per request at one connection (closed loop: wrk -c1 -t1 sends the next
#      request when the previous answer arrived), p50 and p99, against the direct figures;
#   3. corral-proxy's RSS idle and under the 256-connection load.
# Prints one table and appends it, with the machine's description, to docs/performance.md.
# Everything started here is stopped on exit. Takes about two minutes.
#
# Environment: BENCH_DURATION (seconds per throughput run, default 8), BENCH_LAT_DURATION
# (seconds per latency run, default 8), BENCH_NO_DOC=1 (print only, do not touch the doc),
# BENCH_PROFILE=1 (also perf stat and strace -c of the proxy at one connection, ~8 s more).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bench/run.sh BUILD_DIR" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
repo_dir=$(cd "$(dirname "$0")/.." && pwd)
bench_dir="$repo_dir/bench"
sim_bin="$build_dir/bin/corral-sim"
proxy_bin="$build_dir/bin/corral-proxy"
duration=${BENCH_DURATION:-8}
lat_duration=${BENCH_LAT_DURATION:-8}
doc="$repo_dir/docs/performance.md"

for b in "$sim_bin" "$proxy_bin"; do
  if [[ ! -x "$b" ]]; then
    echo "bench: $b is missing; build the corral-proxy and corral-sim targets first" >&2
    exit 1
  fi
done

# --- tools -------------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null || missing+=(nginx-light)
if ((${#missing[@]} > 0)); then
  echo "bench: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

# --- processes and cleanup ---------------------------------------------------------------------
work=$(mktemp -d /tmp/corral-bench.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]+"${pids[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]+"${pids[@]}"}"; do
    # A process that ignores TERM for 5 s gets KILL: the run must not leave anything behind.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (up to 10 s) for a --port-file to appear and prints the port.
wait_port_file() {
  local file=$1 pid=$2
  for _ in $(seq 100); do
    if [[ -s "$file" ]]; then cat "$file"; return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: no port in $file" >&2
  return 1
}

# A free loopback port for nginx, which cannot report a port-0 bind back to us: a random port
# that nothing listens on now. Start-up is checked afterwards and retried on a lost race.
pick_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! ss -Htln "sport = :$port" | grep -q .; then echo "$port"; return; fi
  done
}

models="llama3.2:latest,qwen3:8b,all-minilm:latest"
sim_pids=()
# Enough slots and threads that a node never queues a benchmark request: 256 connections
# straight at one node must all be served at once.
for i in 1 2; do
  "$sim_bin" --fast --listen 127.0.0.1:0 --port-file "$work/sim$i.port" --models "$models" \
    --num-parallel 1024 --max-queue 4096 --threads 1024 --log-level warn \
    2>"$work/sim$i.log" &
  pids+=($!)
  sim_pids[i]=$!
done
sim1_port=$(wait_port_file "$work/sim1.port" "${sim_pids[1]}")
sim2_port=$(wait_port_file "$work/sim2.port" "${sim_pids[2]}")

model_entries='[{"name":"llama3.2:latest"},{"name":"qwen3:8b"},{"name":"all-minilm:latest"}]'
node_json() {
  printf '{"name":"%s","url":"http://127.0.0.1:%s","admin_state":"ADMIN_STATE_ENABLED",' "$1" "$2"
  printf '"health":"HEALTH_HEALTHY","models":%s,"loaded_models":%s}' "$model_entries" \
    '[{"name":"llama3.2:latest"}]'
}
cat >"$work/snapshot.json" <<EOF
{"version":"1","strategy":"STRATEGY_LEAST_ACTIVE",
 "nodes":[$(node_json sim-1 "$sim1_port"),$(node_json sim-2 "$sim2_port")],"tokens":[]}
EOF
"$proxy_bin" --listen 127.0.0.1:0 --port-file "$work/proxy.port" --snapshot "$work/snapshot.json" \
  --id bench --log-level warn 2>"$work/proxy.log" &
proxy_pid=$!
pids+=("$proxy_pid")
proxy_port=$(wait_port_file "$work/proxy.port" "$proxy_pid")

ncpu=$(nproc)
mkdir -p "$work/nginx/logs" "$work/nginx/tmp"
chmod -R a+rwx "$work/nginx"
nginx_port=""
for _ in 1 2 3 4 5; do
  port=$(pick_port)
  cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
worker_processes $ncpu;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  upstream sims {
    server 127.0.0.1:$sim1_port;
    server 127.0.0.1:$sim2_port;
    keepalive 512;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://sims;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  "$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log" \
    2>>"$work/nginx/start.log" &
  npid=$!
  for _ in $(seq 50); do
    kill -0 "$npid" 2>/dev/null || break
    if ss -Htln "sport = :$port" | grep -q .; then nginx_port=$port; break; fi
    sleep 0.1
  done
  if [[ -n "$nginx_port" ]]; then pids+=("$npid"); break; fi
  kill -TERM "$npid" 2>/dev/null || true
  wait "$npid" 2>/dev/null || true
done
if [[ -z "$nginx_port" ]]; then
  echo "bench: nginx did not start:" >&2
  cat "$work/nginx/start.log" "$work/nginx/logs/error.log" >&2 || true
  exit 1
fi

body='{"model":"llama3.2","prompt":"Why is the sky blue?","stream":false}'
for target in "sim:$sim1_port" "sim:$sim2_port" "nginx:$nginx_port" "corral:$proxy_port"; do
  code=$(curl -s -o "$work/check.out" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "$body" "http://127.0.0.1:${target#*:}/api/generate" || true)
  if [[ "$code" != 200 ]]; then
    echo "bench: ${target%%:*} on port ${target#*:} answered $code: $(head -c 300 "$work/check.out")" >&2
    exit 1
  fi
done

# --- measurement helpers -----------------------------------------------------------------------
rss_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# run_wrk NAME PORT CONNS THREADS SECONDS: runs wrk and stores its BENCH line in $work/NAME.wrk.
run_wrk() {
  local name=$1 port=$2 conns=$3 threads=$4 secs=$5
  wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s -s "$bench_dir/generate.lua" \
    "http://127.0.0.1:$port/api/generate" >"$work/$name.out" 2>&1
  grep '^BENCH ' "$work/$name.out" >"$work/$name.wrk" || {
    echo "bench: wrk $name gave no result:" >&2
    cat "$work/$name.out" >&2
    exit 1
  }
}
field() { sed -n "s/.* $2=\([0-9]*\).*/\1/p" "$work/$1.wrk"; }
rps() { awk -v r="$(field "$1" requests)" -v d="$(field "$1" duration_us)" \
  'BEGIN { printf "%.0f", r / (d / 1e6) }'; }
errors() {
  echo $(($(field "$1" err_connect) + $(field "$1" err_read) + $(field "$1" err_write) + \
    $(field "$1" err_status) + $(field "$1" err_timeout)))
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

proxy_rss_idle=$(rss_kb "$proxy_pid" VmRSS)

echo "bench: corral-proxy :$proxy_port, nginx :$nginx_port ($ncpu workers), sims :$sim1_port :$sim2_port"
echo "bench: throughput runs ${duration}s each, latency runs ${lat_duration}s each"

declare -A port_of=([direct]=$sim1_port [nginx]=$nginx_port [corral]=$proxy_port)
targets=(direct nginx corral)
for t in "${targets[@]}"; do
  # Warm-up: opens the upstream keep-alive connections and grows the thread pools.
  run_wrk "warm-$t" "${port_of[$t]}" 256 2 2
done

for conns in 32 256; do
  for t in "${targets[@]}"; do
    if [[ $t == corral && $conns == 256 ]]; then
      # Sample the proxy's RSS through the 256-connection run; the highest sample is reported.
      (
        max=0
        while kill -0 "$proxy_pid" 2>/dev/null; do
          v=$(rss_kb "$proxy_pid" VmRSS)
          ((v > max)) && max=$v
          echo "$max" >"$work/rss_load"
          sleep 0.2
        done
      ) &
      sampler=$!
      run_wrk "$t-c$conns" "${port_of[$t]}" "$conns" 2 "$duration"
      kill "$sampler" 2>/dev/null || true
      wait "$sampler" 2>/dev/null || true
    else
      run_wrk "$t-c$conns" "${port_of[$t]}" "$conns" 2 "$duration"
    fi
    echo "bench: $t c=$conns $(rps "$t-c$conns") req/s, $(errors "$t-c$conns") errors"
  done
done
proxy_rss_load=$(cat "$work/rss_load")
proxy_hwm=$(rss_kb "$proxy_pid" VmHWM)

for t in "${targets[@]}"; do
  run_wrk "$t-c1" "${port_of[$t]}" 1 1 "$lat_duration"
  echo "bench: $t c=1 p50 $(field "$t-c1" p50_us) us, p99 $(field "$t-c1" p99_us) us"
done

# Optional (BENCH_PROFILE=1): where the proxy's time goes at one connection — its CPU time and
# context switches per request (perf stat), then its system calls per request (strace -c, which
# slows every call, so it runs on its own).
if [[ "${BENCH_PROFILE:-0}" == 1 ]]; then
  exec 3>&1 1> >(tee "$work/profile.txt" >&3)
  tee_pid=$!
  if command -v perf >/dev/null; then
    # The idle cost first, so the per-request figure can be read against it.
    perf stat -e task-clock -x, -o "$work/perf-idle.txt" -p "$proxy_pid" -- sleep 2
    awk -F, '$3 == "task-clock" { printf "bench: corral-proxy idle: %.2f ms CPU per second\n", $1 / 2 }' \
      "$work/perf-idle.txt"
    perf stat -e task-clock,context-switches -x, -o "$work/perf.txt" -p "$proxy_pid" &
    perf_pid=$!
    pids+=("$perf_pid")
    sleep 0.5
    run_wrk corral-perf "$proxy_port" 1 1 3
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    awk -F, -v n="$(field corral-perf requests)" '
      $3 == "task-clock" { cpu = $1 } $3 == "context-switches" { cs = $1 }
      END { printf "bench: corral-proxy at one connection: %.1f us CPU and %.1f context switches per request (%d requests, perf stat)\n", cpu * 1000 / n, cs / n, n }' \
      "$work/perf.txt"
  fi
  if command -v strace >/dev/null; then
    strace -c -f -p "$proxy_pid" -o "$work/strace.txt" 2>/dev/null &
    strace_pid=$!
    pids+=("$strace_pid")
    sleep 1
    run_wrk corral-strace "$proxy_port" 1 1 3
    kill -INT "$strace_pid" 2>/dev/null || true
    wait "$strace_pid" 2>/dev/null || true
    traced=$(field corral-strace requests)
    echo "bench: corral-proxy system calls per request at one connection ($traced requests, strace -c -f):"
    awk -v n="$traced" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" && n > 0 \
      && $4 / n >= 0.01 { printf "  %-16s %6.2f\n", $NF, $4 / n }' "$work/strace.txt" | sort -k2 -rn | head -12
  fi
  exec 1>&3 3>&-
  wait "$tee_pid" 2>/dev/null || true
fi

# --- report ------------------------------------------------------------------------------------
total_errors=0
for n in direct nginx corral; do
  for c in 1 32 256; do total_errors=$((total_errors + $(errors "$n-c$c"))); done
done

d32=$(rps direct-c32); n32=$(rps nginx-c32); c32=$(rps corral-c32)
d256=$(rps direct-c256); n256=$(rps nginx-c256); c256=$(rps corral-c256)
dp50=$(field direct-c1 p50_us); np50=$(field nginx-c1 p50_us); cp50=$(field corral-c1 p50_us)
dp99=$(field direct-c1 p99_us); np99=$(field nginx-c1 p99_us); cp99=$(field corral-c1 p99_us)
r32=$(ratio "$c32" "$n32"); r256=$(ratio "$c256" "$n256")
signed() { if (($1 >= 0)); then echo "+$1"; else echo "$1"; fi; }
verdict() { awk -v x="$1" -v t="$2" -v op="$3" \
  'BEGIN { ok = (op == ">=") ? (x >= t) : (x <= t); print ok ? "met" : "MISSED" }'; }

table=$(cat <<EOF
| figure | direct (1 node) | nginx (2 nodes) | corral-proxy (2 nodes) | corral / nginx | target |
|---|---|---|---|---|---|
| req/s, 32 connections | $d32 | $n32 | $c32 | $r32 | ≥ 0.5: $(verdict "$r32" 0.5 ">=") |
| req/s, 256 connections | $d256 | $n256 | $c256 | $r256 | ≥ 0.5: $(verdict "$r256" 0.5 ">=") |
| p50 latency, 1 connection (µs) | $dp50 | $np50 ($(signed $((np50 - dp50)))) | $cp50 ($(signed $((cp50 - dp50)))) | – | corral − direct ≤ 50 µs: $(verdict $((cp50 - dp50)) 50 "<=") |
| p99 latency, 1 connection (µs) | $dp99 | $np99 ($(signed $((np99 - dp99)))) | $cp99 ($(signed $((cp99 - dp99)))) | – | – |
| corral-proxy RSS (MiB) | – | – | idle $((proxy_rss_idle / 1024)), under 256 conns $((proxy_rss_load / 1024)), peak (VmHWM) $((proxy_hwm / 1024)) | – | – |
EOF
)

echo
echo "$table"
echo
echo "failed requests (socket errors and non-2xx) over all measured runs: $total_errors"

if [[ "${BENCH_NO_DOC:-0}" != 1 && -f "$doc" ]]; then
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  nginx_ver=$("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //' || true)
  # wrk -v exits 1 after printing its version.
  wrk_ver=$(wrk -v 2>&1 | head -1 | awk '{print $2}' || true)
  command="bench/run.sh $1"
  for v in BENCH_DURATION BENCH_LAT_DURATION BENCH_PROFILE; do
    if [[ -n "${!v:-}" ]]; then command="$v=${!v} $command"; fi
  done
  commit=$(git -C "$repo_dir" rev-parse --short HEAD 2>/dev/null || echo unknown)
  {
    echo
    echo "### Run $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $ncpu CPUs ($cpu), kernel $(uname -r), $nginx_ver, wrk $wrk_ver; corral at $commit"
    echo "(release build in \`$build_dir\`). Command: \`$command\` (throughput ${duration} s per"
    echo "run with wrk -t2, latency ${lat_duration} s with wrk -t1 -c1, closed loop). Failed requests: $total_errors."
    echo
    echo "$table"
    if [[ -s "$work/profile.txt" ]]; then
      echo
      echo "Profile of corral-proxy at one connection (\`BENCH_PROFILE=1\`):"
      echo
      echo '```'
      sed 's/^bench: //' "$work/profile.txt"
      echo '```'
    fi
  } >>"$doc"
  echo "bench: appended to $doc"
fi
