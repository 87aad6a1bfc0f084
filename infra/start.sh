#!/usr/bin/env bash
# Starts the brokers the pipeline and its tests use, in the background, and waits until they serve:
#   mosquitto (MQTT 127.0.0.1:$AT_MQTT_PORT, MQTT/TLS 127.0.0.1:$AT_MQTT_TLS_PORT)
#   nisshi    (Kafka protocol 127.0.0.1:$AT_KAFKA_PORT)
# Usage: infra/start.sh [--storage memory|sqlite] [--with-prometheus]
#   --storage memory   (default) nisshi keeps everything in memory: tests; a restart starts empty.
#   --storage sqlite   nisshi stores in $AT_STATE_DIR/nisshi/nisshi.db; survives restarts.
#   --with-prometheus  also start Prometheus (only if `prometheus` is on PATH; it is not installed by
#                      infra/install.sh) with infra/prometheus.yml on 127.0.0.1:$AT_PROMETHEUS_PORT.
# Idempotent: when both brokers already run and are healthy it says so and returns (~0.25 s).
# State, logs and pid files live under $AT_STATE_DIR (see infra/README.md).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

storage=memory
with_prometheus=0
while [ $# -gt 0 ]; do
  case "$1" in
    --storage) storage="${2:-}"; shift 2 || at_die "--storage needs memory or sqlite" ;;
    --storage=*) storage="${1#--storage=}"; shift ;;
    --with-prometheus) with_prometheus=1; shift ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) at_die "unknown argument '$1' (usage: infra/start.sh [--storage memory|sqlite] [--with-prometheus])" ;;
  esac
done
case "$storage" in memory | sqlite) ;; *) at_die "--storage must be memory or sqlite, not '$storage'" ;; esac

HEALTH_TIMEOUT_S="${AT_START_TIMEOUT_S:-30}"
t0="$(at_now_ms)"

# One start/stop at a time (e.g. test processes starting the brokers concurrently): the second
# waits, then finds them healthy.
mkdir -p "$AT_STATE_DIR"
chmod 700 "$AT_STATE_DIR"
exec 9>"$AT_STATE_DIR/.lock"
flock 9

# The storage URL nisshi is (to be) started with.
if [ "$storage" = sqlite ]; then
  # nisshi reads the URL path without its leading "/" (sqlite:///tmp/x.db opens tmp/x.db relative to
  # its working dir), so an absolute path needs four slashes: sqlite:////tmp/x.db.
  storage_url="sqlite:///$AT_NISSHI_SQLITE"
else
  storage_url="memory://nisshi/"
fi

# ---------------------------------------------------------------------------------------------
# Fast path: both already running and healthy.
if at_nisshi_running; then
  running_storage="$(cat "$AT_NISSHI_STORAGE_FILE" 2>/dev/null || echo unknown)"
  if [ "$running_storage" != "$storage_url" ]; then
    at_die "nisshi already runs with storage '$running_storage', not '$storage_url'; run infra/stop.sh first"
  fi
fi
if at_mqtt_running && at_mqtt_sync_acl; then
  at_log "infra/mosquitto.acl changed: installed it, reloading mosquitto (pid $(cat "$AT_MQTT_PIDFILE"))"
  at_mqtt_reload
  sleep 0.1
fi
if at_mqtt_running && at_nisshi_running && [ "$with_prometheus" = 0 ] \
  && at_mqtt_healthy && at_nisshi_healthy; then
  at_log "already running and healthy: mosquitto pid $(cat "$AT_MQTT_PIDFILE") ($AT_MQTT_URL, $AT_MQTT_TLS_URL)," \
    "nisshi pid $(cat "$AT_NISSHI_PIDFILE") ($AT_KAFKA_BROKERS, $storage) [$(($(at_now_ms) - t0)) ms]"
  exit 0
fi

bash "$AT_INFRA_DIR/install.sh"
command -v nisshi >/dev/null 2>&1 || at_die "nisshi is not on PATH after infra/install.sh (see its output above)"
command -v mosquitto_passwd >/dev/null 2>&1 || at_die "mosquitto-clients missing after infra/install.sh"

umask 077
mkdir -p "$AT_STATE_DIR" "$AT_SECRETS_DIR" "$AT_MQTT_DIR/data" "$AT_MQTT_TLS_DIR" "$AT_NISSHI_DIR"
chmod 700 "$AT_STATE_DIR" "$AT_SECRETS_DIR" "$AT_MQTT_DIR" "$AT_MQTT_TLS_DIR" "$AT_NISSHI_DIR"

# ---------------------------------------------------------------------------------------------
# Secrets, TLS, mosquitto config (each created once, kept afterwards)

for user in at-ingest at-admin; do
  f="$AT_SECRETS_DIR/$user.password"
  if [ ! -s "$f" ]; then
    openssl rand -hex 24 >"$f"
    chmod 600 "$f"
    at_log "generated the MQTT password of $user in $f"
  fi
done
# Re-source so that this shell has the generated passwords too.
source "$AT_INFRA_DIR/env.sh"

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

sed -e "s|@USER@|$(id -un)|" -e "s|@PASSWD_FILE@|$AT_MQTT_PASSWD_FILE|" -e "s|@ACL_FILE@|$AT_MQTT_ACL_FILE|" \
  -e "s|@DATA_DIR@|$AT_MQTT_DIR/data|" -e "s|@MQTT_PORT@|$AT_MQTT_PORT|" \
  -e "s|@MQTT_TLS_PORT@|$AT_MQTT_TLS_PORT|" -e "s|@TLS_DIR@|$AT_MQTT_TLS_DIR|" \
  "$AT_INFRA_DIR/mosquitto.conf.in" >"$AT_MQTT_CONF.tmp"
mv -f "$AT_MQTT_CONF.tmp" "$AT_MQTT_CONF"
acl_changed=0
if at_mqtt_sync_acl; then acl_changed=1; fi
# The service users: added once (device users added later by infra/mqtt-user.sh are kept).
users_changed=0
[ -e "$AT_MQTT_PASSWD_FILE" ] || : >"$AT_MQTT_PASSWD_FILE"
for user in at-ingest at-admin; do
  if ! grep -q "^$user:" "$AT_MQTT_PASSWD_FILE"; then
    mosquitto_passwd -b "$AT_MQTT_PASSWD_FILE" "$user" "$(cat "$AT_SECRETS_DIR/$user.password")"
    users_changed=1
  fi
done
chmod 600 "$AT_MQTT_PASSWD_FILE" "$AT_MQTT_ACL_FILE" "$AT_MQTT_CONF"

# ---------------------------------------------------------------------------------------------
# Start what is not running

# Check every port we are about to listen on before starting anything.
for port in "$AT_MQTT_PORT" "$AT_MQTT_TLS_PORT" "$AT_KAFKA_PORT"; do
  if [ "$port" = "$AT_KAFKA_PORT" ]; then at_nisshi_running && continue; else at_mqtt_running && continue; fi
  if at_port_open "$port"; then
    at_die "port $port is already taken by $(at_port_owner "$port"), not by a broker of $AT_STATE_DIR;" \
      "stop it, or choose other ports (AT_MQTT_PORT, AT_MQTT_TLS_PORT, AT_KAFKA_PORT)"
  fi
done

started_mqtt=0
started_nisshi=0

if at_mqtt_running; then
  if [ "$acl_changed" = 1 ] || [ "$users_changed" = 1 ]; then
    at_log "mosquitto runs (pid $(cat "$AT_MQTT_PIDFILE")): reloading its ACL and password file"
    at_mqtt_reload
  fi
else
  at_log "starting mosquitto on 127.0.0.1:$AT_MQTT_PORT (TLS :$AT_MQTT_TLS_PORT), log $AT_MQTT_LOG"
  printf '\n==== %s infra/start.sh\n' "$(date -u +%FT%TZ)" >>"$AT_MQTT_LOG"
  # setsid: its own session, so it outlives the caller's process group and terminal; 9>&-: it must
  # not inherit (and so hold) the start/stop lock.
  nohup setsid "$AT_MOSQUITTO_BIN" -c "$AT_MQTT_CONF" </dev/null >>"$AT_MQTT_LOG" 2>&1 9>&- &
  echo $! >"$AT_MQTT_PIDFILE"
  started_mqtt=1
fi

if ! at_nisshi_running; then
  # nisshi reads a .env in its working directory: it runs in its own state dir, which has none.
  rm -f "$AT_NISSHI_DIR/.env"
  at_log "starting nisshi on $AT_KAFKA_URL (storage $storage_url), log $AT_NISSHI_LOG"
  printf '\n==== %s infra/start.sh --storage %s\n' "$(date -u +%FT%TZ)" "$storage" >>"$AT_NISSHI_LOG"
  (
    cd "$AT_NISSHI_DIR"
    # The flags below override their environment variables; unset the others nisshi reads, so a
    # stray CLUSTER_ID or SCHEMA_REGISTRY in the caller's environment cannot change the broker.
    unset CLUSTER_ID SCHEMA_REGISTRY OTEL_EXPORTER_OTLP_ENDPOINT GROUP_POLL_INTERVAL
    exec nohup setsid nisshi broker \
      --storage-engine "$storage_url" \
      --listener-url "$AT_KAFKA_URL" \
      --advertised-listener-url "$AT_KAFKA_URL" \
      --group-initial-rebalance-delay 0s \
      </dev/null >>"$AT_NISSHI_LOG" 2>&1 9>&-
  ) &
  echo $! >"$AT_NISSHI_PIDFILE"
  echo "$storage_url" >"$AT_NISSHI_STORAGE_FILE"
  started_nisshi=1
fi

# ---------------------------------------------------------------------------------------------
# Wait until both serve

fail() { # fail NAME LOG: show the log's tail, stop what this run started, exit 1
  at_log "$2 since this start (last 20 lines):" >&2
  awk '/^==== / { n = 0; delete l } { l[++n] = $0 } END { for (i = (n > 20 ? n - 19 : 1); i <= n; i++) print "    " l[i] }' \
    "$2" >&2 2>/dev/null || true
  [ "$started_mqtt" = 1 ] && at_stop_pidfile "$AT_MQTT_PIDFILE" mosquitto 5
  [ "$started_nisshi" = 1 ] && at_stop_pidfile "$AT_NISSHI_PIDFILE" nisshi 5
  at_die "$1 (full log: $2)"
}

deadline=$(($(at_now_ms) + HEALTH_TIMEOUT_S * 1000))
mqtt_ok=0
nisshi_ok=0
while :; do
  if [ "$mqtt_ok" = 0 ]; then
    at_pid_starting "$AT_MQTT_PIDFILE" mosquitto || fail "mosquitto exited during start-up" "$AT_MQTT_LOG"
    if at_mqtt_healthy; then mqtt_ok=1; fi
  fi
  if [ "$nisshi_ok" = 0 ]; then
    at_pid_starting "$AT_NISSHI_PIDFILE" nisshi || fail "nisshi exited during start-up" "$AT_NISSHI_LOG"
    if at_nisshi_healthy; then nisshi_ok=1; fi
  fi
  [ "$mqtt_ok" = 1 ] && [ "$nisshi_ok" = 1 ] && break
  if [ "$(at_now_ms)" -ge "$deadline" ]; then
    [ "$mqtt_ok" = 1 ] || fail "mosquitto not healthy after ${HEALTH_TIMEOUT_S}s (MQTT round trip as at-admin failed)" "$AT_MQTT_LOG"
    fail "nisshi not healthy after ${HEALTH_TIMEOUT_S}s (no answer to a metadata request on $AT_KAFKA_URL)" "$AT_NISSHI_LOG"
  fi
  sleep 0.1
done

at_log "mosquitto pid $(cat "$AT_MQTT_PIDFILE"): $AT_MQTT_URL and $AT_MQTT_TLS_URL (CA $AT_MQTT_CA)"
at_log "nisshi pid $(cat "$AT_NISSHI_PIDFILE"): $AT_KAFKA_BROKERS ($storage)"

# ---------------------------------------------------------------------------------------------
# Optional: Prometheus

if [ "$with_prometheus" = 1 ]; then
  prom_pidfile="$AT_STATE_DIR/prometheus/prometheus.pid"
  prom_log="$AT_STATE_DIR/prometheus/prometheus.log"
  if ! command -v prometheus >/dev/null 2>&1; then
    at_log "--with-prometheus: prometheus is not on PATH (infra/install.sh does not install it;" \
      "e.g. apt-get install prometheus); skipped"
  elif at_pid_alive "$prom_pidfile" prometheus; then
    at_log "prometheus already runs (pid $(cat "$prom_pidfile")) on 127.0.0.1:$AT_PROMETHEUS_PORT"
  else
    mkdir -p "$AT_STATE_DIR/prometheus/data"
    nohup setsid prometheus --config.file="$AT_INFRA_DIR/prometheus.yml" \
      --storage.tsdb.path="$AT_STATE_DIR/prometheus/data" \
      --web.listen-address="127.0.0.1:$AT_PROMETHEUS_PORT" </dev/null >>"$prom_log" 2>&1 9>&- &
    echo $! >"$prom_pidfile"
    at_log "prometheus pid $!: http://127.0.0.1:$AT_PROMETHEUS_PORT (log $prom_log)"
  fi
fi

at_log "ready in $(($(at_now_ms) - t0)) ms (state $AT_STATE_DIR)"
