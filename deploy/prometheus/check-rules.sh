#!/bin/sh
# Checks alerts.yml with Prometheus's own tools: the rules parse (promtool check rules) and fire
# as alerts_test.yml says they must (promtool test rules). Run by ctest (prometheus_rules). A
# missing promtool fails: scripts/install-deps.sh installs it (Debian's prometheus package).
set -eu
cd "$(dirname "$0")"
if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool is not on PATH: install Debian's prometheus package (scripts/install-deps.sh does)" >&2
  exit 1
fi
promtool check rules alerts.yml
promtool test rules alerts_test.yml
