# shellcheck shell=bash
# Sourced by every infra/ script (and usable by you: `source infra/env.sh`). Defines where the brokers
# keep their state, which ports they use, and exports what clients need. Every variable can be set
# before sourcing to override it (e.g. AT_KAFKA_PORT=19092 AT_STATE_DIR=/tmp/x infra/start.sh).
# No `set -e` here: sourcing must not change the caller's shell options.

AT_INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export AT_INFRA_DIR
export PATH="$HOME/.cargo/bin:$PATH"

export AT_STATE_DIR="${AT_STATE_DIR:-$HOME/.cache/armoredtwins/run}"
export AT_KAFKA_PORT="${AT_KAFKA_PORT:-9092}"
export AT_MQTT_PORT="${AT_MQTT_PORT:-1883}"
export AT_MQTT_TLS_PORT="${AT_MQTT_TLS_PORT:-8883}"
export AT_PROMETHEUS_PORT="${AT_PROMETHEUS_PORT:-9090}"

# Clients: everything listens on loopback only.
export AT_KAFKA_BROKERS="127.0.0.1:$AT_KAFKA_PORT"          # librdkafka bootstrap.servers
export AT_KAFKA_URL="tcp://127.0.0.1:$AT_KAFKA_PORT"        # `nisshi topic … --broker` form
export AT_MQTT_HOST="127.0.0.1"
export AT_MQTT_URL="mqtt://$AT_MQTT_HOST:$AT_MQTT_PORT"
export AT_MQTT_TLS_URL="mqtts://$AT_MQTT_HOST:$AT_MQTT_TLS_PORT"
export AT_MQTT_INGEST_USER="at-ingest"
export AT_MQTT_ADMIN_USER="at-admin"

# Files (layout of the state dir; start.sh creates them).
export AT_SECRETS_DIR="$AT_STATE_DIR/secrets"
export AT_MQTT_DIR="$AT_STATE_DIR/mosquitto"
export AT_MQTT_CONF="$AT_MQTT_DIR/mosquitto.conf"
export AT_MQTT_PASSWD_FILE="$AT_MQTT_DIR/passwd"
export AT_MQTT_ACL_FILE="$AT_MQTT_DIR/acl"
export AT_MQTT_TLS_DIR="$AT_MQTT_DIR/tls"
export AT_MQTT_CA="$AT_MQTT_TLS_DIR/ca.crt"                 # trust anchor for the TLS listener
export AT_NISSHI_DIR="$AT_STATE_DIR/nisshi"                  # nisshi's working dir (no .env in it)
export AT_NISSHI_SQLITE="$AT_NISSHI_DIR/nisshi.db"

# Generated once by start.sh (0600); exported only when they exist.
if [ -r "$AT_SECRETS_DIR/at-ingest.password" ]; then
  AT_MQTT_INGEST_PASSWORD="$(cat "$AT_SECRETS_DIR/at-ingest.password")"
  export AT_MQTT_INGEST_PASSWORD
fi
if [ -r "$AT_SECRETS_DIR/at-admin.password" ]; then
  AT_MQTT_ADMIN_PASSWORD="$(cat "$AT_SECRETS_DIR/at-admin.password")"
  export AT_MQTT_ADMIN_PASSWORD
fi
