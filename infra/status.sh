#!/usr/bin/env bash
# Health check: prints whether mosquitto and nisshi run and serve, and exits 0 only when both do.
#   mosquitto: both listeners accept at-ingest's credentials and a message published by at-admin
#              comes back to a subscriber (over TLS, checked against AT_MQTT_CA);
#   nisshi:    the port is open and it answers a Kafka metadata request (`nisshi topic list`).
# Usage: infra/status.sh      (takes ~0.3 s)
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

ok=0
if ! at_mqtt_running; then
  at_log "mosquitto: not running"
  ok=1
elif at_mqtt_healthy; then
  at_log "mosquitto: healthy, pid $(cat "$AT_MQTT_PIDFILE"), $AT_MQTT_URL and $AT_MQTT_TLS_URL"
else
  at_log "mosquitto: pid $(cat "$AT_MQTT_PIDFILE") runs but fails the MQTT round trip (log $AT_MQTT_LOG)"
  ok=1
fi
if ! at_nisshi_running; then
  at_log "nisshi: not running"
  ok=1
elif at_nisshi_healthy; then
  at_log "nisshi: healthy, pid $(cat "$AT_NISSHI_PIDFILE"), $AT_KAFKA_BROKERS, storage $(cat "$AT_NISSHI_STORAGE_FILE" 2>/dev/null || echo '?')"
else
  at_log "nisshi: pid $(cat "$AT_NISSHI_PIDFILE") runs but does not answer metadata requests (log $AT_NISSHI_LOG)"
  ok=1
fi
exit "$ok"
