#!/usr/bin/env bash
# `make run`: the whole system on this machine. Starts corral-control (SQLite in the data dir) and
# one corral-proxy on :11434. With CORRAL_NODES unset and no node registered, or only the demo
# nodes an earlier `make run` registered (sim-1, sim-2), it also starts two corral-sim nodes,
# registers those missing through the API, and says so. Ctrl-C stops everything.
#
# Environment:
#   CORRAL_DATA_DIR   data dir of the control plane (default ./var)
#   CORRAL_CONTROL    control plane gRPC address (default 127.0.0.1:11400)
#   CORRAL_LISTEN     proxy HTTP address (default 0.0.0.0:11434)
#   CORRAL_METRICS    control plane Prometheus /metrics address (default 127.0.0.1:11402)
#   CORRAL_HTTP       control plane HTTP address: admin API, /docs, web console (default 127.0.0.1:11401)
#   CORRAL_NODES      comma-separated Ollama nodes to register if missing: [NAME=]http://host:port
set -euo pipefail

build_dir=${1:-build}
bin="$build_dir/bin"
data_dir=${CORRAL_DATA_DIR:-./var}
control=${CORRAL_CONTROL:-127.0.0.1:11400}
listen=${CORRAL_LISTEN:-0.0.0.0:11434}
metrics=${CORRAL_METRICS:-127.0.0.1:11402}
http=${CORRAL_HTTP:-127.0.0.1:11401}
mkdir -p "$data_dir"

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

ctl() { CORRAL_DATA_DIR="$data_dir" "$bin/corralctl" --control "$control" "$@"; }

# Waits up to $2 seconds for command $1 (a function name) to succeed.
wait_for() {
  local what=$1 deadline=$((SECONDS + $2))
  until "$what" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "run: timed out waiting for $what" >&2
      return 1
    fi
    sleep 0.1
  done
}

echo "run: starting corral-control on $control (data dir $data_dir, metrics on http://$metrics/metrics)"
"$bin/corral-control" --listen "$control" --data-dir "$data_dir" --metrics-listen "$metrics" \
  --http-listen "$http" &
pids+=($!)
control_up() { ctl node list --json; }
wait_for control_up 20

node_count() { ctl node list --json | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log((j.nodes||[]).length)})'; }

if [[ -n "${CORRAL_NODES:-}" ]]; then
  IFS=',' read -ra entries <<<"$CORRAL_NODES"
  i=0
  for entry in "${entries[@]}"; do
    i=$((i + 1))
    if [[ "$entry" == *=* ]]; then name=${entry%%=*}; url=${entry#*=}; else name="node-$i"; url=$entry; fi
    if ctl node get "$name" >/dev/null 2>&1; then continue; fi
    ctl node add "$name" "$url"
  done
elif [[ "$(node_count)" == "0" ]] || ctl node get sim-1 >/dev/null 2>&1 ||
  ctl node get sim-2 >/dev/null 2>&1; then
  # A second `make run` finds the demo nodes registered by the first: they need their sims again.
  echo "run: CORRAL_NODES is unset: starting the two demo corral-sim nodes"
  "$bin/corral-sim" --listen 127.0.0.1:11435 --models llama3.2:latest,qwen3:8b,all-minilm:latest &
  pids+=($!)
  "$bin/corral-sim" --listen 127.0.0.1:11436 --models llama3.2:latest,mistral:latest &
  pids+=($!)
  sim_up() { node -e 'fetch("http://127.0.0.1:11435/").then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' &&
    node -e 'fetch("http://127.0.0.1:11436/").then(r=>process.exit(r.ok?0:1),()=>process.exit(1))'; }
  wait_for sim_up 20
  for entry in sim-1=http://127.0.0.1:11435 sim-2=http://127.0.0.1:11436; do
    if ctl node get "${entry%%=*}" >/dev/null 2>&1; then continue; fi
    ctl node add "${entry%%=*}" "${entry#*=}"
    echo "run: registered ${entry%%=*} (${entry#*=})"
  done
fi

echo "run: starting corral-proxy on $listen"
"$bin/corral-proxy" --listen "$listen" --control "$control" \
  --control-token-file "$data_dir/proxy.token" --snapshot "$data_dir/proxy-snapshot.json" --id proxy-1 &
pids+=($!)
proxy_port=${listen##*:}
proxy_up() { node -e "fetch('http://127.0.0.1:$proxy_port/api/proxy').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"; }
wait_for proxy_up 20

cat <<MSG
run: Corral is up.
  Ollama endpoint   http://127.0.0.1:$proxy_port   (try: curl http://127.0.0.1:$proxy_port/api/tags)
  control plane     $control   (try: $bin/corralctl state)
  web console       http://$http/   (sign in with the admin token; API docs at http://$http/docs)
  admin token       $data_dir/admin.token
Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
