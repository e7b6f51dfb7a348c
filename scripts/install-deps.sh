#!/usr/bin/env bash
# Installs the Debian packages Corral builds, tests and benchmarks with. Runs apt only when a
# package is missing, so `make test` on a prepared machine costs nothing here.
set -euo pipefail

packages=(
  cmake g++ make pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libcpp-httplib-dev nlohmann-json3-dev libsqlite3-dev libgtest-dev libgmock-dev
  libhttp-parser-dev
  prometheus  # promtool: tests lint the /metrics text with Prometheus's own checker
  openssl     # tests/tls makes its CA and certificates with the openssl command
  nodejs npm
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(nginx-light wrk gnuplot-nox haproxy jq)  # jq: bench/routing reads /_sim/stats
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# node and npm may come from outside Debian's packages on a developer machine; a working
# `node` and `npm` on PATH is enough.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || filtered+=("$p"); done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
