#!/usr/bin/env bash
# Installs the official npm clients (`ollama`, `openai`) the end-to-end tests drive the proxy
# with, pinned by tests/e2e/package-lock.json. Runs npm only when node_modules is missing or
# older than the lock file.
set -euo pipefail
cd "$(dirname "$0")/../tests/e2e"
if [[ -d node_modules && node_modules/.package-lock.json -nt package-lock.json ]]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
