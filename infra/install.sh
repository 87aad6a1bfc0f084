#!/usr/bin/env bash
# Installs what the pipeline needs, once per machine:
#   - Debian packages: mosquitto (+ clients), cmake and the libcurl headers (rdkafka's bundled
#     librdkafka), jq, curl, openssl, a C/C++ compiler; Java 17+ and Maven if missing;
#   - Apache Kafka (version in infra/kafka/pom.xml) from Maven Central: `mvn --strict-checksums
#     dependency:copy-dependencies` into $AT_KAFKA_HOME/libs, plus infra/kafka/KafkaAdmin.java
#     compiled beside it (the scripts' admin client). Nothing is downloaded from anywhere else.
# Idempotent: a second run only checks (about a second). The Kafka folder is rebuilt when
# infra/kafka/ changes (a stamp of its files).
set -euo pipefail
# shellcheck source=infra/env.sh
source "$(cd "$(dirname "$0")" && pwd)/env.sh"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || need_apt+=(mosquitto-clients mosquitto)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need_apt+=(libcurl4-openssl-dev)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v jq >/dev/null 2>&1 || need_apt+=(jq)
command -v javac >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
# Prometheus and promtool (alert rules and their unit tests: infra/check-prometheus.sh).
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "infra/install: apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # The Debian package may start a system instance (not here: policy-rc.d forbids it) on the ports
  # our own instance uses: stop that one by its pid file, never ours by name.
  if [ -s /run/mosquitto/mosquitto.pid ]; then
    $SUDO kill "$(cat /run/mosquitto/mosquitto.pid)" 2>/dev/null || true
  fi
  # Likewise the package's Prometheus service, where systemd started one on port 9090.
  $SUDO systemctl stop prometheus >/dev/null 2>&1 || true
fi

# Kafka 4 brokers need Java 17 or newer.
java_major="$(java -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2}')"
if ! [[ "${java_major:-0}" =~ ^[0-9]+$ ]] || [ "$java_major" -lt 17 ]; then
  echo "infra/install: ERROR: Apache Kafka $AT_KAFKA_VERSION needs Java 17 or newer; 'java' here is" \
    "${java_major:-missing} ($(command -v java || echo 'not on PATH')). Install a JDK 17+ (Debian:" \
    "openjdk-17-jdk-headless) or put one first on PATH." >&2
  exit 1
fi

stamp="$(cat "$AT_INFRA_DIR/kafka/pom.xml" | sha256sum | cut -c1-16)"
if [ "$(cat "$AT_KAFKA_HOME/.stamp" 2>/dev/null)" != "$stamp" ]; then
  # One install at a time: a second install.sh waits here, then finds the stamp and skips.
  mkdir -p "$(dirname "$AT_KAFKA_HOME")"
  exec 9>"$(dirname "$AT_KAFKA_HOME")/install.lock"
  flock 9
fi
if [ "$(cat "$AT_KAFKA_HOME/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "infra/install: Apache Kafka $AT_KAFKA_VERSION from Maven Central into $AT_KAFKA_HOME (once)"
  t0=$(date +%s)
  tmp="$AT_KAFKA_HOME.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! out="$(mvn -B -q --strict-checksums -f "$AT_INFRA_DIR/kafka/pom.xml" \
    dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp/libs" 2>&1)"; then
    printf '%s\n' "$out" | tail -30 >&2
    echo "infra/install: ERROR: Maven could not resolve org.apache.kafka:kafka_2.13:$AT_KAFKA_VERSION" \
      "from Maven Central (output above). No other broker is used instead." >&2
    exit 1
  fi
  ls "$tmp/libs"/kafka_2.13-"$AT_KAFKA_VERSION".jar >/dev/null 2>&1 \
    || { echo "infra/install: ERROR: kafka_2.13-$AT_KAFKA_VERSION.jar missing after Maven" >&2; exit 1; }
  cp "$AT_INFRA_DIR/kafka/log4j2.properties" "$tmp/log4j2.properties"
  echo "$stamp" >"$tmp/.stamp"
  rm -rf "$AT_KAFKA_HOME"
  mv "$tmp" "$AT_KAFKA_HOME"
  echo "infra/install: Kafka installed in $(($(date +%s) - t0)) s ($(du -sh "$AT_KAFKA_HOME" | cut -f1))"
fi
# The Prometheus JMX exporter (a Java agent each Kafka node loads: its metrics on
# AT_KAFKA_METRICS_PORT): its own folder, never on the brokers' class path.
if [ ! -s "$AT_KAFKA_JMX_EXPORTER" ]; then
  if ! out="$(mvn -B -q --strict-checksums -f "$AT_INFRA_DIR/kafka/pom.xml" dependency:copy \
    -Dartifact="io.prometheus.jmx:jmx_prometheus_javaagent:$AT_KAFKA_JMX_EXPORTER_VERSION" \
    -DoutputDirectory="$(dirname "$AT_KAFKA_JMX_EXPORTER")" 2>&1)"; then
    echo "$out" >&2
    echo "!! infra/install: the Prometheus JMX exporter could not be fetched from Maven Central: the" \
      "Kafka nodes run without broker metrics" >&2
  fi
fi
# The admin tool, compiled per version of its source (AT_KAFKA_ADMIN_DIR, infra/env.sh): checkouts of
# different versions share the Kafka install without recompiling each other's tool.
if [ ! -r "$AT_KAFKA_ADMIN_DIR/KafkaAdmin.class" ]; then
  rm -rf "$AT_KAFKA_ADMIN_DIR.tmp"
  mkdir -p "$AT_KAFKA_ADMIN_DIR.tmp"
  javac -nowarn -d "$AT_KAFKA_ADMIN_DIR.tmp" -cp "$AT_KAFKA_HOME/libs/*" "$AT_INFRA_DIR/kafka/KafkaAdmin.java"
  rm -rf "$AT_KAFKA_ADMIN_DIR"
  mv "$AT_KAFKA_ADMIN_DIR.tmp" "$AT_KAFKA_ADMIN_DIR"
fi
echo "infra/install: ok (mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}'), Apache Kafka $AT_KAFKA_VERSION on Java $java_major in $AT_KAFKA_HOME)"
