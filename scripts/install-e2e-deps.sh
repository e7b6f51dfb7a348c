#!/usr/bin/env bash
# Installs the official npm clients (`ollama`, `openai`) the end-to-end tests drive the proxy
# with, pinned by tests/e2e/package-lock.json. Runs npm only when node_modules is missing or
# older than package.json or the lock file, so `make test` stays quick and offline once installed.
set -euo pipefail
# Also installs web/ (the /docs page's Swagger UI, which corral-control embeds, and the OpenAPI
# linter `make test` runs) and tests/console (puppeteer-core; Debian's chromium comes from apt).
# Arguments name the directories to install (tests/e2e, tests/console, web); none means all three.
# The build calls it with `web` alone.
root="$(cd "$(dirname "$0")/.." && pwd)"
dirs=("$@")
[[ ${#dirs[@]} -gt 0 ]] || dirs=(tests/e2e tests/console web)
# tests/console drives Debian's chromium headless; puppeteer-core never downloads a browser.
if [[ " ${dirs[*]} " == *" tests/console "* ]] && ! command -v chromium >/dev/null; then
  echo "install-e2e-deps: installing Debian's chromium for the console test"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
for dir in "${dirs[@]}"; do
cd "$root/$dir"
stamp=node_modules/.package-lock.json  # npm rewrites it on every install
if [[ -f $stamp && $stamp -nt package-lock.json && $stamp -nt package.json ]]; then
  continue
fi
if ! command -v npm >/dev/null; then
  echo "install-e2e-deps: npm is not on PATH; install Node.js 20+ and npm (scripts/install-deps.sh does)" >&2
  exit 1
fi
echo "install-e2e-deps: installing the npm packages in $dir (npm ci)"
npm ci --no-audit --no-fund --loglevel=error
done
