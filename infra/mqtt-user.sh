#!/usr/bin/env bash
# Manages mosquitto users (the password file $AT_STATE_DIR/mosquitto/passwd).
# Usage:
#   infra/mqtt-user.sh add USER              add or change USER (its password read from stdin)
#   infra/mqtt-user.sh add-batch             add many: lines "USER PASSWORD" on stdin, one reload
#   infra/mqtt-user.sh remove USER           remove USER
#   infra/mqtt-user.sh list                  list usernames
# A device's username is {twin}/{device} (both [a-z0-9-]{1,32}); the ACL then lets it publish on
# at/v1/up/{twin}/{device} and at/v1/resp/{twin}/{device} and subscribe to at/v1/down/{twin}/{device}.
# Other names ([A-Za-z0-9_.-], no '/') are service users with only what infra/mosquitto.acl grants them.
# Passwords never appear on a command line (this script's or mosquitto_passwd's): every user of the
# machine can read command lines in `ps`.
#
# If mosquitto runs, it is sent SIGHUP to reload the file, and the script waits (up to 5 s) until the
# change is in effect: `add` returns once the user can connect, `remove` once a sentinel user changed in
# the same rewrite can (measured here: a whole `add` or `remove` call takes ~0.1-0.15 s, the reload
# itself a few ms). On that reload mosquitto 2.0.11 also disconnects a live connection of a removed
# user (checked: its next publish never arrived, and its reconnects are refused); other clients stay
# connected.
# Safe to run concurrently (serialized by a lock). Works when mosquitto is stopped (the next start
# reads the file). Needs infra/start.sh to have run once (it creates the state dir).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

check_user() {
  local u="$1"
  if [[ "$u" =~ ^[a-z0-9-]{1,32}/[a-z0-9-]{1,32}$ ]] || [[ "$u" =~ ^[A-Za-z0-9_.-]{1,64}$ ]]; then
    return 0
  fi
  at_die "bad username '$u': a device is {twin}/{device} with both [a-z0-9-]{1,32}; a service user is [A-Za-z0-9_.-]{1,64}"
}

check_password() {
  [ -n "$1" ] || at_die "empty password"
  [[ "$1" != *[[:space:]]* ]] || at_die "passwords may not contain whitespace"
}

[ $# -ge 1 ] || usage
cmd="$1"
shift
[ -d "$AT_MQTT_DIR" ] || at_die "no $AT_MQTT_DIR: run infra/start.sh once first"
command -v mosquitto_passwd >/dev/null 2>&1 || at_die "mosquitto_passwd missing: run infra/install.sh"

umask 077
# One writer at a time (mosquitto_passwd rewrites the whole file).
exec 8>"$AT_MQTT_DIR/passwd.lock"
flock 8
[ -e "$AT_MQTT_PASSWD_FILE" ] || : >"$AT_MQTT_PASSWD_FILE"

# wait_until add USER PASSWORD: after the reload, until USER can connect with PASSWORD.
wait_until() {
  local user="$2" pass="$3" i
  at_mqtt_running || return 0
  for ((i = 0; i < 100; i++)); do
    at_mqtt_connect_ok "$user" "$pass" && return 0
    sleep 0.05
  done
  at_die "mosquitto did not apply the change to '$user' within 5 s (see $AT_MQTT_LOG)"
}

case "$cmd" in
  add)
    [ $# -le 1 ] || at_die "the password goes on standard input, never as an argument (command lines show in ps): printf '%s\\n' PASSWORD | infra/mqtt-user.sh add USER"
    [ $# -eq 1 ] || usage
    user="$1"
    IFS= read -r pass || true
    check_user "$user"
    check_password "$pass"
    # Hashed from a private file (mosquitto_passwd -b would take it as an argument).
    plain="$(mktemp "$AT_MQTT_DIR/one.XXXXXX")"
    trap 'rm -f "$plain" "$plain.merged"' EXIT
    printf '%s:%s\n' "$user" "$pass" >"$plain"
    at_mqtt_merge_hashed "$plain"
    at_mqtt_reload
    wait_until add "$user" "$pass"
    at_log "added $user"
    ;;
  add-batch)
    [ $# -eq 0 ] || usage
    # All lines are hashed by one `mosquitto_passwd -U` on a private plain-text file, then merged
    # (replacing entries of the same names): linear in the number of users, one reload.
    plain="$(mktemp "$AT_MQTT_DIR/batch.XXXXXX")"
    trap 'rm -f "$plain" "$plain.merged"' EXIT
    declare -A seen=()
    last_user=""
    last_pass=""
    while read -r user pass rest; do
      [ -n "${user:-}" ] || continue
      [[ "$user" == \#* ]] && continue
      [ -z "${rest:-}" ] || at_die "line for '$user': expected 'USER PASSWORD'"
      check_user "$user"
      check_password "${pass:-}"
      [ -z "${seen[$user]:-}" ] || at_die "'$user' appears twice in the batch"
      seen[$user]=1
      printf '%s:%s\n' "$user" "$pass" >>"$plain"
      last_user="$user"
      last_pass="$pass"
    done
    n="${#seen[@]}"
    if [ "$n" -gt 0 ]; then
      at_mqtt_merge_hashed "$plain"
      at_mqtt_reload
      wait_until add "$last_user" "$last_pass"
    fi
    at_log "added $n users"
    ;;
  remove)
    [ $# -eq 1 ] || usage
    user="$1"
    check_user "$user"
    case "$user" in at-ingest | at-admin | at-reload-probe) at_die "refusing to remove the service user $user" ;; esac
    if ! grep -q "^$(printf '%s' "$user" | sed 's/[.]/\\./g'):" "$AT_MQTT_PASSWD_FILE"; then
      at_log "$user was not there"
      exit 0
    fi
    mosquitto_passwd -D "$AT_MQTT_PASSWD_FILE" "$user"
    # We do not know USER's password, so we cannot watch USER being refused. Instead the same
    # rewrite gives the sentinel user at-reload-probe a fresh random password: once it can log in
    # with it, mosquitto has re-read the whole file, USER's removal included.
    probe_pass="$(openssl rand -hex 16)"
    plain="$(mktemp "$AT_MQTT_DIR/one.XXXXXX")"
    trap 'rm -f "$plain" "$plain.merged"' EXIT
    printf 'at-reload-probe:%s\n' "$probe_pass" >"$plain"
    at_mqtt_merge_hashed "$plain"
    at_mqtt_reload
    wait_until add at-reload-probe "$probe_pass"
    at_log "removed $user"
    ;;
  list)
    cut -d: -f1 "$AT_MQTT_PASSWD_FILE"
    ;;
  *) usage ;;
esac
