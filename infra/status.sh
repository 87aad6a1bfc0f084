#!/usr/bin/env bash
# Health check: prints whether mosquitto and Kafka run and serve, and exits 0 only when both do.
#   mosquitto: both listeners accept the probe user at-probe (never a real user: client ids are
#              bound to users, a probe as one would take over its session), and a message it
#              publishes comes back to it subscribed over TLS (checked against AT_MQTT_CA);
#   Kafka:     every node of the running shape (1 or 3 nodes) runs, the metadata lists all of them,
#              and a replicated probe topic is created and deleted through Kafka's Admin API.
# Usage: infra/status.sh      (takes ~2 s, mostly the admin client's JVM starting)
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
shape="$(at_kafka_running_shape)"
if [ -z "$shape" ]; then
  at_log "Kafka: not running"
  ok=1
else
  at_kafka_set_shape "$shape"
  running="$(at_kafka_running_nodes "$shape" | paste -sd, -)"
  if at_kafka_healthy "$shape"; then
    at_log "Kafka $AT_KAFKA_VERSION: healthy, $shape node(s) ($running), bootstrap $AT_KAFKA_BROKERS"
  else
    at_log "Kafka: nodes $running of $shape run but the cluster does not serve (logs $(at_kafka_shape_dir "$shape")/node-*/kafka.log)"
    ok=1
  fi
fi
exit "$ok"
