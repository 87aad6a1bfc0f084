#!/usr/bin/env bash
# Installs what the pipeline needs, once: Debian packages (mosquitto, cmake and libcurl headers for
# rdkafka's bundled librdkafka) and the nisshi Kafka-protocol broker (cargo install, cached in
# ~/.cargo/bin). Idempotent: a second run only checks and returns in about a second.
set -euo pipefail

NISSHI_VERSION="${NISSHI_VERSION:-0.8.1}"
export PATH="$HOME/.cargo/bin:$PATH"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || need_apt+=(mosquitto-clients mosquitto)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need_apt+=(libcurl4-openssl-dev)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
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
fi

if ! nisshi --version 2>/dev/null | grep -q "$NISSHI_VERSION"; then
  # One build at a time: a second install.sh (e.g. start.sh while the first build runs) waits here,
  # then finds nisshi installed and skips the build.
  mkdir -p "$HOME/.cache/armoredtwins"
  exec 9>"$HOME/.cache/armoredtwins/install.lock"
  if ! flock -n 9; then
    echo "infra/install: another infra/install.sh is building nisshi; waiting for it"
    flock 9
  fi
fi
if ! nisshi --version 2>/dev/null | grep -q "$NISSHI_VERSION"; then
  echo "infra/install: building nisshi $NISSHI_VERSION (once per machine, ~10 min on 2 cores)"
  # Own target dir so this never waits on the workspace build lock.
  CARGO_TARGET_DIR="$HOME/.cache/armoredtwins/nisshi-build" \
    cargo install nisshi --version "$NISSHI_VERSION" --locked --ignore-rust-version \
      --no-default-features --features dynostore,libsql
  rm -rf "$HOME/.cache/armoredtwins/nisshi-build"
fi
echo "infra/install: ok (mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}'), $(nisshi --version 2>/dev/null | head -1))"
