#!/usr/bin/env bash
# Installs the official npm clients (`ollama`, `openai`) the end-to-end tests drive the proxy
# with, pinned by tests/e2e/package-lock.json. Runs npm only when node_modules is missing or
# older than package.json or the lock file, so `make test` stays quick and offline once installed.
set -euo pipefail
cd "$(dirname "$0")/../tests/e2e"
stamp=node_modules/.package-lock.json  # npm rewrites it on every install
if [[ -f $stamp && $stamp -nt package-lock.json && $stamp -nt package.json ]]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "install-e2e-deps: npm is not on PATH; install Node.js 20+ and npm (scripts/install-deps.sh does)" >&2
  exit 1
fi
echo "install-e2e-deps: installing the npm clients in tests/e2e (npm ci)"
npm ci --no-audit --no-fund --loglevel=error
