#!/usr/bin/env bash
# The benchmarks on the real brokers (not part of CI, except the sync bench's smoke pass in
# scripts/test.sh).
#
# The state-sync path (issue 17): throughput, latency and CPU per process against the raw MQTT and
# Kafka ceilings measured in the same run:
#   bash infra/bench.sh --sync                # 100 devices on 50 twins; 1-2 bridges x 1/2/4 workers
#                                             # at 1 service per twin, then 4 and 16 services
#   bash infra/bench.sh --sync --smoke        # any at-sync-bench flags (--help)
# writes $CARGO_TARGET_DIR/bench-results/sync-throughput.json and sync-throughput.svg.
#
# Protocol 2's job path (the benchmark of issue 7):
#   bash infra/bench.sh                       # N = 10, 50, 100, 1000 users x 50 points, each at 50
#                                             # slots per share epoch and at 1 (the paper's accounting)
#   bash infra/bench.sh --users 10,50 --share-epochs 50   # any at-bench flags
# Builds release binaries, starts the brokers (one Apache Kafka node, empty) unless they run, runs
# `at-bench`, which starts at-ingest, the re-encryption workers and three at-mpc-node
# processes per N and reads every process's CPU time from /proc; writes
# $CARGO_TARGET_DIR/bench-results/mpc-pipeline.json and mpc-pipeline-fit.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

sync=0
if [ "${1:-}" = "--sync" ]; then
  sync=1
  shift
fi

bash infra/install.sh
echo "== building release binaries =="
cargo build -q --release -p at-ingest -p at-reencrypt -p at-mpc-node -p armored-tools

started=0
if ! bash infra/status.sh >/dev/null 2>&1; then
  bash infra/stop.sh >/dev/null 2>&1 || true
  bash infra/start.sh --fresh
  started=1
fi
cleanup() { [ "$started" = 1 ] && bash infra/stop.sh >/dev/null 2>&1 || true; }
trap cleanup EXIT
# shellcheck source=infra/env.sh
source infra/env.sh
export AT__KAFKA__BROKERS="$AT_KAFKA_BROKERS"
if [ "$sync" = 1 ]; then
  "$CARGO_TARGET_DIR/release/at-sync-bench" \
    --out "$CARGO_TARGET_DIR/bench-results/sync-throughput.json" "$@"
  exit 0
fi
"$CARGO_TARGET_DIR/release/at-bench" --out "$CARGO_TARGET_DIR/bench-results/mpc-pipeline.json" "$@"
