#!/usr/bin/env bash
# Protocol 2's job path on the real brokers (the benchmark of issue 7; not part of CI):
#   bash infra/bench.sh                       # N = 10, 50, 100, 1000 users x 50 points
#   bash infra/bench.sh --users 10,50         # any atctl bench-pipeline flags
#   AT_BENCH_FEATURES=armored-crypto/blst bash infra/bench.sh   # the blst group backend
# Builds release binaries, starts the brokers (memory storage) unless they run, runs
# `atctl bench-pipeline`, which starts at-ingest, the re-encryption workers and three at-mpc-node
# processes per N and reads every process's CPU time from /proc; writes
# $CARGO_TARGET_DIR/bench-results/mpc-pipeline.json and mpc-pipeline-fit.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
features="${AT_BENCH_FEATURES:-}"
target="$CARGO_TARGET_DIR"
# Another backend is another build: keep its binaries apart.
[ -n "$features" ] && target="$CARGO_TARGET_DIR/bench-$(echo "$features" | tr -c 'a-z0-9\n' '-')"

bash infra/install.sh
echo "== building release binaries${features:+ with $features} =="
CARGO_TARGET_DIR="$target" cargo build -q --release -p at-ingest -p at-reencrypt -p at-mpc-node -p atctl \
  ${features:+--features "$features"}

started=0
if ! bash infra/status.sh >/dev/null 2>&1; then
  bash infra/start.sh --storage memory
  started=1
fi
cleanup() { [ "$started" = 1 ] && bash infra/stop.sh >/dev/null 2>&1 || true; }
trap cleanup EXIT
# shellcheck source=infra/env.sh
source infra/env.sh
export AT__KAFKA__BROKERS="$AT_KAFKA_BROKERS"
out="$CARGO_TARGET_DIR/bench-results/mpc-pipeline${features:+-$(echo "$features" | sed 's/.*\///')}.json"
"$target/release/atctl" bench-pipeline --out "$out" "$@"
