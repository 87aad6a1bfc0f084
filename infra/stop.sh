#!/usr/bin/env bash
# Stops what infra/start.sh started (mosquitto, nisshi, and Prometheus if it was started), by pid file:
# SIGTERM, then SIGKILL after 10 s (AT_STOP_TIMEOUT_S). Removes the pid files. Harmless when nothing
# runs. State (passwords, certificates, mosquitto's persistence, the sqlite file) is kept; delete
# $AT_STATE_DIR to start from scratch.
# Usage: infra/stop.sh
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

timeout_s="${AT_STOP_TIMEOUT_S:-10}"
[ -d "$AT_STATE_DIR" ] || { at_log "nothing to stop (no $AT_STATE_DIR)"; exit 0; }
exec 9>"$AT_STATE_DIR/.lock"   # not while start.sh runs
flock 9

stopped=0
for spec in "$AT_NISSHI_PIDFILE:nisshi" "$AT_MQTT_PIDFILE:mosquitto" \
  "$AT_STATE_DIR/prometheus/prometheus.pid:prometheus"; do
  pidfile="${spec%:*}"
  name="${spec##*:}"
  if at_pid_alive "$pidfile" "$name"; then
    at_stop_pidfile "$pidfile" "$name" "$timeout_s"
    stopped=$((stopped + 1))
  else
    rm -f "$pidfile"
  fi
done
rm -f "$AT_NISSHI_STORAGE_FILE"
[ "$stopped" -gt 0 ] || at_log "nothing was running"
