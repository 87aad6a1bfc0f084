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
# "USER ROLE" lines: users with the grants of the service user at-ROLE (infra/mqtt-user.sh).
AT_MQTT_ROLES_FILE="$AT_MQTT_DIR/roles"
AT_MOSQUITTO_BIN="$(command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto)"

at_mqtt_running() { at_pid_alive "$AT_MQTT_PIDFILE" mosquitto; }

# at_mosq PASSWORD CLIENT ARGS...: runs mosquitto_sub or mosquitto_pub (CLIENT) for at most 5 s with
# PASSWORD in a private options file, never on its command line (which every user sees in `ps`):
# mosquitto's clients read default options from $XDG_CONFIG_HOME/<client>.
at_mosq() {
  local pass="$1" client="$2" dir rc=0
  shift 2
  dir="$(mktemp -d)"
  (umask 077 && printf -- '-P %s\n' "$pass" >"$dir/$client")
  XDG_CONFIG_HOME="$dir" timeout 5 "$client" "$@" || rc=$?
  rm -rf "$dir"
  return "$rc"
}

# at_mqtt_merge_hashed FILE: hashes FILE's "USER:PASSWORD" lines in place (mosquitto_passwd -U; FILE
# must be private) and puts them into the password file, replacing entries of the same names.
# (mosquitto_passwd -b would take the password as an argument, visible in `ps`.)
at_mqtt_merge_hashed() {
  local plain="$1"
  mosquitto_passwd -U "$plain"
  awk -F: 'NR == FNR { batch[$1] = 1; next } !($1 in batch)' "$plain" "$AT_MQTT_PASSWD_FILE" >"$plain.merged"
  cat "$plain" >>"$plain.merged"
  mv -f "$plain.merged" "$AT_MQTT_PASSWD_FILE"
}

# at_mqtt_connect_ok USER PASSWORD [TLS]: true when USER can connect (and subscribe to its own
# downlink, a topic every user may subscribe to). Takes ~10 ms. The broker binds client ids to users
# (use_username_as_clientid): this login IS USER's session, so it takes over a live connection of
# USER and, being clean, wipes USER's queued messages. Only for probe users nobody else uses
# (at-probe, at-reload-probe), never for a bridge, an admin client or a device.
at_mqtt_connect_ok() {
  local user="$1" pass="$2" port="$AT_MQTT_PORT" tls=()
  if [ "${3:-}" = tls ]; then port="$AT_MQTT_TLS_PORT"; tls=(--cafile "$AT_MQTT_CA"); fi
  at_mosq "$pass" mosquitto_sub -h "$AT_MQTT_HOST" -p "$port" "${tls[@]}" -u "$user" \
    -i "$user" -t "at/v1/down/$user" -E -q 0 >/dev/null 2>&1
}

# at_mqtt_healthy: both listeners accept the health probe's login (at-probe, a user of its own: a
# probe as the bridge or the admin would take over their live sessions), and a message it publishes
# comes back to it (retained, so there is no subscribe/publish race; it is cleared again). Two
# probes at the same moment (two status.sh) may take over each other's login: one then reports
# unhealthy once.
at_mqtt_healthy() {
  at_mqtt_running || return 1
  # (No bare TCP probe of the ports: mosquitto logs each as a failed client, the TLS one as an SSL
  # error; the connections below prove both listeners.)
  local probe nonce got
  probe="$(cat "$AT_SECRETS_DIR/at-probe.password" 2>/dev/null)" || return 1
  at_mqtt_connect_ok at-probe "$probe" || return 1
  at_mqtt_connect_ok at-probe "$probe" tls || return 1
  # A $-topic: a raw reader subscribed to # does not see it (MQTT wildcards skip $ topics).
  nonce="probe-$$-$RANDOM"
  at_mosq "$probe" mosquitto_pub -h "$AT_MQTT_HOST" -p "$AT_MQTT_PORT" -u at-probe -i at-probe \
    -t '$at/health/probe' -r -q 1 -m "$nonce" >/dev/null 2>&1 || return 1
  got="$(at_mosq "$probe" mosquitto_sub -h "$AT_MQTT_HOST" -p "$AT_MQTT_TLS_PORT" --cafile "$AT_MQTT_CA" \
    -u at-probe -i at-probe -t '$at/health/probe' -C 1 -W 3 2>/dev/null)" || true
  at_mosq "$probe" mosquitto_pub -h "$AT_MQTT_HOST" -p "$AT_MQTT_PORT" -u at-probe -i at-probe \
    -t '$at/health/probe' -r -q 1 -n >/dev/null 2>&1 || true
  [ "$got" = "$nonce" ]
}

# The service users infra/start.sh creates (each with its password in $AT_SECRETS_DIR, the bridge's
# two logins sharing secrets/at-ingest.password). mqtt-user.sh refuses to remove them or give them a
# role.
AT_MQTT_SERVICE_USERS="at-ingest-up at-ingest-down at-admin at-probe at-reload-probe"

# at_mqtt_lock: takes the lock (fd 8, until the shell exits or at_mqtt_unlock) that serializes the
# writers of the password file, the roles file and the live ACL.
at_mqtt_lock() {
  exec 8>"$AT_MQTT_DIR/passwd.lock"
  flock 8
}
at_mqtt_unlock() { exec 8>&-; }

# at_mqtt_render_acl: prints the broker's ACL: infra/mosquitto.acl, then for each "USER ROLE" line of
# $AT_MQTT_ROLES_FILE (infra/mqtt-user.sh add-role/add-bridge) a `user USER` block with the topic
# lines of the service user at-ROLE in infra/mosquitto.acl. (mosquitto's acl_file grants per exact
# username only: users sharing a role, e.g. one bridge user per test, each need their own block.)
at_mqtt_render_acl() {
  cat "$AT_INFRA_DIR/mosquitto.acl"
  [ -s "$AT_MQTT_ROLES_FILE" ] || return 0
  printf '\n# ---- Generated from %s by infra/mqtt-user.sh: users with the grants of a service user.\n' \
    "$AT_MQTT_ROLES_FILE"
  # As mosquitto reads it: a topic line belongs to the last `user` line above it.
  awk 'NR == FNR {
         if ($1 == "user") cur = $2
         else if ($1 == "topic" && cur != "") grants[cur] = grants[cur] $0 "\n"
         next
       }
       NF == 2 && (("at-" $2) in grants) { printf "user %s\n%s", $1, grants["at-" $2] }' \
    "$AT_INFRA_DIR/mosquitto.acl" "$AT_MQTT_ROLES_FILE"
}

# at_mqtt_sync_acl: installs the rendered ACL (at_mqtt_render_acl) as the broker's when it differs;
# true if it did. The caller holds at_mqtt_lock.
at_mqtt_sync_acl() {
  local tmp
  tmp="$(mktemp "$AT_MQTT_DIR/acl.XXXXXX")"
  at_mqtt_render_acl >"$tmp"
  if cmp -s "$tmp" "$AT_MQTT_ACL_FILE"; then
    rm -f "$tmp"
    return 1
  fi
  chmod 600 "$tmp"
  mv -f "$tmp" "$AT_MQTT_ACL_FILE"
}

# at_mqtt_render_conf: prints infra/mosquitto.conf.in with its @VARIABLES@ filled in.
at_mqtt_render_conf() {
  sed -e "s|@USER@|$(id -un)|" -e "s|@PASSWD_FILE@|$AT_MQTT_PASSWD_FILE|" -e "s|@ACL_FILE@|$AT_MQTT_ACL_FILE|" \
    -e "s|@DATA_DIR@|$AT_MQTT_DIR/data|" -e "s|@MQTT_PORT@|$AT_MQTT_PORT|" \
    -e "s|@MQTT_TLS_PORT@|$AT_MQTT_TLS_PORT|" -e "s|@TLS_DIR@|$AT_MQTT_TLS_DIR|" \
    "$AT_INFRA_DIR/mosquitto.conf.in"
}

# at_mqtt_conf_current: the running broker's configuration file is what infra/mosquitto.conf.in
# renders to now (some options, use_username_as_clientid among them, are not re-read on SIGHUP).
at_mqtt_conf_current() { [ -e "$AT_MQTT_CONF" ] && cmp -s <(at_mqtt_render_conf) "$AT_MQTT_CONF"; }

# at_mqtt_reload: SIGHUP makes mosquitto re-read the password file and the ACL (not the listeners).
at_mqtt_reload() {
  at_mqtt_running || return 0
  kill -HUP "$(cat "$AT_MQTT_PIDFILE")"
}

# ---------------------------------------------------------------------------------------------
# Apache Kafka (KRaft; every node a combined controller+broker)

# at_kafka_shape_dir N: the state of the N-node cluster (its own cluster id and data dirs, so a
# single node and the three-node cluster never share a log).
at_kafka_shape_dir() { echo "$AT_KAFKA_DIR/$1-node"; }
at_kafka_node_dir() { echo "$(at_kafka_shape_dir "$1")/node-$2"; }

# at_kafka_node_alive N I: node I of the N-node cluster runs (its pid is a java process started on
# that node's server.properties, so a reused pid is not mistaken for it).
at_kafka_node_alive() {
  local dir pid
  dir="$(at_kafka_node_dir "$1" "$2")"
  at_pid_alive "$dir/kafka.pid" java || return 1
  pid="$(cat "$dir/kafka.pid")"
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$dir/server.properties"
}

# at_kafka_node_starting N I: alive, or still on its way through `nohup setsid java`.
at_kafka_node_starting() {
  at_kafka_node_alive "$1" "$2" || at_pid_starting "$(at_kafka_node_dir "$1" "$2")/kafka.pid" java
}

# at_kafka_running_nodes N: prints the ids of the running nodes of the N-node cluster.
at_kafka_running_nodes() {
  local i
  for ((i = 1; i <= $1; i++)); do
    if at_kafka_node_alive "$1" "$i"; then echo "$i"; fi
  done
}

# at_kafka_running_shape: prints 1 or 3 when a node of that cluster runs, nothing otherwise.
at_kafka_running_shape() {
  local n
  for n in 1 3; do
    if [ -n "$(at_kafka_running_nodes "$n")" ]; then
      echo "$n"
      return 0
    fi
  done
}

# at_kafka_set_shape N: this shell's AT_KAFKA_NODES and AT_KAFKA_BROKERS for an N-node cluster.
at_kafka_set_shape() {
  local i
  AT_KAFKA_NODES="$1"
  AT_KAFKA_BROKERS=""
  for ((i = 0; i < $1; i++)); do
    AT_KAFKA_BROKERS="${AT_KAFKA_BROKERS:+$AT_KAFKA_BROKERS,}127.0.0.1:$((AT_KAFKA_PORT + i))"
  done
  export AT_KAFKA_NODES AT_KAFKA_BROKERS
}

# at_kafka_admin ARGS…: Kafka's Admin API through infra/kafka/KafkaAdmin.java (see its header).
at_kafka_admin() {
  [ -r "$AT_KAFKA_ADMIN_DIR/KafkaAdmin.class" ] || at_die "Kafka is not installed in $AT_KAFKA_HOME: run infra/install.sh"
  AT_KAFKA_ADMIN_PROPERTIES="$AT_KAFKA_ADMIN_PROPERTIES" java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dlog4j2.configurationFile="$AT_KAFKA_HOME/log4j2.properties" \
    -cp "$AT_KAFKA_ADMIN_DIR:$AT_KAFKA_HOME/libs/*" KafkaAdmin "$@"
}

# at_kafka_principals: sets the SCRAM credentials of $AT_KAFKA_PRINCIPALS and the ACLs of
# infra/kafka-acls.tsv for the unprefixed topics, once per cluster and whenever either changes (a
# stamp in the cluster's state dir; ~2 s, the JVM).
at_kafka_principals() {
  local stamp_file stamp plain u rc=0
  stamp_file="$(at_kafka_shape_dir "$AT_KAFKA_NODES")/principals.stamp"
  stamp="$( (cat "$AT_INFRA_DIR/kafka-acls.tsv"; for u in $AT_KAFKA_PRINCIPALS; do echo "$u"; cat "$AT_SECRETS_DIR/kafka-$u.password"; done) | sha256sum | cut -c1-16)"
  [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ] && return 0
  # The passwords go to the admin tool in a private file, never on its command line.
  plain="$(umask 077 && mktemp "$AT_SECRETS_DIR/scram.XXXXXX")"
  for u in $AT_KAFKA_PRINCIPALS; do printf '%s %s\n' "$u" "$(cat "$AT_SECRETS_DIR/kafka-$u.password")" >>"$plain"; done
  at_kafka_admin users "$AT_KAFKA_BROKERS" "$plain" || rc=$?
  rm -f "$plain"
  [ "$rc" = 0 ] || return "$rc"
  at_kafka_admin grant "$AT_KAFKA_BROKERS" "$AT_INFRA_DIR/kafka-acls.tsv" "" || return $?
  echo "$stamp" >"$stamp_file"
}

# at_kafka_healthy [N]: every node of the N-node cluster (default: the current shape) runs, the
# metadata lists all of them, and a replicated probe topic can be created and deleted (a Kafka
# protocol round trip through the controller quorum; ~1.5 s, mostly the JVM starting).
at_kafka_healthy() {
  local n="${1:-$AT_KAFKA_NODES}" i
  for ((i = 1; i <= n; i++)); do at_kafka_node_alive "$n" "$i" || return 1; done
  timeout 30 bash -c "source '$AT_INFRA_DIR/lib.sh'; at_kafka_admin health '$AT_KAFKA_BROKERS' '$n'" \
    >/dev/null 2>&1
}

# at_kafka_write_config N I: node I's server.properties for the N-node cluster.
at_kafka_write_config() {
  local n="$1" i="$2" dir voters="" j rf isr jaas pass
  dir="$(at_kafka_node_dir "$n" "$i")"
  pass="$(cat "$AT_SECRETS_DIR/kafka-at-kafka.password")" || at_die "no Kafka super user password: run infra/start.sh"
  jaas="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"at-kafka\" password=\"$pass\" user_at-kafka=\"$pass\";"
  for ((j = 1; j <= n; j++)); do
    voters="${voters:+$voters,}$j@127.0.0.1:$((AT_KAFKA_CONTROLLER_PORT + j - 1))"
  done
  rf=$((n < 3 ? n : 3))
  isr=$((n < 3 ? 1 : 2))
  mkdir -p "$dir/data"
  # Private from the start: it holds the super user's password.
  (umask 077 && : >"$dir/server.properties.tmp")
  {
    echo "# Generated by infra/start.sh --brokers $n (node $i of $n); rewritten at every start."
    echo "process.roles=broker,controller"
    echo "node.id=$i"
    echo "controller.quorum.voters=$voters"
    echo "# Every listener is SASL over TLS (the test CA of infra/start.sh). Clients sign in with"
    echo "# SCRAM-SHA-256 as their own principal (infra/kafka-acl.sh); the brokers, the controllers and the"
    echo "# infra/ scripts as the super user at-kafka with PLAIN (SCRAM is not available on KRaft"
    echo "# controller listeners, and PLAIN needs no credential in the metadata log before it exists)."
    echo "listeners=CLIENT://127.0.0.1:$((AT_KAFKA_PORT + i - 1)),CONTROLLER://127.0.0.1:$((AT_KAFKA_CONTROLLER_PORT + i - 1))"
    echo "advertised.listeners=CLIENT://127.0.0.1:$((AT_KAFKA_PORT + i - 1))"
    echo "listener.security.protocol.map=CLIENT:SASL_SSL,CONTROLLER:SASL_SSL"
    echo "controller.listener.names=CONTROLLER"
    echo "inter.broker.listener.name=CLIENT"
    echo "sasl.mechanism.inter.broker.protocol=PLAIN"
    echo "sasl.mechanism.controller.protocol=PLAIN"
    echo "listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-256,PLAIN"
    echo "listener.name.controller.sasl.enabled.mechanisms=PLAIN"
    echo "listener.name.client.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
    echo "listener.name.client.plain.sasl.jaas.config=$jaas"
    echo "listener.name.controller.plain.sasl.jaas.config=$jaas"
    echo "ssl.keystore.type=PEM"
    echo "ssl.keystore.location=$AT_MQTT_TLS_DIR/kafka.pem"
    echo "ssl.truststore.type=PEM"
    echo "ssl.truststore.location=$AT_KAFKA_CA"
    echo "# Authorisation: only what infra/kafka-acls.tsv grants (the super user may do anything)."
    echo "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    echo "allow.everyone.if.no.acl.found=false"
    echo "super.users=User:at-kafka"
    echo "log.dirs=$dir/data"
    echo "# Replication: every topic on min(N, 3) brokers; with three, an acks=all write needs two in sync."
    echo "default.replication.factor=$rf"
    echo "min.insync.replicas=$isr"
    echo "offsets.topic.replication.factor=$rf"
    echo "offsets.topic.num.partitions=10"
    echo "transaction.state.log.replication.factor=$rf"
    echo "transaction.state.log.min.isr=$isr"
    echo "share.coordinator.state.topic.replication.factor=$rf"
    echo "share.coordinator.state.topic.min.isr=$isr"
    echo "unclean.leader.election.enable=false"
    echo "# A misspelt topic fails loudly instead of being created."
    echo "auto.create.topics.enable=false"
    echo "# Tests: a group forms at once, and clients may ask for short sessions (failover tests)."
    echo "group.initial.rebalance.delay.ms=0"
    echo "group.min.session.timeout.ms=1000"
    echo "# The consumer group protocol of KIP-848 (the services' groups): sessions and heartbeats are"
    echo "# the broker's; a member gone for 6 s loses its partitions (default 45 s)."
    echo "group.consumer.min.session.timeout.ms=1000"
    echo "group.consumer.session.timeout.ms=6000"
    echo "group.consumer.min.heartbeat.interval.ms=100"
    echo "group.consumer.heartbeat.interval.ms=500"
    echo "# A killed node is fenced after 3 s (default 9 s), so leadership moves quickly."
    echo "broker.heartbeat.interval.ms=500"
    echo "broker.session.timeout.ms=3000"
    echo "# Sized for 2 cores and many small test topics (offset indexes are preallocated per segment)."
    echo "num.network.threads=2"
    echo "num.io.threads=4"
    echo "background.threads=4"
    echo "num.recovery.threads.per.data.dir=1"
    echo "log.index.size.max.bytes=1048576"
  } >"$dir/server.properties.tmp"
  mv -f "$dir/server.properties.tmp" "$dir/server.properties"
}

# at_kafka_format N I: formats node I's storage once (KRaft needs it before the first start).
at_kafka_format() {
  local n="$1" i="$2" dir cid
  dir="$(at_kafka_node_dir "$n" "$i")"
  [ -s "$dir/data/meta.properties" ] && return 0
  cid="$(cat "$(at_kafka_shape_dir "$n")/cluster.id")"
  java -Xmx256m -Dlog4j2.configurationFile="$AT_KAFKA_HOME/log4j2.properties" -cp "$AT_KAFKA_HOME/libs/*" \
    kafka.tools.StorageTool format --cluster-id "$cid" --config "$dir/server.properties" \
    --ignore-formatted >>"$dir/kafka.log" 2>&1 \
    || at_die "formatting Kafka node $i's storage failed (log $dir/kafka.log)"
}

# at_kafka_start_node N I: starts node I of the N-node cluster in the background (no wait).
at_kafka_start_node() {
  local n="$1" i="$2" dir
  dir="$(at_kafka_node_dir "$n" "$i")"
  at_kafka_write_config "$n" "$i"
  at_kafka_format "$n" "$i"
  printf '\n==== %s infra/start.sh --brokers %s (node %s)\n' "$(date -u +%FT%TZ)" "$n" "$i" >>"$dir/kafka.log"
  # setsid: its own session, so it outlives the caller's process group; 9>&-: it must not hold the
  # start/stop lock.
  # Broker metrics for Prometheus (kafka/jmx-exporter.yml), when install.sh could fetch the agent.
  local agent=() metrics_port=$((AT_KAFKA_METRICS_PORT + i - 1))
  if [ -s "$AT_KAFKA_JMX_EXPORTER" ]; then
    agent=("-javaagent:$AT_KAFKA_JMX_EXPORTER=127.0.0.1:$metrics_port:$AT_INFRA_DIR/kafka/jmx-exporter.yml")
    at_prometheus_target "kafka-$i" "127.0.0.1:$metrics_port" "node=$i"
  fi
  nohup setsid java -Xms128m -Xmx"$AT_KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$AT_KAFKA_HOME/log4j2.properties" "${agent[@]}" \
    -cp "$AT_KAFKA_HOME/libs/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/kafka.log" 2>&1 9>&- &
  echo $! >"$dir/kafka.pid"
}

# ---------------------------------------------------------------------------------------------
# stopping

# at_stop_pidfile PIDFILE NAME [TIMEOUT_S] [LABEL]: SIGTERM, then SIGKILL after TIMEOUT_S (default
# 10); removes the pid file. Harmless when nothing runs.
at_stop_pidfile() { at_stop_pidfiles "${3:-10}" "$1:$2:${4:-$2}"; }

# at_stop_pidfiles TIMEOUT_S PIDFILE:NAME:LABEL…: SIGTERM to all at once, then waits for all (so the
# nodes of a Kafka cluster shut down together instead of the last one waiting for a lost quorum),
# SIGKILL to those still running after TIMEOUT_S.
at_stop_pidfiles() {
  local timeout_s="$1" spec pidfile name label pid i left
  shift
  local -a pids=() labels=() files=()
  for spec in "$@"; do
    IFS=: read -r pidfile name label <<<"$spec"
    if at_pid_alive "$pidfile" "$name"; then
      pid="$(cat "$pidfile")"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      labels+=("$label")
      files+=("$pidfile")
    else
      rm -f "$pidfile"
    fi
  done
  for ((i = 0; i < timeout_s * 10; i++)); do
    left=0
    for pid in "${pids[@]}"; do
      # A zombie (not reaped by its parent) has stopped too.
      if [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then left=1; fi
    done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    pid="${pids[$i]}"
    if [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
      at_log "${labels[$i]} (pid $pid) ignored SIGTERM for ${timeout_s}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
    rm -f "${files[$i]}"
    at_log "${labels[$i]} stopped (pid $pid)"
  done
}

# at_prometheus_target NAME ADDR [KEY=VALUE ...]: the scrape target file $AT_PROMETHEUS_TARGETS/NAME.json
# for one service's /metrics at ADDR (NAME starts with its job: at-ingest-, at-reencrypt-,
# at-mpc-node-; see infra/prometheus.yml), with extra labels. Written aside and renamed: Prometheus
# reads it on change.
at_prometheus_target() {
  local name="$1" addr="$2" labels="" kv
  shift 2
  for kv in "$@"; do labels="${labels:+$labels, }\"${kv%%=*}\": \"${kv#*=}\""; done
  mkdir -p "$AT_PROMETHEUS_TARGETS"
  printf '[{"targets": ["%s"], "labels": {%s}}]\n' "$addr" "$labels" >"$AT_PROMETHEUS_TARGETS/.$name.json.tmp"
  mv -f "$AT_PROMETHEUS_TARGETS/.$name.json.tmp" "$AT_PROMETHEUS_TARGETS/$name.json"
}
