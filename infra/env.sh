# shellcheck shell=bash
# Sourced by every infra/ script (and usable by you: `source infra/env.sh`). Defines where the brokers
# keep their state, which ports they use, and exports what clients need. Every variable can be set
# before sourcing to override it (e.g. AT_KAFKA_PORT=19092 AT_STATE_DIR=/tmp/x infra/start.sh).
# No `set -e` here: sourcing must not change the caller's shell options.

AT_INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export AT_INFRA_DIR
export PATH="$HOME/.cargo/bin:$PATH"

export AT_STATE_DIR="${AT_STATE_DIR:-$HOME/.cache/armoredtwins/run}"
# Kafka: node i (1..AT_KAFKA_NODES) serves clients on AT_KAFKA_PORT+i-1 and its KRaft controller on
# AT_KAFKA_CONTROLLER_PORT+i-1. AT_KAFKA_NODES is the shape start.sh last started (1 by default,
# 3 after `start.sh --brokers 3`).
export AT_KAFKA_PORT="${AT_KAFKA_PORT:-9092}"
export AT_KAFKA_CONTROLLER_PORT="${AT_KAFKA_CONTROLLER_PORT:-$((AT_KAFKA_PORT + 100))}"
# Node i's JMX metrics in Prometheus form (the Prometheus JMX exporter, a Java agent): port + i - 1.
export AT_KAFKA_METRICS_PORT="${AT_KAFKA_METRICS_PORT:-$((AT_KAFKA_PORT + 300))}"
export AT_MQTT_PORT="${AT_MQTT_PORT:-1883}"
export AT_MQTT_TLS_PORT="${AT_MQTT_TLS_PORT:-8883}"
export AT_PROMETHEUS_PORT="${AT_PROMETHEUS_PORT:-9090}"

# Clients: everything listens on loopback only.
AT_KAFKA_NODES="$(cat "$AT_STATE_DIR/kafka/nodes" 2>/dev/null || echo 1)"
[[ "$AT_KAFKA_NODES" =~ ^[13]$ ]] || AT_KAFKA_NODES=1
export AT_KAFKA_NODES
AT_KAFKA_BROKERS=""
for ((_at_i = 0; _at_i < AT_KAFKA_NODES; _at_i++)); do
  AT_KAFKA_BROKERS="${AT_KAFKA_BROKERS:+$AT_KAFKA_BROKERS,}127.0.0.1:$((AT_KAFKA_PORT + _at_i))"
done
unset _at_i
export AT_KAFKA_BROKERS                                       # librdkafka bootstrap.servers
export AT_MQTT_HOST="127.0.0.1"
export AT_MQTT_URL="mqtt://$AT_MQTT_HOST:$AT_MQTT_PORT"
export AT_MQTT_TLS_URL="mqtts://$AT_MQTT_HOST:$AT_MQTT_TLS_PORT"
export AT_PROMETHEUS_PORT="${AT_PROMETHEUS_PORT:-9090}"
export AT_PROMETHEUS_URL="http://127.0.0.1:$AT_PROMETHEUS_PORT"
# Scrape targets: one JSON file per service (file_sd; infra/prometheus.yml), written by whoever starts
# the service (infra/demo.sh; `at_prometheus_target` in lib.sh).
export AT_PROMETHEUS_TARGETS="$AT_STATE_DIR/prometheus/targets"
export AT_MQTT_INGEST_USER="at-ingest"
export AT_MQTT_ADMIN_USER="at-admin"
# Kafka principals (SASL/SCRAM-SHA-256), each with only what infra/kafka-acls.tsv grants it; their
# passwords are $AT_SECRETS_DIR/kafka-<principal>.password. The super user at-kafka (brokers, infra/
# scripts, tests' raw readers) signs in with PLAIN.
export AT_KAFKA_PRINCIPALS="at-ingest at-reencrypt at-mpc-node-1 at-mpc-node-2 at-mpc-node-3 at-owner at-operator"

# Files (layout of the state dir; start.sh creates them).
export AT_SECRETS_DIR="$AT_STATE_DIR/secrets"
export AT_MQTT_DIR="$AT_STATE_DIR/mosquitto"
export AT_MQTT_CONF="$AT_MQTT_DIR/mosquitto.conf"
export AT_MQTT_PASSWD_FILE="$AT_MQTT_DIR/passwd"
export AT_MQTT_ACL_FILE="$AT_MQTT_DIR/acl"
export AT_MQTT_TLS_DIR="$AT_MQTT_DIR/tls"
export AT_MQTT_CA="$AT_MQTT_TLS_DIR/ca.crt"                 # trust anchor for the TLS listener
# Kafka: SASL over TLS with the same test CA; the super user's client settings for infra/ scripts.
export AT_KAFKA_CA="$AT_MQTT_TLS_DIR/ca.crt"
export AT_KAFKA_ADMIN_PROPERTIES="$AT_SECRETS_DIR/kafka-admin.properties"
export AT_KAFKA_DIR="$AT_STATE_DIR/kafka"                    # kafka/<N>-node/node-<i>/{data,server.properties,kafka.log,kafka.pid}

# Apache Kafka: the version pinned in infra/kafka/pom.xml, installed by install.sh into a versioned
# cache folder shared by every state dir; the heap of each broker node.
AT_KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$AT_INFRA_DIR/kafka/pom.xml")"
export AT_KAFKA_VERSION
export AT_KAFKA_HOME="${AT_KAFKA_HOME:-$HOME/.cache/armoredtwins/kafka-$AT_KAFKA_VERSION}"
# The Prometheus JMX exporter's Java agent (Maven Central), loaded by every Kafka node.
export AT_KAFKA_JMX_EXPORTER_VERSION="1.0.1"
export AT_KAFKA_JMX_EXPORTER="$AT_KAFKA_HOME/jmx/jmx_prometheus_javaagent-$AT_KAFKA_JMX_EXPORTER_VERSION.jar"
# The scripts' admin client (infra/kafka/KafkaAdmin.java), compiled by install.sh per version of its source.
AT_KAFKA_ADMIN_DIR="$AT_KAFKA_HOME/admin-$(sha256sum "$AT_INFRA_DIR/kafka/KafkaAdmin.java" 2>/dev/null | cut -c1-16)"
export AT_KAFKA_ADMIN_DIR
export AT_KAFKA_HEAP="${AT_KAFKA_HEAP:-512m}"

# Generated once by start.sh (0600); exported only when they exist.
if [ -r "$AT_SECRETS_DIR/at-ingest.password" ]; then
  AT_MQTT_INGEST_PASSWORD="$(cat "$AT_SECRETS_DIR/at-ingest.password")"
  export AT_MQTT_INGEST_PASSWORD
fi
if [ -r "$AT_SECRETS_DIR/at-admin.password" ]; then
  AT_MQTT_ADMIN_PASSWORD="$(cat "$AT_SECRETS_DIR/at-admin.password")"
  export AT_MQTT_ADMIN_PASSWORD
fi
