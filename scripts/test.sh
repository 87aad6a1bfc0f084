#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it too).
# Runs the whole test suite (the workspace builds the blst group backend), then the crypto suite again
# on its own, which builds the arkworks backend (same vectors, same bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
# Proptest cases per property: CI-sized by default, raise it for a deeper local run.
export PROPTEST_CASES="${PROPTEST_CASES:-64}"
echo "== cargo test --workspace (blst backend) =="
cargo test --workspace --all-targets
cargo test --workspace --doc
echo "== cargo test -p armored-crypto (arkworks backend) =="
cargo test -p armored-crypto --all-targets

# The sync-path benchmark's smoke pass (issue 17): a few hundred changes from 20 devices through two
# bridges sharing the uplink, a worker and a service, on the running brokers. It fails unless every
# change reached the service; here it checks that the JSON and the plot were written. Its figures
# mean nothing (debug-profile services beside the tests' build); `infra/bench.sh --sync` measures.
echo "== the sync-path benchmark, smoke pass =="
# shellcheck source=infra/env.sh
source infra/env.sh
cargo build -q -p at-ingest -p at-reencrypt -p armored-tools --bins
target="${CARGO_TARGET_DIR:-target}"
out="$target/bench-results/sync-throughput-smoke.json"
rm -f "$out" "${out%.json}.svg"
AT__KAFKA__BROKERS="$AT_KAFKA_BROKERS" "$target/debug/at-sync-bench" --smoke --out "$out" 2>&1 \
  | grep -vE '^\S*[0-9]{4}-[0-9]{2}-[0-9]{2}T[^ ]* +(WARN|INFO)'
python3 - "$out" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
keys = ["bridges", "workers", "receivers_per_twin", "raw_mqtt_msgs_per_s", "raw_kafka_msgs_per_s",
        "pipeline_msgs_per_s", "ratio", "p50_ms", "p99_ms", "p999_ms", "cloud_cpu_us_per_msg"]
assert rows and all(k in r for r in rows for k in keys), rows
assert all(r["pipeline_msgs_per_s"] > 0 and r["changes"] > 0 for r in rows), rows
print(f"smoke pass: {rows[0]['changes']} changes through {rows[0]['bridges']} bridges arrived")
PY
test -s "${out%.json}.svg" || { echo "!! the smoke pass wrote no plot"; exit 1; }
