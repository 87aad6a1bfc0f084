#!/usr/bin/env bash
# The README's test command: installs what is missing, starts the brokers (memory storage) unless
# they already run, runs every test (scripts/test.sh: unit, property, end-to-end on the real brokers),
# and stops the brokers again if it started them.
set -euo pipefail
cd "$(dirname "$0")/.."
started=0
if ! bash infra/status.sh >/dev/null 2>&1; then
  bash infra/start.sh --storage memory
  started=1
fi
cleanup() { [ "$started" = 1 ] && bash infra/stop.sh >/dev/null 2>&1 || true; }
trap cleanup EXIT
# shellcheck source=infra/env.sh
source infra/env.sh
bash scripts/test.sh "$@"
