#!/usr/bin/env bash
# Stops what infra/start.sh started (mosquitto, every Kafka node of either shape, and Prometheus if
# it was started), by pid file: SIGTERM, then SIGKILL after a timeout (mosquitto and Prometheus 10 s,
# Kafka 30 s for its controlled shutdown; AT_STOP_TIMEOUT_S overrides both). Harmless when nothing
# runs. State is kept (passwords, certificates, mosquitto's persistence, Kafka's log unless the next
# start says --fresh); delete $AT_STATE_DIR to start from scratch.
# Usage: infra/stop.sh                       everything
#        infra/stop.sh --kafka-node I [--kill]  only Kafka node I of the running cluster (fault tests:
#                                              --kill sends SIGKILL at once, no controlled shutdown);
#                                              `infra/start.sh --brokers N` starts it again
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

node=""
kill_now=0
while [ $# -gt 0 ]; do
  case "$1" in
    --kafka-node) node="${2:-}"; shift 2 || at_die "--kafka-node needs a node id" ;;
    --kill) kill_now=1; shift ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) at_die "unknown argument '$1' (usage: infra/stop.sh [--kafka-node I [--kill]])" ;;
  esac
done
[ "$kill_now" = 0 ] || [ -n "$node" ] || at_die "--kill goes with --kafka-node I"
[ -d "$AT_STATE_DIR" ] || { at_log "nothing to stop (no $AT_STATE_DIR)"; exit 0; }
exec 9>"$AT_STATE_DIR/.lock"   # not while start.sh runs
flock 9

if [ -n "$node" ]; then
  shape="$(at_kafka_running_shape)"
  [ -n "$shape" ] || at_die "no Kafka node runs in $AT_STATE_DIR"
  [[ "$node" =~ ^[0-9]+$ ]] && [ "$node" -ge 1 ] && [ "$node" -le "$shape" ] \
    || at_die "--kafka-node must be 1..$shape for the running $shape-node cluster, not '$node'"
  pidfile="$(at_kafka_node_dir "$shape" "$node")/kafka.pid"
  at_kafka_node_alive "$shape" "$node" || { at_log "Kafka node $node is not running"; exit 0; }
  if [ "$kill_now" = 1 ]; then
    pid="$(cat "$pidfile")"
    kill -KILL "$pid"
    while [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do sleep 0.05; done
    rm -f "$pidfile"
    at_log "Kafka node $node killed (SIGKILL, pid $pid)"
  else
    at_stop_pidfile "$pidfile" java "${AT_STOP_TIMEOUT_S:-30}" "Kafka node $node"
  fi
  exit 0
fi

stopped=0
for shape in 3 1; do
  nodes=()
  for i in $(at_kafka_running_nodes "$shape"); do
    nodes+=("$(at_kafka_node_dir "$shape" "$i")/kafka.pid:java:Kafka node $i")
  done
  if [ ${#nodes[@]} -gt 0 ]; then
    at_stop_pidfiles "${AT_STOP_TIMEOUT_S:-30}" "${nodes[@]}"
    stopped=$((stopped + ${#nodes[@]}))
  fi
done
for spec in "$AT_MQTT_PIDFILE:mosquitto" "$AT_STATE_DIR/prometheus/prometheus.pid:prometheus"; do
  pidfile="${spec%:*}"
  name="${spec##*:}"
  if at_pid_alive "$pidfile" "$name"; then
    at_stop_pidfile "$pidfile" "$name" "${AT_STOP_TIMEOUT_S:-10}"
    stopped=$((stopped + 1))
  else
    rm -f "$pidfile"
  fi
done
[ "$stopped" -gt 0 ] || at_log "nothing was running"
