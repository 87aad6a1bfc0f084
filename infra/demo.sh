#!/usr/bin/env bash
# The README's first command: the end-to-end demo on the default local setup.
# Installs what is missing, builds, starts the brokers (mosquitto, one Apache Kafka node) and the services (one bridge,
# two re-encryption workers), plays Protocol 1 with `at-demo` (phases 1-4 and 6, revocation M1,
# a raw reader's view, the owner's view of a twin and its verified audit trail; then device replacement M3 and owner key backup/restore), prints a summary table, and stops everything it started. Exit 0 = every
# expectation held.
# Prometheus (infra/start.sh --with-prometheus) scrapes the services throughout; at the end every
# query of infra/grafana-dashboard.json is run over the demo's time range (infra/dashboard-check.py)
# and each panel must show data.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

bash infra/install.sh
echo "== building (the dev profile: dependencies optimised, shares the test build) =="
cargo build -q -p at-ingest -p at-reencrypt -p at-mpc-node -p armored-tools
bin="$CARGO_TARGET_DIR/debug"

brokers_started=0
if ! bash infra/status.sh >/dev/null 2>&1; then
  # Brokers the demo starts itself begin from an empty Kafka log, so every run shows the same
  # scenario; brokers that already run are used as they are (the demo's ids are fresh each run).
  bash infra/stop.sh >/dev/null 2>&1 || true
  bash infra/start.sh --fresh --with-prometheus
  brokers_started=1
else
  bash infra/start.sh --with-prometheus
fi
# shellcheck source=infra/lib.sh
source infra/lib.sh
bash infra/topics.sh >/dev/null

run_dir="$AT_STATE_DIR/demo-$(date +%s)"
mkdir -p "$run_dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$brokers_started" = 1 ]; then bash infra/stop.sh >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

export AT__KAFKA__BROKERS="$AT_KAFKA_BROKERS"
echo "== starting at-ingest and two at-reencrypt workers (logs in $run_dir) =="
# The bridge and the devices connect over TLS (the broker's TLS listener, infra/'s test CA). The bridge
# (user at-ingest) logs in as at-ingest-up and at-ingest-down, users infra/start.sh creates.
AT__MQTT__PASSWORD="$AT_MQTT_INGEST_PASSWORD" AT__MQTT__PORT="$AT_MQTT_TLS_PORT" \
  AT__MQTT__CA_FILE="$AT_MQTT_CA" "$bin/at-ingest" >"$run_dir/ingest.log" 2>&1 &
pids+=($!)
for i in 1 2; do
  AT__WORKER__METRICS_ADDR="127.0.0.1:$((9101 + i * 10))" AT__WORKER__STATE_DIR="$run_dir/worker-$i" \
    "$bin/at-reencrypt" >"$run_dir/reencrypt-$i.log" 2>&1 &
  pids+=($!)
done
for url in http://127.0.0.1:9101/healthz http://127.0.0.1:9111/healthz http://127.0.0.1:9121/healthz; do
  for _ in $(seq 1 100); do
    curl -fs "$url" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "$url" >/dev/null || { echo "service at $url did not become healthy; see $run_dir"; exit 1; }
done
echo "   services healthy; metrics at :9101 (ingest), :9111 and :9121 (workers)"
# Scrape targets: the bridge, the workers, and the MPC nodes at-demo starts for Protocol 2.
at_prometheus_target at-ingest-1 127.0.0.1:9101
at_prometheus_target at-reencrypt-1 127.0.0.1:9111
at_prometheus_target at-reencrypt-2 127.0.0.1:9121
for j in 1 2 3; do at_prometheus_target "at-mpc-node-$j" "127.0.0.1:$((9121 + 10 * j))" "node=$j"; done
echo "   Prometheus scrapes them: $AT_PROMETHEUS_URL"
echo "== the scenario =="
started_at="$(date +%s)"
# The owner pins the workers' audit keys (written into their state directories at start).
"$bin/at-demo" --dir "$run_dir/parties" \
  --worker-key "$run_dir/worker-1/worker-audit.pub" --worker-key "$run_dir/worker-2/worker-audit.pub"
echo "== the dashboard (infra/grafana-dashboard.json): every panel's queries over the demo, through Prometheus =="
sleep 6   # one more scrape of what the scenario's end changed
python3 infra/dashboard-check.py --prometheus "$AT_PROMETHEUS_URL" --since "$started_at"
echo "== metrics of the bridge and the two workers (excerpt; the workers share the partitions, so each counts its part) =="
curl -fs http://127.0.0.1:9101/metrics | grep -E '^at_ingest_(messages|dead)' || true
for port in 9111 9121; do
  curl -fs "http://127.0.0.1:$port/metrics" | grep -E '^at_reencrypt_(messages_in|deliveries|reencryptions|cache_hits)_' \
    | sed "s/^/worker :$port  /" || true
done
if [ "$brokers_started" = 1 ]; then
  echo "Prometheus ran at $AT_PROMETHEUS_URL and stops with the brokers the demo started; to look around"
  echo "afterwards, start them first: infra/start.sh --with-prometheus && infra/demo.sh"
else
  echo "Prometheus: $AT_PROMETHEUS_URL (alerts: $AT_PROMETHEUS_URL/alerts)"
fi
