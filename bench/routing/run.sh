#!/usr/bin/env bash
# bench/routing/run.sh BUILD_DIR — routing quality against model-blind balancers, behind
# `make bench-routing` (docs/routing-quality.md).
#
# Starts, on loopback, ROUTING_NODES corral-sim processes acting as GPU nodes: each holds
# ROUTING_VRAM_GB of models (least recently used evicted), loads a model in a time that grows with
# its size, runs ROUTING_PARALLEL generations per loaded model and queues the rest without limit,
# as Ollama does. Every node has the same dozen models installed. One seeded trace (Poisson
# arrivals at ROUTING_RATE requests per second for ROUTING_DURATION seconds, Zipf-like model
# popularity, streamed /api/generate and /api/chat) is replayed against each target in turn:
#   corral       corral-control (data dir in the temp dir) with the nodes added through corralctl,
#                and one corral-proxy;
#   least_conn   nginx `least_conn` over the same nodes (proxy_buffering off): the model-blind
#                balancer an operator would otherwise put in front of Ollama;
#   round_robin  nginx round robin over the same nodes.
# Before each target the nodes are reset (nothing loaded, counters zero), so each starts cold.
# Per target: mean, p50 and p99 time to first token (from each request's due time to its first
# content line), failed requests, and from the nodes' /_sim/stats the cold loads, seconds spent
# loading and evictions. Prints a table; unless ROUTING_NO_DOC=1 writes it, with the exact command,
# into docs/routing-quality.md (between the `routing:run` markers) and a plot of the time to first
# token's distribution to docs/routing-ttft.svg. Everything started here is stopped on exit.
#
# Time runs faster than on a real fleet: loads, the control plane's probe interval and the models'
# keep_alive are ROUTING_SCALE (20) times shorter than their real values (2 s per GB plus 1 s a
# load, a 5 s probe interval, Ollama's 5 min keep_alive), answers are 24 tokens 12 ms apart. About
# 3.5 minutes with the defaults (three targets of ROUTING_DURATION s each plus draining and set-up;
# 191 to 196 s measured on a 2-core machine).
#
# Environment (defaults): ROUTING_NODES (4), ROUTING_VRAM_GB (24), ROUTING_PARALLEL (4),
# ROUTING_RATE (8), ROUTING_DURATION (60), ROUTING_SEED (42), ROUTING_ZIPF (1.0),
# ROUTING_SCALE (20), ROUTING_TOKENS (24), ROUTING_TOKEN_MS (12), ROUTING_TIMEOUT_S (120, a
# request's limit before it counts as failed), ROUTING_TARGETS ("corral least_conn round_robin"),
# ROUTING_NO_DOC=1 (print only), ROUTING_KEEP_DIR (copy the trace, each target's per-request
# results, TTFT distribution and nodes' /_sim/stats there, for a closer look).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bench/routing/run.sh BUILD_DIR" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
repo_dir=$(cd "$(dirname "$0")/../.." && pwd)
routing_dir="$repo_dir/bench/routing"
bin="$build_dir/bin"
nodes=${ROUTING_NODES:-4}
vram_gb=${ROUTING_VRAM_GB:-24}
parallel=${ROUTING_PARALLEL:-4}
rate=${ROUTING_RATE:-8}
duration=${ROUTING_DURATION:-60}
seed=${ROUTING_SEED:-42}
zipf=${ROUTING_ZIPF:-1.0}
scale=${ROUTING_SCALE:-20}
tokens=${ROUTING_TOKENS:-24}
token_ms=${ROUTING_TOKEN_MS:-12}
timeout_s=${ROUTING_TIMEOUT_S:-120}
read -r -a targets <<<"${ROUTING_TARGETS:-corral least_conn round_robin}"
doc="$repo_dir/docs/routing-quality.md"
plot="$repo_dir/docs/routing-ttft.svg"
started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# Real-fleet figures, divided by the scale: a load costs 2 s per GB of weights plus 1 s, the
# control plane probes every 5 s, a model stays loaded 5 min after its last request.
load_ms_per_gb=$((2000 / scale))
load_ms=$((1000 / scale))
probe_ms=$((5000 / scale))
keep_alive="$((300 / scale))s"

# A dozen models, most popular first, sizes of their common 4-bit builds. Popularity does not
# follow size: the third most asked-for model is a 12B one.
models="llama3.1:8b=4920753328,qwen2.5:7b=4683087332,gemma3:12b=8149190253,mistral:7b=4113301824"
models+=",llama3.2:3b=2019393189,phi4:14b=9053116391,gemma3:4b=3338801804"
models+=",codellama:13b=7365960935,qwen2.5-coder:14b=8988124069,mistral-nemo:12b=7071713232"
models+=",llama3.2:1b=1321098329,starcoder2:15b=9083417326"

for b in corral-sim corral-control corral-proxy corralctl corral-routing-bench; do
  if [[ ! -x "$bin/$b" ]]; then
    echo "bench-routing: $bin/$b is missing; build it first (make bench-routing does)" >&2
    exit 1
  fi
done

missing=()
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null || missing+=(nginx-light)
command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
command -v jq >/dev/null || missing+=(jq)
if ((${#missing[@]} > 0)); then
  echo "bench-routing: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d /tmp/corral-bench-routing.XXXXXX)
pids=()
# stop PID...: TERM, then KILL after 5 s; the run must not leave anything behind.
stop() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
target_pids=()
cleanup() {
  stop "${target_pids[@]+"${target_pids[@]}"}" "${pids[@]+"${pids[@]}"}"
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
  echo "bench-routing: no port in $file" >&2
  return 1
}

# A port nothing listens on now (nginx cannot report the port it bound; a lost race is retried).
pick_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! ss -Htln "sport = :$port" | grep -q .; then echo "$port"; return; fi
  done
}

# listening PID PORT: true once PID listens on PORT, within 5 s.
listening() {
  local pid=$1 port=$2
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 1
    if ss -Htln "sport = :$port" | grep -q .; then return 0; fi
    sleep 0.1
  done
  return 1
}

# --- the trace and the nodes -------------------------------------------------------------------
"$bin/corral-routing-bench" trace --models "$models" --seed "$seed" --rate "$rate" \
  --duration "$duration" --zipf "$zipf" --out "$work/trace.txt" >/dev/null
requests=$(grep -vc '^#' "$work/trace.txt")

# --max-queue 0: a request waits for its model's slot without limit, as on a real Ollama node.
sim_args=(--models "$models" --vram-gb "$vram_gb" --num-parallel "$parallel" --max-queue 0
  --load-delay-ms "$load_ms" --load-ms-per-gb "$load_ms_per_gb" --tokens "$tokens"
  --token-interval-ms "$token_ms" --threads 1024 --log-level warn)
sim_ports=()
for i in $(seq "$nodes"); do
  "$bin/corral-sim" --listen 127.0.0.1:0 --port-file "$work/sim$i.port" "${sim_args[@]}" \
    >"$work/sim$i.log" 2>&1 &
  pids+=($!)
  sim_ports+=("$(wait_port_file "$work/sim$i.port" $!)")
done

reset_sims() {
  local port
  for port in "${sim_ports[@]}"; do
    curl -sf "http://127.0.0.1:$port/_sim/reset" -d "{}" -o /dev/null
  done
}

# sim_sum FIELD: the sum over the nodes of a number in /_sim/stats (docs/sim.md).
sim_sum() {
  local port total=0 v
  for port in "${sim_ports[@]}"; do
    v=$(curl -sf "http://127.0.0.1:$port/_sim/stats" | jq -r ".$1 // \"-\"")
    if [[ $v == - ]]; then echo -; return; fi
    total=$(awk -v a="$total" -v b="$v" 'BEGIN { print a + b }')
  done
  echo "$total"
}

# --- targets -----------------------------------------------------------------------------------
target_port=""

start_corral() {
  local data="$work/corral" cport pport i args
  mkdir -p "$data"
  "$bin/corral-control" --listen 127.0.0.1:0 --port-file "$work/control.port" --data-dir "$data" \
    --probe-interval-ms "$probe_ms" --no-discovery --http-listen off --log-level warn \
    >"$work/control.log" 2>&1 &
  target_pids+=($!)
  cport=$(wait_port_file "$work/control.port" $!)
  args=()
  if "$bin/corralctl" --help 2>&1 | grep -q -- '--num-parallel'; then
    args+=(--num-parallel "$parallel")
  fi
  for i in $(seq "$nodes"); do
    CORRAL_DATA_DIR="$data" "$bin/corralctl" --control "127.0.0.1:$cport" node add "sim-$i" \
      "http://127.0.0.1:${sim_ports[i - 1]}" --max-memory-gb "$vram_gb" "${args[@]}" >/dev/null
  done
  "$bin/corral-proxy" --listen 127.0.0.1:0 --port-file "$work/proxy.port" \
    --control "127.0.0.1:$cport" --control-token-file "$data/proxy.token" \
    --snapshot "$data/proxy-snapshot.json" --id bench-routing --log-level warn \
    >"$work/proxy.log" 2>&1 &
  target_pids+=($!)
  target_port=$(wait_port_file "$work/proxy.port" $!)
  # Ready when the proxy's snapshot has every node able to serve.
  for _ in $(seq 200); do
    if [[ $(curl -s "http://127.0.0.1:$target_port/api/proxy" | jq -r '.available_nodes // 0') \
      == "$nodes" ]]; then
      return 0
    fi
    sleep 0.1
  done
  echo "bench-routing: corral-proxy never had $nodes nodes available" >&2
  cat "$work/control.log" "$work/proxy.log" >&2
  return 1
}

start_nginx() {
  local policy=$1 port i servers="" npid
  for i in $(seq "$nodes"); do servers+="    server 127.0.0.1:${sim_ports[i - 1]};"$'\n'; done
  mkdir -p "$work/nginx/logs" "$work/nginx/tmp"
  chmod -R a+rwx "$work/nginx"
  for _ in 1 2 3 4 5; do
    port=$(pick_port)
    # As an operator puts nginx in front of Ollama: streams unbuffered, long reads (a cold load
    # sends nothing for a while), keep-alive to the nodes.
    cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  upstream nodes {
    $policy
$servers    keepalive 256;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://nodes;
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
    if listening "$npid" "$port"; then
      target_pids+=("$npid")
      target_port=$port
      return 0
    fi
    stop "$npid"
  done
  echo "bench-routing: nginx did not start:" >&2
  cat "$work/nginx/start.log" "$work/nginx/logs/error.log" >&2 || true
  return 1
}

run_target() {
  local t=$1
  target_pids=()
  reset_sims
  case $t in
    corral) start_corral ;;
    least_conn) start_nginx "least_conn;" ;;
    round_robin) start_nginx "" ;;
    *) echo "bench-routing: unknown target $t" >&2; exit 2 ;;
  esac
  # The readiness checks above touched only /api/version, /api/tags and /api/ps: nothing loaded.
  # A second reset zeroes what they counted, so the figures are the trace's alone.
  reset_sims
  echo "bench-routing: $t on :$target_port, $requests requests over ${duration} s"
  "$bin/corral-routing-bench" replay --trace "$work/trace.txt" --port "$target_port" \
    --results "$work/$t.results" --timeout-s "$timeout_s" --keep-alive "$keep_alive" \
    >"$work/$t.out" 2>"$work/$t.err" || true
  grep '^ROUTING ' "$work/$t.out" >"$work/$t.routing" || {
    echo "bench-routing: the replay against $t gave no result:" >&2
    cat "$work/$t.out" "$work/$t.err" >&2
    exit 1
  }
  sed 's/^/  /' "$work/$t.err" >&2
  echo "SIM loads=$(sim_sum loads)" \
    "load_seconds=$(awk -v s="$(sim_sum load_seconds)" 'BEGIN { printf "%.1f", s }')" \
    "evictions=$(sim_sum evictions) node_requests=$(sim_sum inference_requests)" >"$work/$t.sim"
  echo "  $(cat "$work/$t.routing") $(cat "$work/$t.sim")"
  stop "${target_pids[@]}"
  target_pids=()
  local i
  for i in $(seq "$nodes"); do
    curl -sf "http://127.0.0.1:${sim_ports[i - 1]}/_sim/stats" |
      jq 'del(.last_requests)' >"$work/$t.node$i.stats.json"
  done
}

echo "bench-routing: $nodes nodes (:${sim_ports[*]}), ${vram_gb} GB and $parallel slots per model" \
  "each; $requests requests at $rate/s; load average $load_start"
for t in "${targets[@]}"; do run_target "$t"; done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the table, the plot, the doc --------------------------------------------------------------
get() { sed -n "s/.*[ ]$2=\([0-9.-]*\).*/\1/p" "$work/$1.routing" "$work/$1.sim" | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "-") printf "%.3f", a / b; else print "-" }'; }
label() {
  case $1 in
    corral) echo "Corral" ;;
    least_conn) echo "nginx least_conn" ;;
    round_robin) echo "nginx round robin" ;;
  esac
}
table=$(
  echo "| target | mean TTFT (ms) | p50 (ms) | p99 (ms) | cold loads | s loading | evictions | failed requests |"
  echo "|---|---|---|---|---|---|---|---|"
  for t in "${targets[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s of %s |\n' "$(label "$t")" \
      "$(get "$t" ttft_mean_ms)" "$(get "$t" ttft_p50_ms)" "$(get "$t" ttft_p99_ms)" \
      "$(get "$t" loads)" "$(get "$t" load_seconds)" "$(get "$t" evictions)" \
      "$(get "$t" failed)" "$(get "$t" requests)"
  done
)

verdicts=""
if [[ -f "$work/corral.routing" && -f "$work/least_conn.routing" ]]; then
  holds() { awk -v x="$1" -v t="$2" 'BEGIN { print (x != "-" && x <= t) ? "yes" : "**no**" }'; }
  r_ttft=$(ratio "$(get corral ttft_mean_ms)" "$(get least_conn ttft_mean_ms)")
  # A mean over no successful request is no figure.
  if [[ $(get corral ok) == 0 ]]; then r_ttft=-; fi
  r_loads=$(ratio "$(get corral loads)" "$(get least_conn loads)")
  verdicts=$(
    echo "| target (issue 11) | measured | holds? |"
    echo "|---|---|---|"
    echo "| Corral's mean TTFT ≤ 1/5 of nginx least_conn's | $r_ttft of it | $(holds "$r_ttft" 0.2) |"
    echo "| Corral's cold loads ≤ 1/10 of nginx least_conn's | $r_loads of them | $(holds "$r_loads" 0.1) |"
    echo "| no failed request through Corral | $(get corral failed) failed | $(holds "$(get corral failed)" 0) |"
  )
fi

echo
echo "$table"
echo
echo "$verdicts"
elapsed=$(($(date +%s) - started))
echo
echo "bench-routing: load average $load_start at the start, $load_end at the end; ${elapsed} s"

# The plot: each target's time to first token, cumulative share of requests, log scale.
for t in "${targets[@]}"; do
  awk '!/^#/ && $6 == 1 { print $7 / 1000 }' "$work/$t.results" | sort -g |
    awk -v n="$(get "$t" ok)" '{ printf "%s %.5f\n", $1, NR / n }' >"$work/$t.cdf"
done
plot_files=""
plot_titles=""
for t in "${targets[@]}"; do
  plot_files+="$work/$t.cdf "
  plot_titles+="$(label "$t")|"
done
gnuplot -e "files='${plot_files% }'; titles='${plot_titles%|}'; out='$work/ttft.svg'" \
  "$routing_dir/ttft_cdf.gp"

if [[ -n "${ROUTING_KEEP_DIR:-}" ]]; then
  mkdir -p "$ROUTING_KEEP_DIR"
  cp "$work"/trace.txt "$work"/*.results "$work"/*.cdf "$work"/*.stats.json "$ROUTING_KEEP_DIR"/
  echo "bench-routing: kept the trace, results and node stats in $ROUTING_KEEP_DIR"
fi

if [[ "${ROUTING_NO_DOC:-0}" != 1 && -f "$doc" ]]; then
  cp "$work/ttft.svg" "$plot"
  command="bench/routing/run.sh $1"
  for v in ROUTING_NODES ROUTING_VRAM_GB ROUTING_PARALLEL ROUTING_RATE ROUTING_DURATION \
    ROUTING_SEED ROUTING_ZIPF ROUTING_SCALE ROUTING_TOKENS ROUTING_TOKEN_MS ROUTING_TIMEOUT_S \
    ROUTING_TARGETS; do
    if [[ -n "${!v:-}" ]]; then command="$v='${!v}' $command"; fi
  done
  commit=$(git -C "$repo_dir" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=""
  if [[ -n "$(git -C "$repo_dir" status --porcelain -- common dataplane controlplane sim ctl \
    2>/dev/null)" ]]; then
    dirty=" plus uncommitted changes in common/, dataplane/, controlplane/, ctl/ or sim/"
  fi
  {
    echo "<!-- routing:run:begin (written by bench/routing/run.sh; edits here are replaced) -->"
    echo "### Latest run: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Checkout at $commit$dirty; corral-proxy built $(date -u -r "$bin/corral-proxy" \
      '+%Y-%m-%d %H:%M UTC') (release build in \`$build_dir\`)."
    echo "Command: \`$command\` (what \`make bench-routing\` runs after building)."
    echo "$nodes nodes of $vram_gb GB, $parallel slots per model; $requests requests at $rate/s for"
    echo "$duration s, seed $seed, Zipf exponent $zipf; time ${scale}× faster than a real fleet"
    echo "(loads $load_ms ms + $load_ms_per_gb ms per GB, probes every $probe_ms ms, keep_alive"
    echo "$keep_alive; $tokens tokens $token_ms ms apart). $(nproc) CPUs, load average $load_start"
    echo "at the start, $load_end at the end; ${elapsed} s in all."
    echo
    echo "$table"
    echo
    echo "$verdicts"
    echo
    echo "![time to first token, cumulative share of requests](routing-ttft.svg)"
    echo "<!-- routing:run:end -->"
  } >"$work/run.md"
  if grep -q '^<!-- routing:run:begin' "$doc"; then
    awk -v block="$work/run.md" '
      /^<!-- routing:run:begin/ { while ((getline l < block) > 0) print l; skip = 1; next }
      /^<!-- routing:run:end/ { skip = 0; next }
      !skip { print }' "$doc" >"$work/doc.new"
    cat "$work/doc.new" >"$doc"
  else
    { echo; cat "$work/run.md"; } >>"$doc"
  fi
  echo "bench-routing: wrote the run into $doc and the plot to $plot"
fi
