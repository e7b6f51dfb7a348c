#!/usr/bin/env bash
# bench/run.sh BUILD_DIR — the data-plane benchmark behind `make bench`.
#
# Starts, on loopback, two corral-sim nodes, a corral-proxy routing to both from a snapshot file,
# and a reference reverse proxy (nginx, its own config and prefix in a temp dir) keeping
# connections alive to both nodes. Then, in the same run, measures direct / nginx / corral:
#   1. non-streaming POST /api/generate throughput at 32 and 256 connections (wrk);
#   2. latency added per request at one connection, p50 and p99 (wrk -c1, closed loop);
#   3. open-loop latency at fixed offered rates, measured from each request's intended send time
#      (corral-loadgen open), and a latency-against-load plot (gnuplot);
#   4. streaming, with the nodes pacing tokens: time to first token and the gap between chunks
#      at a few streams (also through HAProxy in TCP mode, a bare byte relay: the floor of one
#      hop), then BENCH_STREAMS (2,000) streams open at once (corral-loadgen stream);
#   5. corral-proxy's RSS idle, under 256 connections and while holding the streams.
# Then runs bench/control.sh BUILD_DIR when it exists and is executable (control-plane figures:
# it prints rows `| figure | measured | target | holds? |`, the layout of the table here).
# Prints one table; unless BENCH_NO_DOC=1, writes it with the machine's description into
# docs/performance.md (between the `bench:run` markers) and the plot to
# docs/latency-under-load.svg. Everything started here is stopped on exit. About 6 minutes.
#
# Environment: BENCH_DURATION (seconds per throughput run, default 8), BENCH_LAT_DURATION
# (seconds per closed-loop latency run, 8), BENCH_OPEN_DURATION (seconds per open-loop rate, 4,
# after 1 s of warm-up), BENCH_OPEN_FRACTIONS (offered rates as fractions of nginx's
# 32-connection throughput, "0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8"), BENCH_STREAMS (2000),
# BENCH_STREAM_DURATION (seconds per run of the 2,000 streams, 6), BENCH_STREAM_ROUNDS (rounds of
# 2 s per target for the 32-stream figures, 7; medians), BENCH_NO_DOC=1 (print only),
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
loadgen_bin="$build_dir/bin/corral-loadgen"
duration=${BENCH_DURATION:-8}
lat_duration=${BENCH_LAT_DURATION:-8}
open_duration=${BENCH_OPEN_DURATION:-4}
read -r -a open_fractions <<<"${BENCH_OPEN_FRACTIONS:-0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8}"
many_streams=${BENCH_STREAMS:-2000}
stream_duration=${BENCH_STREAM_DURATION:-6}
doc="$repo_dir/docs/performance.md"
plot="$repo_dir/docs/latency-under-load.svg"
started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

for b in "$sim_bin" "$proxy_bin" "$loadgen_bin"; do
  if [[ ! -x "$b" ]]; then
    echo "bench: $b is missing; build the corral-proxy, corral-sim and corral-loadgen targets first" >&2
    exit 1
  fi
done

# --- tools -------------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null || missing+=(nginx-light)
command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
[[ -x /usr/sbin/haproxy ]] || command -v haproxy >/dev/null || missing+=(haproxy)
if ((${#missing[@]} > 0)); then
  echo "bench: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
haproxy_bin=$(command -v haproxy || echo /usr/sbin/haproxy)

# Thousands of streams need thousands of descriptors in every process started below.
ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < 4 * many_streams + 1024)); then
  echo "bench: the descriptor limit ($(ulimit -n)) is too low for $many_streams streams" >&2
  exit 1
fi

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

# A port nothing listens on now (nginx cannot report the port it bound, so it gets one chosen
# here; the start is checked and retried on a lost race).
pick_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! ss -Htln "sport = :$port" | grep -q .; then echo "$port"; return; fi
  done
}

# listening PID PORT...: true once process PID (started on ports from pick_port) listens on every
# PORT, within 5 s; false if it exits or does not get there (another process took a port).
listening() {
  local pid=$1 port all
  shift
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 1
    all=1
    for port in "$@"; do
      ss -Htln "sport = :$port" | grep -q . || all=0
    done
    if ((all)); then return 0; fi
    sleep 0.1
  done
  return 1
}

# --- the nodes, corral-proxy, nginx --------------------------------------------------------------
models="llama3.2:latest,qwen3:8b,all-minilm:latest"
sim_pids=()
# Enough slots and threads that a node never queues a benchmark request: 256 connections
# straight at one node must all be served at once, and a node holds its half of the streams
# while the keep-alive connections a previous run left (nginx keeps up to 512 per worker) still
# hold a thread each.
sim_threads=$((many_streams > 1024 ? many_streams + 300 : 1324))
for i in 1 2; do
  "$sim_bin" --fast --listen 127.0.0.1:0 --port-file "$work/sim$i.port" --models "$models" \
    --num-parallel "$sim_threads" --max-queue 4096 --threads "$sim_threads" --log-level warn \
    2>"$work/sim$i.log" &
  pids+=($!)
  sim_pids[i]=$!
done
sim1_port=$(wait_port_file "$work/sim1.port" "${sim_pids[1]}")
sim2_port=$(wait_port_file "$work/sim2.port" "${sim_pids[2]}")

model_entries='[{"name":"llama3.2:latest"},{"name":"qwen3:8b"},{"name":"all-minilm:latest"}]'
# num_parallel is the nodes' real per-model parallelism (their --num-parallel), as an operator
# sets it to OLLAMA_NUM_PARALLEL: left at the default of 1, the proxy would queue every request
# beyond one per model per node, as it must for a real Ollama node with that setting.
node_json() {
  printf '{"name":"%s","url":"http://127.0.0.1:%s","admin_state":"ADMIN_STATE_ENABLED",' "$1" "$2"
  printf '"health":"HEALTH_HEALTHY","num_parallel":%s,"models":%s,"loaded_models":%s}' \
    "$sim_threads" "$model_entries" '[{"name":"llama3.2:latest"}]'
}
cat >"$work/snapshot.json" <<EOF
{"version":"1","strategy":"STRATEGY_LEAST_ACTIVE",
 "nodes":[$(node_json sim-1 "$sim1_port"),$(node_json sim-2 "$sim2_port")],"tokens":[]}
EOF
# Every load generator connects from 127.0.0.1: the per-address connection cap is off, as it is
# behind an ingress, so the figures measure the proxy and not the cap.
"$proxy_bin" --listen 127.0.0.1:0 --port-file "$work/proxy.port" --snapshot "$work/snapshot.json" \
  --id bench --max-streams $((many_streams + 48)) --max-client-connections 0 --log-level warn \
  2>"$work/proxy.log" &
proxy_pid=$!
pids+=("$proxy_pid")
proxy_port=$(wait_port_file "$work/proxy.port" "$proxy_pid")

# nginx serves the non-streaming runs as configured for them before (buffered), and streams on
# a second port with proxy_buffering off, as an operator would put nginx in front of Ollama:
# buffering holds chunks back.
ncpu=$(nproc)
mkdir -p "$work/nginx/logs" "$work/nginx/tmp"
chmod -R a+rwx "$work/nginx"
nginx_port=""
nginx_stream_port=""
for _ in 1 2 3 4 5; do
  port=$(pick_port)
  sport=$(pick_port)
  [[ $port != "$sport" ]] || continue
  cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
worker_processes $ncpu;
worker_rlimit_nofile $((8 * many_streams + 8192));
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections $((4 * many_streams + 4096)); }
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
  server {
    listen 127.0.0.1:$sport;
    location / {
      proxy_pass http://sims;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }
  }
}
EOF
  "$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log" \
    2>>"$work/nginx/start.log" &
  npid=$!
  if listening "$npid" "$port" "$sport"; then
    nginx_port=$port
    nginx_stream_port=$sport
    pids+=("$npid")
    break
  fi
  kill -TERM "$npid" 2>/dev/null || true
  wait "$npid" 2>/dev/null || true
done
if [[ -z "$nginx_port" ]]; then
  echo "bench: nginx did not start:" >&2
  cat "$work/nginx/start.log" "$work/nginx/logs/error.log" >&2 || true
  exit 1
fi

body='{"model":"llama3.2","prompt":"Why is the sky blue?","stream":false}'
for target in "sim:$sim1_port" "sim:$sim2_port" "nginx:$nginx_port" "nginx:$nginx_stream_port" \
  "corral:$proxy_port"; do
  code=$(curl -s -o "$work/check.out" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "$body" "http://127.0.0.1:${target#*:}/api/generate" || true)
  if [[ "$code" != 200 ]]; then
    echo "bench: ${target%%:*} on port ${target#*:} answered $code: $(head -c 300 "$work/check.out")" >&2
    exit 1
  fi
done

# --- measurement helpers -----------------------------------------------------------------------
rss_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

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

# run_loadgen NAME ARGS...: runs corral-loadgen and stores its LOADGEN line in $work/NAME.lg.
run_loadgen() {
  local name=$1
  shift
  "$loadgen_bin" "$@" >"$work/$name.out" 2>&1 || true
  grep '^LOADGEN ' "$work/$name.out" >"$work/$name.lg" || {
    echo "bench: corral-loadgen $name gave no result:" >&2
    cat "$work/$name.out" >&2
    exit 1
  }
}
lg() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" "$work/$1.lg"; }
# Rounded microseconds.
lgi() { awk -v x="$(lg "$1" "$2")" 'BEGIN { printf "%.0f", x }'; }
lg_errors() {
  local n=0 k
  for k in err_status err_io err_connect err_stream unfinished; do
    n=$((n + $(lg "$1" "$k" | cut -d. -f1 || true) + 0))
  done
  echo "$n"
}

# sample_rss FILE: samples corral-proxy's VmRSS every 200 ms into FILE (the highest so far)
# until stop_sampler; the sampler's pid is in $sampler.
sample_rss() {
  (
    max=0
    while kill -0 "$proxy_pid" 2>/dev/null; do
      v=$(rss_kb "$proxy_pid" VmRSS)
      ((v > max)) && max=$v
      echo "$max" >"$1"
      sleep 0.2
    done
  ) &
  sampler=$!
  pids+=("$sampler")
}
stop_sampler() { kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
signed() { awk -v x="$1" 'BEGIN { printf "%s%.0f", (x >= 0 ? "+" : ""), x }'; }
# holds VALUE OP LIMIT: "yes" or "**no**".
holds() { awk -v x="$1" -v t="$3" -v op="$2" \
  'BEGIN { ok = (op == ">=") ? (x >= t) : (op == "<=") ? (x <= t) : (x < t); print ok ? "yes" : "**no**" }'; }

# The floor of one relay hop, for the per-chunk figure: HAProxy in TCP mode, an event loop that
# forwards bytes between each client connection and a connection of its own to a node (round
# robin), with no HTTP and no routing; only the 32-stream rounds use it. Whatever a proxy adds to
# a chunk beyond this is its own; what this adds, the machine charges any relay (a wake-up, a
# read and a write per chunk).
relay_port=""
for _ in 1 2 3 4 5; do
  port=$(pick_port)
  cat >"$work/haproxy.cfg" <<EOF
global
  maxconn 1024
defaults
  mode tcp
  timeout connect 5s
  timeout client 600s
  timeout server 600s
frontend relay
  bind 127.0.0.1:$port
  default_backend sims
backend sims
  balance roundrobin
  server sim1 127.0.0.1:$sim1_port
  server sim2 127.0.0.1:$sim2_port
EOF
  "$haproxy_bin" -db -f "$work/haproxy.cfg" 2>>"$work/haproxy.log" &
  hpid=$!
  if listening "$hpid" "$port"; then
    relay_port=$port
    pids+=("$hpid")
    break
  fi
  kill -TERM "$hpid" 2>/dev/null || true
  wait "$hpid" 2>/dev/null || true
done
if [[ -z "$relay_port" ]]; then
  echo "bench: haproxy did not start:" >&2
  cat "$work/haproxy.log" >&2 || true
  exit 1
fi

proxy_rss_idle=$(rss_kb "$proxy_pid" VmRSS)

echo "bench: corral-proxy :$proxy_port, nginx :$nginx_port and :$nginx_stream_port (streams)" \
  "($ncpu workers), sims :$sim1_port :$sim2_port; load average $load_start"

declare -A port_of=([direct]=$sim1_port [nginx]=$nginx_port [corral]=$proxy_port)
# Open-loop and streaming runs spread over both nodes when direct, like the proxies.
declare -A ports_of=([direct]="$sim1_port,$sim2_port" [nginx]=$nginx_port [corral]=$proxy_port)
declare -A stream_ports_of=([direct]="$sim1_port,$sim2_port" [nginx]=$nginx_stream_port
  [corral]=$proxy_port [relay]=$relay_port)
targets=(direct nginx corral)
# The few-streams rounds also run through the bare relay (HAProxy, TCP), the floor of one hop.
few_targets=(direct relay nginx corral)

# --- 1, 2: throughput and closed-loop latency (wrk) ------------------------------------------------
for t in "${targets[@]}"; do
  # Warm-up: opens the upstream keep-alive connections and grows the thread pools.
  run_wrk "warm-$t" "${port_of[$t]}" 256 2 2
done

for conns in 32 256; do
  for t in "${targets[@]}"; do
    if [[ $t == corral && $conns == 256 ]]; then
      sample_rss "$work/rss_load"
      run_wrk "$t-c$conns" "${port_of[$t]}" "$conns" 2 "$duration"
      stop_sampler
    else
      run_wrk "$t-c$conns" "${port_of[$t]}" "$conns" 2 "$duration"
    fi
    echo "bench: $t c=$conns $(rps "$t-c$conns") req/s, $(errors "$t-c$conns") errors" \
      "$(grep -o 'err_.*' "$work/$t-c$conns.wrk")"
  done
done
proxy_rss_load=$(cat "$work/rss_load")

for t in "${targets[@]}"; do
  run_wrk "$t-c1" "${port_of[$t]}" 1 1 "$lat_duration"
  echo "bench: $t c=1 p50 $(field "$t-c1" p50_us) us, p99 $(field "$t-c1" p99_us) us"
done

# --- 3: open-loop latency against offered load (corral-loadgen open) -----------------------------
# The rates are fractions of what nginx served at 32 connections in this run, so the curve
# covers the same share of the machine whatever else runs on it.
n32_base=$(rps nginx-c32)
rates=()
for f in "${open_fractions[@]}"; do
  rates+=("$(awk -v f="$f" -v n="$n32_base" 'BEGIN { r = int(f * n / 100 + 0.5) * 100; print (r < 100 ? 100 : r) }')")
done
: >"$work/open.dat"
open_errors=0
for rate in "${rates[@]}"; do
  line="$rate"
  for t in "${targets[@]}"; do
    run_loadgen "open-$t-$rate" open --port "${ports_of[$t]}" --rate "$rate" --warmup 1 \
      --duration "$open_duration" --connections 64 --drain 2
    n="open-$t-$rate"
    open_errors=$((open_errors + $(lg "$n" err_status) + $(lg "$n" err_io) + $(lg "$n" err_connect)))
    line+=" $(lg "$n" p50_us) $(lg "$n" p99_us) $(lg "$n" achieved_rps)"
    echo "bench: open loop $t at $rate req/s: p50 $(lgi "$n" p50_us) us, p99 $(lgi "$n" p99_us) us," \
      "p99.9 $(lgi "$n" p999_us) us, achieved $(lg "$n" achieved_rps) req/s, late $(lg "$n" late)"
  done
  echo "$line" >>"$work/open.dat"
done

# --- 4: streaming (corral-loadgen stream), the nodes pacing tokens ---------------------------------
# sim_config JSON: applies a run-time configuration to both nodes.
sim_config() {
  local p
  for p in "$sim1_port" "$sim2_port"; do
    curl -fsS -o /dev/null "http://127.0.0.1:$p/_sim/config" -d "$1"
  done
}
stream_body='{"model":"llama3.2","prompt":"Why is the sky blue?","stream":true}'
# A few streams, tokens every 10 ms: the relay's cost per stream and per chunk.
few_streams=32
few_tokens=40
few_interval_ms=10
stream_rounds=${BENCH_STREAM_ROUNDS:-7}
stream_round_s=2
sim_config "{\"fast\":false,\"load_delay_ms\":0,\"jitter_ms\":0,\"tokens\":$few_tokens,\"token_interval_ms\":$few_interval_ms}"
# The three targets take turns in short rounds, and each figure is the median over the rounds:
# the machine's load drifts over a run, and one long run per target would charge that drift to
# whichever target ran at the worst moment.
for ((r = 1; r <= stream_rounds; r++)); do
  for t in "${few_targets[@]}"; do
    run_loadgen "stream-$t-$r" stream --port "${stream_ports_of[$t]}" --streams "$few_streams" \
      --ramp 0.5 --duration "$stream_round_s" --drain 5 --body "$stream_body"
  done
done
for t in "${few_targets[@]}"; do
  n="stream-$t"
  # One LOADGEN line for the target: times (*_us) the median over the rounds, counts summed.
  cat "$work/$n"-*.lg | awk '
    { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1], NR] = kv[2]; keys[kv[1]] = 1 } }
    END {
      line = "LOADGEN"
      for (k in keys) {
        if (k ~ /_us$/) {
          m = 0
          for (i = 1; i <= NR; i++) a[++m] = v[k, i] + 0
          for (i = 2; i <= m; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
          val = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
        } else if (k == "mode") {
          val = v[k, 1]
        } else {
          val = 0
          for (i = 1; i <= NR; i++) val += v[k, i]
        }
        line = line " " k "=" val
      }
      print line
    }' >"$work/$n.lg"
  echo "bench: $few_streams streams $t ($stream_rounds rounds, medians): first token p50 $(lgi "$n" ttft_p50_us) us, p99" \
    "$(lgi "$n" ttft_p99_us) us; gap p50 $(lgi "$n" gap_p50_us) us, p99 $(lgi "$n" gap_p99_us) us;" \
    "chunk transit p50 $(lgi "$n" transit_p50_us) us, p99 $(lgi "$n" transit_p99_us) us;" \
    "$(lg "$n" ok) answers, $(lg_errors "$n") errors"
done
# Many streams open at once, tokens every 200 ms: what one proxy holds.
many_tokens=10
many_interval_ms=200
sim_config "{\"tokens\":$many_tokens,\"token_interval_ms\":$many_interval_ms}"
for t in "${targets[@]}"; do
  n="many-$t"
  if [[ $t == corral ]]; then sample_rss "$work/rss_streams"; fi
  run_loadgen "$n" stream --port "${stream_ports_of[$t]}" --streams "$many_streams" --ramp 2 \
    --duration "$stream_duration" --drain 10 --body "$stream_body"
  if [[ $t == corral ]]; then stop_sampler; fi
  echo "bench: $many_streams streams $t: $(lg "$n" peak_in_flight) in flight at most ($(lg "$n" peak_open)" \
    "streaming), first token p99" \
    "$(lgi "$n" ttft_p99_us) us, gap p99 $(lgi "$n" gap_p99_us) us; $(lg "$n" ok) answers," \
    "$(lg_errors "$n") errors"
done
proxy_rss_streams=$(cat "$work/rss_streams")
proxy_hwm=$(rss_kb "$proxy_pid" VmHWM)
sim_config '{"fast":true}'

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
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- control plane (bench/control.sh, when present) ----------------------------------------------
control_rows=""
if [[ -x "$bench_dir/control.sh" ]]; then
  echo "bench: control plane (bench/control.sh)"
  if ! control_rows=$("$bench_dir/control.sh" "$build_dir" | grep '^|' | grep -v '^| *figure *|' \
    | grep -v '^|[-| ]*$'); then
    echo "bench: bench/control.sh failed; its rows are left out" >&2
    control_rows="| control plane (bench/control.sh) | failed, see its output | – | **no** |"
  fi
fi

# --- report ------------------------------------------------------------------------------------
wrk_errors=0
for n in direct nginx corral; do
  for c in 1 32 256; do wrk_errors=$((wrk_errors + $(errors "$n-c$c"))); done
done

d32=$(rps direct-c32); n32=$(rps nginx-c32); c32=$(rps corral-c32)
d256=$(rps direct-c256); n256=$(rps nginx-c256); c256=$(rps corral-c256)
dp50=$(field direct-c1 p50_us); np50=$(field nginx-c1 p50_us); cp50=$(field corral-c1 p50_us)
dp99=$(field direct-c1 p99_us); np99=$(field nginx-c1 p99_us); cp99=$(field corral-c1 p99_us)
r32=$(ratio "$c32" "$n32"); r256=$(ratio "$c256" "$n256")

# Open loop: p99 at the lowest and at the middle rate, and the highest rate each target served
# at its offered rate (achieved ≥ 95 %) with p99 under 1 ms.
low_rate=${rates[0]}
mid_rate=${rates[$((${#rates[@]} / 2))]}
best_rate() {
  local t=$1 best=0 rate
  for rate in "${rates[@]}"; do
    if awk -v p="$(lg "open-$t-$rate" p99_us)" -v a="$(lg "open-$t-$rate" achieved_rps)" -v r="$rate" \
      'BEGIN { exit !(p <= 1000 && a >= 0.95 * r) }'; then best=$rate; fi
  done
  echo "$best"
}
open_p99() { lgi "open-$1-$2" p99_us; }
open_row() {
  local rate=$1 d n c
  d=$(open_p99 direct "$rate"); n=$(open_p99 nginx "$rate"); c=$(open_p99 corral "$rate")
  echo "| open-loop p99 at $rate req/s (µs) | corral $c ($(signed $((c - d))) over direct $d); nginx $n ($(signed $((n - d)))) | latency-against-load plot (docs/latency-under-load.svg) | see plot |"
}
bd=$(best_rate direct); bn=$(best_rate nginx); bc=$(best_rate corral)

ttft_added() { awk -v a="$(lg "stream-$1" "$2")" -v b="$(lg stream-direct "$2")" 'BEGIN { printf "%.0f", a - b }'; }
t50c=$(ttft_added corral ttft_p50_us); t50n=$(ttft_added nginx ttft_p50_us)
t99c=$(ttft_added corral ttft_p99_us); t99n=$(ttft_added nginx ttft_p99_us)
t99r=$(ttft_added relay ttft_p99_us)
g99c=$(ttft_added corral gap_p99_us); g99n=$(ttft_added nginx gap_p99_us)
g50c=$(ttft_added corral gap_p50_us)
x50c=$(ttft_added corral transit_p50_us); x99c=$(ttft_added corral transit_p99_us)
x50n=$(ttft_added nginx transit_p50_us); x99n=$(ttft_added nginx transit_p99_us)
x50r=$(ttft_added relay transit_p50_us); x99r=$(ttft_added relay transit_p99_us)
stream_errors=0
for t in "${targets[@]}"; do
  stream_errors=$((stream_errors + $(lg_errors "stream-$t") + $(lg_errors "many-$t")))
done
stream_errors=$((stream_errors + $(lg_errors stream-relay)))
many_err_c=$(lg_errors many-corral)
many_peak_c=$(lg many-corral peak_in_flight)
many_ok=$(awk -v e="$many_err_c" -v p="$many_peak_c" -v n="$many_streams" -v r="$proxy_rss_streams" \
  'BEGIN { print (e == 0 && p >= n && r < 250000) ? "yes" : "**no**" }')
ms() { awk -v x="$(lg "$1" "$2")" 'BEGIN { printf "%.0f", x / 1000 }'; }
many_row() {
  local t=$1
  echo "$t: $(lg "many-$t" peak_in_flight) in flight at most, $(lg_errors "many-$t") errors, first token p99 $(ms "many-$t" ttft_p99_us) ms, gap p99 $(ms "many-$t" gap_p99_us) ms"
}

table=$(cat <<EOF
| figure | measured | target | holds? |
|---|---|---|---|
| req/s, 32 connections, two nodes | corral $c32 = **$r32×** nginx ($n32); direct to one node $d32 | ≥ 0.5× nginx | $(holds "$r32" ">=" 0.5) |
| req/s, 256 connections, two nodes | corral $c256 = **$r256×** nginx ($n256); direct to one node $d256 | ≥ 0.5× nginx | $(holds "$r256" ">=" 0.5) |
| added latency, 1 connection, p50 (closed loop) | corral **$(signed $((cp50 - dp50))) µs** over direct ($dp50 µs); nginx $(signed $((np50 - dp50))) µs | ≤ 50 µs over direct | $(holds $((cp50 - dp50)) "<=" 50) |
| added latency, 1 connection, p99 (closed loop) | corral **$(signed $((cp99 - dp99))) µs** over direct ($dp99 µs); nginx $(signed $((np99 - dp99))) µs | – | – |
$(open_row "$low_rate")
$(open_row "$mid_rate")
| highest offered rate served with open-loop p99 ≤ 1 ms (req/s, of those tried) | corral $bc; nginx $bn; direct (two nodes) $bd | – | – |
| added time to first token, $few_streams streams, p50 | corral **$(signed "$t50c") µs** over direct ($(lgi stream-direct ttft_p50_us) µs, one ${few_interval_ms} ms token interval); nginx $(signed "$t50n") µs | – | – |
| added time to first token, $few_streams streams, p99 | corral **$(signed "$t99c") µs** over direct ($(lgi stream-direct ttft_p99_us) µs); nginx $(signed "$t99n") µs; bare byte relay (HAProxy in TCP mode) $(signed "$t99r") µs | < 1000 µs | $(holds "$t99c" "<" 1000) |
| added gap between chunks, $few_streams streams, p99 (includes the node's pacing jitter) | corral **$(signed "$g99c") µs** over direct ($(lgi stream-direct gap_p99_us) µs at ${few_interval_ms} ms pacing; p50 $(signed "$g50c")); nginx $(signed "$g99n") µs | – | – |
| added delay per chunk, node's \`created_at\` to client, $few_streams streams, p99 (p50) | corral **$(signed "$x99c") µs** ($(signed "$x50c")) over direct ($(lgi stream-direct transit_p99_us) µs); nginx $(signed "$x99n") µs ($(signed "$x50n")); bare byte relay (HAProxy in TCP mode, the floor of one hop) $(signed "$x99r") µs ($(signed "$x50r")) | < 100 µs (the gap target) | $(holds "$x99c" "<" 100) |
| $many_streams streams open at once through one proxy (tokens every ${many_interval_ms} ms) | $(many_row corral), proxy RSS **$(mib "$proxy_rss_streams") MiB**; $(many_row nginx); $(many_row direct) | $many_streams with no error, RSS < 256 MB | $many_ok |
| corral-proxy RSS idle | **$(mib "$proxy_rss_idle") MiB** (under 256 connections $(mib "$proxy_rss_load") MiB; peak of the run, VmHWM, $(mib "$proxy_hwm") MiB) | < 20 MB | $(holds "$proxy_rss_idle" "<" $((20 * 1000 * 1000 / 1024))) |
${control_rows}
EOF
)
# Drop the empty line left when there are no control-plane rows.
table=$(grep -v '^$' <<<"$table")

open_table=$(
  echo "| offered req/s | direct p50 / p99 (µs) | nginx p50 / p99 (µs) | corral p50 / p99 (µs) | achieved req/s direct / nginx / corral |"
  echo "|---|---|---|---|---|"
  awk '{ printf "| %s | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f / %.0f |\n",
         $1, $2, $3, $5, $6, $8, $9, $4, $7, $10 }' "$work/open.dat"
)

echo
echo "$table"
echo
echo "Open loop, latency from the intended send time:"
echo
echo "$open_table"
echo
echo "failed requests over all runs: wrk $wrk_errors, open loop $open_errors, streams $stream_errors" \
  "(answers cut short or with an error line included); load average $load_start at the start," \
  "$load_end at the end; $(($(date +%s) - started)) s"

# The plot: p99 (solid) and p50 (dashed) against offered load, log scale.
plot_out="$work/latency-under-load.svg"
gnuplot -e "data='$work/open.dat'; out='$plot_out'" "$bench_dir/latency_plot.gp"

if [[ "${BENCH_NO_DOC:-0}" != 1 && -f "$doc" ]]; then
  cp "$plot_out" "$plot"
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  nginx_ver=$("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //' || true)
  # wrk -v exits 1 after printing its version.
  wrk_ver=$(wrk -v 2>&1 | head -1 | awk '{print $2}' || true)
  command="bench/run.sh $1"
  for v in BENCH_DURATION BENCH_LAT_DURATION BENCH_OPEN_DURATION BENCH_OPEN_FRACTIONS BENCH_STREAMS \
    BENCH_STREAM_DURATION BENCH_STREAM_ROUNDS BENCH_PROFILE; do
    if [[ -n "${!v:-}" ]]; then command="$v='${!v}' $command"; fi
  done
  commit=$(git -C "$repo_dir" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=""
  if [[ -n "$(git -C "$repo_dir" status --porcelain -- common dataplane sim 2>/dev/null)" ]]; then
    dirty=" plus uncommitted changes in common/, dataplane/ or sim/"
  fi
  {
    echo "<!-- bench:run:begin (written by bench/run.sh; edits here are replaced) -->"
    echo "### Latest run: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $ncpu CPUs ($cpu), kernel $(uname -r), $nginx_ver, wrk $wrk_ver,"
    echo "gnuplot $(gnuplot --version | awk '{print $2}'); corral at $commit$dirty (release build in"
    echo "\`$build_dir\`). Command: \`$command\` (what \`make bench\` runs after building). Load"
    echo "average (1, 5, 15 min) $load_start at the start, $load_end at the end. Failed requests:"
    echo "wrk $wrk_errors, open loop $open_errors, streams $stream_errors."
    echo
    echo "$table"
    echo
    echo "Open loop, $open_duration s per rate after 1 s of warm-up, 64 connections, latency from"
    echo "the intended send time (rates are fractions ${open_fractions[*]} of nginx's"
    echo "32-connection throughput in this run):"
    echo
    echo "$open_table"
    echo
    echo "![latency against offered load](latency-under-load.svg)"
    if [[ -s "$work/profile.txt" ]]; then
      echo
      echo "Profile of corral-proxy at one connection (\`BENCH_PROFILE=1\`):"
      echo
      echo '```'
      sed 's/^bench: //' "$work/profile.txt"
      echo '```'
    fi
    echo "<!-- bench:run:end -->"
  } >"$work/run.md"
  if grep -q '^<!-- bench:run:begin' "$doc"; then
    awk -v block="$work/run.md" '
      /^<!-- bench:run:begin/ { while ((getline l < block) > 0) print l; skip = 1; next }
      /^<!-- bench:run:end/ { skip = 0; next }
      !skip { print }' "$doc" >"$work/doc.new"
    cat "$work/doc.new" >"$doc"
  else
    { echo; cat "$work/run.md"; } >>"$doc"
  fi
  echo "bench: wrote the run into $doc and the plot to $plot"
fi
