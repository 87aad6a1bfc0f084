#!/usr/bin/env bash
# Starts the brokers the pipeline and its tests use, in the background, and waits until they serve:
#   mosquitto     (MQTT 127.0.0.1:$AT_MQTT_PORT, MQTT/TLS 127.0.0.1:$AT_MQTT_TLS_PORT)
#   Apache Kafka  (KRaft, combined controller+broker nodes; node i serves 127.0.0.1:$AT_KAFKA_PORT+i-1)
# Usage: infra/start.sh [--brokers 1|3] [--fresh] [--with-prometheus]
#   --brokers 1        (default) one Kafka node: the demo, the tests, the benchmarks.
#   --brokers 3        a three-node cluster (a KRaft quorum of three; topics replicated on all three,
#                      min.insync.replicas=2): the broker fault tests.
#   --fresh            start from empty storage (tests, the demo): Kafka's log and mosquitto's persisted
#                      sessions and queued messages (users, passwords and certificates are kept); without
#                      it both persist across restarts. Refused while either runs.
#   --with-prometheus  also start Prometheus (Debian's package, installed by infra/install.sh) with
#                      infra/prometheus.yml and its alerts on 127.0.0.1:$AT_PROMETHEUS_PORT.
# Idempotent: what already runs and serves is kept, a stopped node of the cluster is started again.
# State, logs and pid files live under $AT_STATE_DIR (see infra/README.md).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

brokers=1
fresh=0
with_prometheus=0
while [ $# -gt 0 ]; do
  case "$1" in
    --brokers) brokers="${2:-}"; shift 2 || at_die "--brokers needs 1 or 3" ;;
    --brokers=*) brokers="${1#--brokers=}"; shift ;;
    --fresh) fresh=1; shift ;;
    --with-prometheus) with_prometheus=1; shift ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) at_die "unknown argument '$1' (usage: infra/start.sh [--brokers 1|3] [--fresh] [--with-prometheus])" ;;
  esac
done
case "$brokers" in 1 | 3) ;; *) at_die "--brokers must be 1 or 3, not '$brokers'" ;; esac

HEALTH_TIMEOUT_S="${AT_START_TIMEOUT_S:-90}"
t0="$(at_now_ms)"

# One start/stop at a time (e.g. test processes starting the brokers concurrently): the second
# waits, then finds them healthy.
mkdir -p "$AT_STATE_DIR"
chmod 700 "$AT_STATE_DIR"
exec 9>"$AT_STATE_DIR/.lock"
flock 9

running_shape="$(at_kafka_running_shape)"
if [ -n "$running_shape" ] && [ "$running_shape" != "$brokers" ]; then
  at_die "a $running_shape-node Kafka cluster runs in $AT_STATE_DIR, not $brokers; run infra/stop.sh first"
fi
if [ "$fresh" = 1 ] && [ -n "$running_shape" ]; then
  at_die "--fresh: Kafka runs (nodes $(at_kafka_running_nodes "$brokers" | paste -sd,)); run infra/stop.sh first"
fi
if [ "$fresh" = 1 ] && at_mqtt_running; then
  at_die "--fresh: mosquitto runs (pid $(cat "$AT_MQTT_PIDFILE")); run infra/stop.sh first"
fi
at_kafka_set_shape "$brokers"

# ---------------------------------------------------------------------------------------------
# Fast path: both already running and healthy.
if at_mqtt_running && ! at_mqtt_conf_current; then
  # Options like use_username_as_clientid are not re-read on SIGHUP: a restart (sessions and queues
  # persist: mosquitto writes them on SIGTERM).
  at_log "infra/mosquitto.conf.in changed: restarting mosquitto (pid $(cat "$AT_MQTT_PIDFILE"))"
  at_stop_pidfile "$AT_MQTT_PIDFILE" mosquitto 10
fi
if at_mqtt_running; then
  at_mqtt_lock
  if at_mqtt_sync_acl; then
    at_log "infra/mosquitto.acl changed: installed it, reloading mosquitto (pid $(cat "$AT_MQTT_PIDFILE"))"
    at_mqtt_reload
    sleep 0.1
  fi
  at_mqtt_unlock
fi
if at_mqtt_running && [ "$with_prometheus" = 0 ] && at_mqtt_healthy && at_kafka_healthy "$brokers" \
  && at_kafka_principals >/dev/null; then
  at_log "already running and healthy: mosquitto pid $(cat "$AT_MQTT_PIDFILE") ($AT_MQTT_URL, $AT_MQTT_TLS_URL)," \
    "Kafka $brokers node(s) ($AT_KAFKA_BROKERS) [$(($(at_now_ms) - t0)) ms]"
  exit 0
fi

bash "$AT_INFRA_DIR/install.sh"
[ -r "$AT_KAFKA_ADMIN_DIR/KafkaAdmin.class" ] || at_die "Kafka missing in $AT_KAFKA_HOME after infra/install.sh (see its output above)"
command -v mosquitto_passwd >/dev/null 2>&1 || at_die "mosquitto-clients missing after infra/install.sh"

umask 077
mkdir -p "$AT_STATE_DIR" "$AT_SECRETS_DIR" "$AT_MQTT_DIR/data" "$AT_MQTT_TLS_DIR" "$AT_KAFKA_DIR"
chmod 700 "$AT_STATE_DIR" "$AT_SECRETS_DIR" "$AT_MQTT_DIR" "$AT_MQTT_TLS_DIR" "$AT_KAFKA_DIR"

# ---------------------------------------------------------------------------------------------
# Secrets, TLS, mosquitto config (each created once, kept afterwards)

# new_secret FILE WHAT: a random password in FILE (0600), unless it has one.
new_secret() {
  [ -s "$1" ] && return 0
  openssl rand -hex 24 >"$1"
  chmod 600 "$1"
  at_log "generated $2 in $1"
}
for user in at-ingest at-admin at-probe; do
  new_secret "$AT_SECRETS_DIR/$user.password" "the MQTT password of $user"
done
# Kafka: the super user at-kafka and one principal per service and tool (infra/kafka-acls.tsv).
for user in at-kafka $AT_KAFKA_PRINCIPALS; do
  new_secret "$AT_SECRETS_DIR/kafka-$user.password" "the Kafka password of $user"
done
# The super user's client settings, for the admin tool (infra/kafka/KafkaAdmin.java).
{
  echo "security.protocol=SASL_SSL"
  echo "sasl.mechanism=PLAIN"
  echo "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"at-kafka\" password=\"$(cat "$AT_SECRETS_DIR/kafka-at-kafka.password")\";"
  echo "ssl.truststore.type=PEM"
  echo "ssl.truststore.location=$AT_KAFKA_CA"
} >"$AT_KAFKA_ADMIN_PROPERTIES.tmp"
chmod 600 "$AT_KAFKA_ADMIN_PROPERTIES.tmp"
mv -f "$AT_KAFKA_ADMIN_PROPERTIES.tmp" "$AT_KAFKA_ADMIN_PROPERTIES"
# Re-source so that this shell has the generated passwords too (then the shape asked for again).
source "$AT_INFRA_DIR/env.sh"
at_kafka_set_shape "$brokers"

if [ ! -s "$AT_MQTT_TLS_DIR/ca.crt" ] || [ ! -s "$AT_MQTT_TLS_DIR/server.crt" ] || [ ! -s "$AT_MQTT_TLS_DIR/server.key" ]; then
  at_log "generating the test CA and the MQTT server certificate (P-256) in $AT_MQTT_TLS_DIR"
  (
    cd "$AT_MQTT_TLS_DIR"
    rm -f ca.key ca.crt server.key server.csr server.crt
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
      -keyout ca.key -out ca.crt -subj "/O=ArmoredTwins/CN=ArmoredTwins test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
      -keyout server.key -out server.csr -subj "/O=ArmoredTwins/CN=localhost" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
      -sha256 -days 825 -extfile server.ext -out server.crt 2>/dev/null
    rm -f server.csr server.ext
    chmod 600 ca.key server.key
    chmod 644 ca.crt server.crt
  ) || at_die "openssl failed to generate the test certificates in $AT_MQTT_TLS_DIR"
fi

# Kafka's keystore: the same server key and certificate (PEM, key first).
if [ ! -s "$AT_MQTT_TLS_DIR/kafka.pem" ] || [ "$AT_MQTT_TLS_DIR/server.crt" -nt "$AT_MQTT_TLS_DIR/kafka.pem" ]; then
  (umask 077 && cat "$AT_MQTT_TLS_DIR/server.key" "$AT_MQTT_TLS_DIR/server.crt" >"$AT_MQTT_TLS_DIR/kafka.pem")
fi

at_mqtt_render_conf >"$AT_MQTT_CONF.tmp"
mv -f "$AT_MQTT_CONF.tmp" "$AT_MQTT_CONF"
# The ACL, users and roles under mqtt-user.sh's lock (it may run meanwhile, e.g. a test adding users).
at_mqtt_lock
acl_changed=0
if at_mqtt_sync_acl; then acl_changed=1; fi
# The service users: added once (device users added later by infra/mqtt-user.sh are kept). The
# bridge's configured user at-ingest connects as at-ingest-up and at-ingest-down (one session each:
# client ids are bound to users), both with at-ingest's password.
users_changed=0
[ -e "$AT_MQTT_PASSWD_FILE" ] || : >"$AT_MQTT_PASSWD_FILE"
for user in at-ingest-up at-ingest-down at-admin at-probe; do
  if ! grep -q "^$user:" "$AT_MQTT_PASSWD_FILE"; then
    plain="$(umask 077 && mktemp "$AT_MQTT_DIR/one.XXXXXX")"
    case "$user" in at-ingest-*) secret=at-ingest ;; *) secret="$user" ;; esac
    printf '%s:%s\n' "$user" "$(cat "$AT_SECRETS_DIR/$secret.password")" >"$plain"
    at_mqtt_merge_hashed "$plain"
    rm -f "$plain"
    users_changed=1
  fi
done
# The bridge's single login of before (one user for both connections) has no grants any more.
if grep -q "^at-ingest:" "$AT_MQTT_PASSWD_FILE"; then
  mosquitto_passwd -D "$AT_MQTT_PASSWD_FILE" at-ingest
  users_changed=1
fi
chmod 600 "$AT_MQTT_PASSWD_FILE" "$AT_MQTT_ACL_FILE" "$AT_MQTT_CONF"

# ---------------------------------------------------------------------------------------------
# Start what is not running

# Check every port we are about to listen on before starting anything.
check_port() {
  if at_port_open "$1"; then
    at_die "port $1 is already taken by $(at_port_owner "$1"), not by a broker of $AT_STATE_DIR;" \
      "stop it, or choose other ports (AT_MQTT_PORT, AT_MQTT_TLS_PORT, AT_KAFKA_PORT, AT_KAFKA_CONTROLLER_PORT)"
  fi
}
if ! at_mqtt_running; then
  check_port "$AT_MQTT_PORT"
  check_port "$AT_MQTT_TLS_PORT"
fi
to_start=()
for ((i = 1; i <= brokers; i++)); do
  at_kafka_node_alive "$brokers" "$i" && continue
  check_port $((AT_KAFKA_PORT + i - 1))
  check_port $((AT_KAFKA_CONTROLLER_PORT + i - 1))
  to_start+=("$i")
done

started_mqtt=0

if at_mqtt_running; then
  if [ "$acl_changed" = 1 ] || [ "$users_changed" = 1 ]; then
    at_log "mosquitto runs (pid $(cat "$AT_MQTT_PIDFILE")): reloading its ACL and password file"
    at_mqtt_reload
  fi
  at_mqtt_unlock
else
  at_mqtt_unlock
  if [ "$fresh" = 1 ] && [ -e "$AT_MQTT_DIR/data/mosquitto.db" ]; then
    # Persistent sessions queue every uplink for each offline subscriber (e.g. a bridge client id
    # used by an earlier demo): a fresh start must not hand a new bridge that backlog.
    at_log "--fresh: removing mosquitto's persisted sessions and queued messages ($AT_MQTT_DIR/data/mosquitto.db)"
    rm -f "$AT_MQTT_DIR/data/mosquitto.db"
  fi
  at_log "starting mosquitto on 127.0.0.1:$AT_MQTT_PORT (TLS :$AT_MQTT_TLS_PORT), log $AT_MQTT_LOG"
  printf '\n==== %s infra/start.sh\n' "$(date -u +%FT%TZ)" >>"$AT_MQTT_LOG"
  # setsid: its own session, so it outlives the caller's process group and terminal; 9>&-: it must
  # not inherit (and so hold) the start/stop lock.
  nohup setsid "$AT_MOSQUITTO_BIN" -c "$AT_MQTT_CONF" </dev/null >>"$AT_MQTT_LOG" 2>&1 9>&- &
  echo $! >"$AT_MQTT_PIDFILE"
  started_mqtt=1
fi

shape_dir="$(at_kafka_shape_dir "$brokers")"
if [ "$fresh" = 1 ] && [ -d "$shape_dir" ]; then
  at_log "--fresh: removing the $brokers-node cluster's storage ($shape_dir)"
  rm -rf "$shape_dir"
fi
mkdir -p "$shape_dir"
if [ ! -s "$shape_dir/cluster.id" ]; then
  java -cp "$AT_KAFKA_HOME/libs/*" kafka.tools.StorageTool random-uuid >"$shape_dir/cluster.id.tmp" 2>/dev/null \
    && mv -f "$shape_dir/cluster.id.tmp" "$shape_dir/cluster.id" || at_die "kafka.tools.StorageTool random-uuid failed"
fi
echo "$brokers" >"$AT_KAFKA_DIR/nodes"
for i in "${to_start[@]}"; do
  at_log "starting Kafka $AT_KAFKA_VERSION node $i of $brokers on 127.0.0.1:$((AT_KAFKA_PORT + i - 1))" \
    "(controller :$((AT_KAFKA_CONTROLLER_PORT + i - 1)), heap $AT_KAFKA_HEAP), log $(at_kafka_node_dir "$brokers" "$i")/kafka.log"
  at_kafka_start_node "$brokers" "$i"
done

# ---------------------------------------------------------------------------------------------
# Wait until both serve

fail() { # fail NAME LOG: show the log's tail, stop what this run started, exit 1
  at_log "$2 since this start (last 20 lines):" >&2
  awk '/^==== / { n = 0; delete l } { l[++n] = $0 } END { for (i = (n > 20 ? n - 19 : 1); i <= n; i++) print "    " l[i] }' \
    "$2" >&2 2>/dev/null || true
  [ "$started_mqtt" = 1 ] && at_stop_pidfile "$AT_MQTT_PIDFILE" mosquitto 5
  for i in "${to_start[@]}"; do at_stop_pidfile "$(at_kafka_node_dir "$brokers" "$i")/kafka.pid" java 10 "Kafka node $i"; done
  at_die "$1 (full log: $2)"
}

deadline=$(($(at_now_ms) + HEALTH_TIMEOUT_S * 1000))
mqtt_ok=0
kafka_ok=0
while :; do
  if [ "$mqtt_ok" = 0 ]; then
    at_pid_starting "$AT_MQTT_PIDFILE" mosquitto || fail "mosquitto exited during start-up" "$AT_MQTT_LOG"
    if at_mqtt_healthy; then mqtt_ok=1; fi
  fi
  if [ "$kafka_ok" = 0 ]; then
    for i in "${to_start[@]}"; do
      at_kafka_node_starting "$brokers" "$i" \
        || fail "Kafka node $i exited during start-up" "$(at_kafka_node_dir "$brokers" "$i")/kafka.log"
    done
    if at_kafka_healthy "$brokers"; then kafka_ok=1; fi
  fi
  [ "$mqtt_ok" = 1 ] && [ "$kafka_ok" = 1 ] && break
  if [ "$(at_now_ms)" -ge "$deadline" ]; then
    [ "$mqtt_ok" = 1 ] || fail "mosquitto not healthy after ${HEALTH_TIMEOUT_S}s (MQTT round trip as at-probe failed)" "$AT_MQTT_LOG"
    fail "Kafka not healthy after ${HEALTH_TIMEOUT_S}s (no $brokers-broker metadata or no probe topic on $AT_KAFKA_BROKERS)" \
      "$(at_kafka_node_dir "$brokers" "${to_start[0]:-1}")/kafka.log"
  fi
  sleep 0.1
done

at_kafka_principals >/dev/null || fail "setting Kafka's principals and ACLs failed" \
  "$(at_kafka_node_dir "$brokers" "${to_start[0]:-1}")/kafka.log"
at_log "Kafka principals ($AT_KAFKA_PRINCIPALS) and their ACLs (infra/kafka-acls.tsv) in place"

at_log "mosquitto pid $(cat "$AT_MQTT_PIDFILE"): $AT_MQTT_URL and $AT_MQTT_TLS_URL (CA $AT_MQTT_CA)"
for ((i = 1; i <= brokers; i++)); do
  at_log "Kafka node $i pid $(cat "$(at_kafka_node_dir "$brokers" "$i")/kafka.pid"): 127.0.0.1:$((AT_KAFKA_PORT + i - 1))"
done
at_log "Kafka $AT_KAFKA_VERSION, $brokers node(s): bootstrap servers $AT_KAFKA_BROKERS"

# ---------------------------------------------------------------------------------------------
# Optional: Prometheus

if [ "$with_prometheus" = 1 ]; then
  prom_dir="$AT_STATE_DIR/prometheus"
  prom_pidfile="$prom_dir/prometheus.pid"
  prom_log="$prom_dir/prometheus.log"
  if ! command -v prometheus >/dev/null 2>&1; then
    at_log "--with-prometheus: prometheus is not on PATH (run infra/install.sh); skipped"
  else
    mkdir -p "$prom_dir/data" "$AT_PROMETHEUS_TARGETS"
    # The Kafka nodes' metrics (also written when a node starts; here for nodes that already ran).
    if [ -s "$AT_KAFKA_JMX_EXPORTER" ]; then
      for ((i = 1; i <= brokers; i++)); do
        at_prometheus_target "kafka-$i" "127.0.0.1:$((AT_KAFKA_METRICS_PORT + i - 1))" "node=$i"
      done
    fi
    # Its own copy, so that the targets/ glob and alerts.yml resolve next to it.
    cp "$AT_INFRA_DIR/prometheus.yml" "$AT_INFRA_DIR/alerts.yml" "$prom_dir/"
    if at_pid_alive "$prom_pidfile" prometheus; then
      kill -HUP "$(cat "$prom_pidfile")"
      at_log "prometheus already runs (pid $(cat "$prom_pidfile")) on $AT_PROMETHEUS_URL: configuration reloaded"
    else
      if [ "$fresh" = 1 ]; then
        # The services' targets go (an earlier run's); the Kafka nodes' were just written.
        rm -rf "${prom_dir:?}/data"
        rm -f "$AT_PROMETHEUS_TARGETS"/at-*.json
        mkdir -p "$prom_dir/data"
      fi
      nohup setsid prometheus --config.file="$prom_dir/prometheus.yml" \
        --storage.tsdb.path="$prom_dir/data" \
        --web.listen-address="127.0.0.1:$AT_PROMETHEUS_PORT" </dev/null >>"$prom_log" 2>&1 9>&- &
      echo $! >"$prom_pidfile"
      for _ in $(seq 1 100); do
        curl -fs "$AT_PROMETHEUS_URL/-/ready" >/dev/null 2>&1 && break
        sleep 0.1
      done
      curl -fs "$AT_PROMETHEUS_URL/-/ready" >/dev/null 2>&1 \
        || at_die "prometheus did not become ready on $AT_PROMETHEUS_URL (log $prom_log)"
      at_log "prometheus pid $(cat "$prom_pidfile"): $AT_PROMETHEUS_URL (targets $AT_PROMETHEUS_TARGETS, log $prom_log)"
    fi
  fi
fi

at_log "ready in $(($(at_now_ms) - t0)) ms (state $AT_STATE_DIR)"
