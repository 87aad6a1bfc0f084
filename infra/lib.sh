# shellcheck shell=bash
# Helpers shared by the infra/ scripts (sourced; not meant to be run). Sources env.sh.
# shellcheck source=infra/env.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"

at_log() { printf '%s\n' "infra/$(basename "$0" .sh): $*"; }
at_die() { printf '%s\n' "infra/$(basename "$0" .sh): ERROR: $*" >&2; exit 1; }

# Time in milliseconds (for progress messages).
at_now_ms() { date +%s%3N; }

# at_pid_alive PIDFILE NAME: true when PIDFILE names a live process whose program is NAME (so a pid
# reused by another program after a crash is not mistaken for ours).
at_pid_alive() {
  local pidfile="$1" name="$2" pid exe
  [ -s "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] || return 1
  exe="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -1)"
  [ "$(basename "${exe:-none}")" = "$name" ]
}

# at_pid_starting PIDFILE NAME: like at_pid_alive, but also true while the process is still on its
# way to NAME through `nohup setsid NAME` (each execs the next; right after the fork the pid still
# runs bash, nohup or setsid, and a check then must not call the broker dead).
at_pid_starting() {
  local pidfile="$1" name="$2" pid exe
  at_pid_alive "$pidfile" "$name" && return 0
  [ -s "$pidfile" ] || return 1
  pid="$(cat "$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] || return 1
  exe="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -1)"
  case "$(basename "${exe:-none}")" in bash | nohup | setsid) return 0 ;; *) return 1 ;; esac
}

# at_port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
at_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# at_port_owner PORT: prints "pid/program" of the process listening on 127.0.0.1:PORT or *:PORT.
at_port_owner() {
  local owner
  owner="$(ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/pid \2 (\1)/p' | head -1)"
  echo "${owner:-another process}"
}

# ---------------------------------------------------------------------------------------------
# mosquitto

AT_MQTT_PIDFILE="$AT_MQTT_DIR/mosquitto.pid"
AT_MQTT_LOG="$AT_MQTT_DIR/mosquitto.log"
AT_MOSQUITTO_BIN="$(command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto)"

at_mqtt_running() { at_pid_alive "$AT_MQTT_PIDFILE" mosquitto; }

# at_mqtt_connect_ok USER PASSWORD [TLS]: true when USER can connect (and subscribe to its own
# downlink, a topic every user may subscribe to). Uses a throwaway clean-session client id, so it
# never touches the user's persistent session. Takes ~10 ms.
at_mqtt_connect_ok() {
  local user="$1" pass="$2" port="$AT_MQTT_PORT" tls=()
  if [ "${3:-}" = tls ]; then port="$AT_MQTT_TLS_PORT"; tls=(--cafile "$AT_MQTT_CA"); fi
  timeout 5 mosquitto_sub -h "$AT_MQTT_HOST" -p "$port" "${tls[@]}" -u "$user" -P "$pass" \
    -i "at-probe-$$-$RANDOM" -t "at/v1/down/$user" -E -q 0 >/dev/null 2>&1
}

# at_mqtt_healthy: both listeners accept the bridge's and the admin's credentials, and a message
# published by the admin comes back to a subscriber (retained, so there is no subscribe/publish race;
# it is cleared again).
at_mqtt_healthy() {
  at_mqtt_running || return 1
  # (No bare TCP probe of the ports: mosquitto logs each as a failed client, the TLS one as an SSL
  # error; the connections below prove both listeners.)
  local ingest admin nonce got
  ingest="$(cat "$AT_SECRETS_DIR/at-ingest.password" 2>/dev/null)" || return 1
  admin="$(cat "$AT_SECRETS_DIR/at-admin.password" 2>/dev/null)" || return 1
  at_mqtt_connect_ok at-ingest "$ingest" || return 1
  at_mqtt_connect_ok at-ingest "$ingest" tls || return 1
  # A $-topic: a raw reader subscribed to # does not see it (MQTT wildcards skip $ topics).
  nonce="probe-$$-$RANDOM"
  timeout 5 mosquitto_pub -h "$AT_MQTT_HOST" -p "$AT_MQTT_PORT" -u at-admin -P "$admin" \
    -t '$at/health/probe' -r -q 1 -m "$nonce" >/dev/null 2>&1 || return 1
  got="$(timeout 5 mosquitto_sub -h "$AT_MQTT_HOST" -p "$AT_MQTT_TLS_PORT" --cafile "$AT_MQTT_CA" \
    -u at-admin -P "$admin" -t '$at/health/probe' -C 1 -W 3 2>/dev/null)" || true
  timeout 5 mosquitto_pub -h "$AT_MQTT_HOST" -p "$AT_MQTT_PORT" -u at-admin -P "$admin" \
    -t '$at/health/probe' -r -q 1 -n >/dev/null 2>&1 || true
  [ "$got" = "$nonce" ]
}

# at_mqtt_sync_acl: installs infra/mosquitto.acl as the broker's ACL when it differs; true if it did.
at_mqtt_sync_acl() {
  cmp -s "$AT_INFRA_DIR/mosquitto.acl" "$AT_MQTT_ACL_FILE" && return 1
  (umask 077 && cp "$AT_INFRA_DIR/mosquitto.acl" "$AT_MQTT_ACL_FILE.tmp")
  mv -f "$AT_MQTT_ACL_FILE.tmp" "$AT_MQTT_ACL_FILE"
}

# at_mqtt_reload: SIGHUP makes mosquitto re-read the password file and the ACL (not the listeners).
at_mqtt_reload() {
  at_mqtt_running || return 0
  kill -HUP "$(cat "$AT_MQTT_PIDFILE")"
}

# ---------------------------------------------------------------------------------------------
# nisshi

AT_NISSHI_PIDFILE="$AT_NISSHI_DIR/nisshi.pid"
AT_NISSHI_LOG="$AT_NISSHI_DIR/nisshi.log"
AT_NISSHI_STORAGE_FILE="$AT_NISSHI_DIR/storage"   # which storage the running broker uses

at_nisshi_running() { at_pid_alive "$AT_NISSHI_PIDFILE" nisshi; }

# at_nisshi_healthy: the port is open and the broker answers a Kafka metadata request.
at_nisshi_healthy() {
  at_nisshi_running || return 1
  at_port_open "$AT_KAFKA_PORT" || return 1
  (cd "$AT_NISSHI_DIR" && timeout 5 nisshi topic list --broker "$AT_KAFKA_URL" >/dev/null 2>&1)
}

# ---------------------------------------------------------------------------------------------
# stopping

# at_stop_pidfile PIDFILE NAME [TIMEOUT_S]: SIGTERM, then SIGKILL after TIMEOUT_S (default 10);
# removes the pid file. Harmless when nothing runs.
at_stop_pidfile() {
  local pidfile="$1" name="$2" timeout_s="${3:-10}" pid i
  if ! at_pid_alive "$pidfile" "$name"; then
    rm -f "$pidfile"
    return 0
  fi
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout_s * 10; i++)); do
    [ -d "/proc/$pid" ] || break
    # A zombie (not reaped by its parent) has stopped too.
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
    sleep 0.1
  done
  if [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
    at_log "$name (pid $pid) ignored SIGTERM for ${timeout_s}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$pidfile"
  at_log "$name stopped (pid $pid)"
}
