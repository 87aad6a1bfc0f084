#!/usr/bin/env bash
# The README's test command:
#   1. installs what is missing and starts the brokers unless they already run and serve: mosquitto
#      and one Apache Kafka node from empty storage (`infra/start.sh --fresh`);
#   2. runs every test on them (scripts/test.sh: unit, property, end-to-end, the demo's parts);
#   3. stops them (if it started them) and runs the broker fault tests (e2e/tests/faults.rs: a
#      SIGKILLed leader, a rolling restart) on a three-node Kafka cluster of their own, with its own
#      state dir and ports ($HOME/.cache/armoredtwins/run-faults, Kafka 19092-19094, MQTT 11883/18883),
#      stopped again at the end.
# Usage: infra/test.sh [--no-faults]
#   --no-faults  skip step 3 (a quicker local loop); says so loudly. CI never passes it.
set -euo pipefail
cd "$(dirname "$0")/.."

faults=1
case "${1:-}" in
  "") ;;
  --no-faults) faults=0 ;;
  *) echo "usage: infra/test.sh [--no-faults]" >&2; exit 2 ;;
esac

# The alert rules' unit tests and the Prometheus configuration (promtool; ~1 s).
bash infra/check-prometheus.sh

started=0
if ! bash infra/status.sh >/dev/null 2>&1; then
  bash infra/stop.sh >/dev/null 2>&1 || true   # whatever half runs
  bash infra/start.sh --fresh
  started=1
fi
cleanup() { [ "$started" = 1 ] && bash infra/stop.sh >/dev/null 2>&1 || true; }
trap cleanup EXIT
# A hang fails loudly here instead of running into CI's limit with nothing said (the main suite
# takes ~10 min warm, ~20 from scratch; the fault tests ~6 min).
(
  # shellcheck source=infra/env.sh
  source infra/env.sh
  timeout --kill-after 30 "${AT_SUITE_TIMEOUT:-2700}" bash scripts/test.sh \
    || { rc=$?; [ "$rc" -ge 124 ] && echo "!! infra/test.sh: the main suite did not finish within ${AT_SUITE_TIMEOUT:-2700} s"; exit "$rc"; }
)
cleanup
started=0

if [ "$faults" = 0 ]; then
  echo "!! infra/test.sh --no-faults: the broker fault tests (e2e/tests/faults.rs) were SKIPPED"
  exit 0
fi

echo "== broker fault tests on a three-node Kafka cluster (replication 3, min.insync.replicas 2) =="
unset AT_KAFKA_CONTROLLER_PORT AT_KAFKA_BROKERS AT_KAFKA_NODES AT_MQTT_INGEST_PASSWORD AT_MQTT_ADMIN_PASSWORD
export AT_STATE_DIR="$HOME/.cache/armoredtwins/run-faults"
export AT_KAFKA_PORT=19092 AT_MQTT_PORT=11883 AT_MQTT_TLS_PORT=18883
bash infra/stop.sh >/dev/null 2>&1 || true
bash infra/start.sh --brokers 3 --fresh
stop_cluster() { bash infra/stop.sh >/dev/null 2>&1 || true; }
trap stop_cluster EXIT
# shellcheck source=infra/env.sh
source infra/env.sh
t0=$(date +%s)
timeout --kill-after 30 "${AT_FAULTS_TIMEOUT:-1500}" \
  cargo test -p armored-e2e --test faults -- --ignored --test-threads 1 --nocapture 2>&1 \
  | grep -vE '^\S*[0-9]{4}-[0-9]{2}-[0-9]{2}T[^ ]* +(INFO|DEBUG|TRACE)' \
  || { rc=${PIPESTATUS[0]}; [ "$rc" -ge 124 ] && echo "!! infra/test.sh: the broker fault tests did not finish within ${AT_FAULTS_TIMEOUT:-1500} s"; exit "$rc"; }
echo "== broker fault tests done in $(($(date +%s) - t0)) s =="
