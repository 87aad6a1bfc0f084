#!/usr/bin/env bash
# Manages mosquitto users (the password file $AT_STATE_DIR/mosquitto/passwd) and their roles.
# Usage:
#   infra/mqtt-user.sh add USER              add or change USER (its password read from stdin)
#   infra/mqtt-user.sh add-batch             add many: lines "USER PASSWORD" on stdin, one reload
#   infra/mqtt-user.sh add-role ROLE USER    add USER (password on stdin) with the grants of at-ROLE
#   infra/mqtt-user.sh add-bridge NAME       add a bridge's users NAME-up and NAME-down (one password)
#   infra/mqtt-user.sh remove USER           remove USER (and its role)
#   infra/mqtt-user.sh list                  list usernames
# A device's username is {twin}/{device} (both [a-z0-9-]{1,32}); the ACL then lets it publish on
# at/v1/up/{twin}/{device} and at/v1/resp/{twin}/{device} and subscribe to at/v1/down/{twin}/{device}.
# Other names ([A-Za-z0-9_.-], no '/') are service users with only what infra/mosquitto.acl grants them.
#
# Roles: the broker binds client ids to users (one user = one session), so connections that run side
# by side need users of their own: a bridge its NAME-up (role ingest-up: reads every uplink and
# response) and NAME-down (role ingest-down: writes every downlink), a test's raw reader an admin
# (role admin: everything). ROLE is a service user at-ROLE of infra/mosquitto.acl whose topic grants
# USER gets; the "USER ROLE" lines are kept in $AT_STATE_DIR/mosquitto/roles and the live ACL
# ($AT_STATE_DIR/mosquitto/acl) is infra/mosquitto.acl followed by one block per line.
# Passwords never appear on a command line (this script's or mosquitto_passwd's): every user of the
# machine can read command lines in `ps`.
#
# If mosquitto runs, it is sent SIGHUP to reload the files, and the script waits (up to 5 s) until the
# change is in effect: the same rewrite gives the sentinel user at-reload-probe a fresh random
# password, and once it can log in with it mosquitto has re-read the password file and the ACL (one
# reload reads both). The sentinel is only ever used here, under the lock: logging in as the user
# just added would take over its session, which may be live (a changed password) and, with a clean
# session, wipe its queue (measured here: a whole call takes ~0.1-0.15 s, the reload itself a few ms).
# On that reload mosquitto 2.0.11 also disconnects a live connection of a removed user (checked: its
# next publish never arrived, and its reconnects are refused); other clients stay connected.
# Safe to run concurrently (serialized by a lock). Works when mosquitto is stopped (the next start
# reads the files). Needs infra/start.sh to have run once (it creates the state dir).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

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
# One writer at a time (mosquitto_passwd rewrites the whole file; the roles and the ACL likewise).
at_mqtt_lock
[ -e "$AT_MQTT_PASSWD_FILE" ] || : >"$AT_MQTT_PASSWD_FILE"
[ -e "$AT_MQTT_ROLES_FILE" ] || : >"$AT_MQTT_ROLES_FILE"

# A private plain-text file of "USER:PASSWORD" lines, hashed and merged by apply.
plain="$(mktemp "$AT_MQTT_DIR/plain.XXXXXX")"
trap 'rm -f "$plain" "$plain.merged" "$AT_MQTT_ROLES_FILE.new"' EXIT

# apply WHAT: merges $plain (plus a fresh password for the sentinel at-reload-probe) into the
# password file, installs the ACL, reloads mosquitto, and waits until the sentinel can log in, that
# is until mosquitto has re-read both files.
apply() {
  local what="$1" probe_pass i
  probe_pass="$(openssl rand -hex 16)"
  printf 'at-reload-probe:%s\n' "$probe_pass" >>"$plain"
  at_mqtt_merge_hashed "$plain"
  at_mqtt_sync_acl || true
  at_mqtt_reload
  at_mqtt_running || return 0
  for ((i = 0; i < 100; i++)); do
    at_mqtt_connect_ok at-reload-probe "$probe_pass" && return 0
    sleep 0.05
  done
  at_die "mosquitto did not apply the change to $what within 5 s (see $AT_MQTT_LOG)"
}

# set_role USER [ROLE]: USER's line in the roles file (none without ROLE).
set_role() {
  awk -v u="$1" '$1 != u' "$AT_MQTT_ROLES_FILE" >"$AT_MQTT_ROLES_FILE.new"
  if [ -n "${2:-}" ]; then printf '%s %s\n' "$1" "$2" >>"$AT_MQTT_ROLES_FILE.new"; fi
  mv -f "$AT_MQTT_ROLES_FILE.new" "$AT_MQTT_ROLES_FILE"
}

# check_role_user USER: a user that may get a role (a service-user name, not one of the built-in ones).
check_role_user() {
  check_user "$1"
  [[ "$1" != */* ]] || at_die "'$1' is a device's username: devices get no role"
  [[ " $AT_MQTT_SERVICE_USERS " != *" $1 "* ]] || at_die "$1 is a built-in service user (infra/mosquitto.acl)"
}

# read_password: the password from the first line of stdin, checked.
read_password() {
  IFS= read -r pass || true
  check_password "$pass"
}

case "$cmd" in
  add)
    [ $# -le 1 ] || at_die "the password goes on standard input, never as an argument (command lines show in ps): printf '%s\\n' PASSWORD | infra/mqtt-user.sh add USER"
    [ $# -eq 1 ] || usage
    user="$1"
    check_user "$user"
    read_password
    # Hashed from a private file (mosquitto_passwd -b would take it as an argument).
    printf '%s:%s\n' "$user" "$pass" >"$plain"
    apply "'$user'"
    at_log "added $user"
    ;;
  add-batch)
    [ $# -eq 0 ] || usage
    # All lines are hashed by one `mosquitto_passwd -U` on a private plain-text file, then merged
    # (replacing entries of the same names): linear in the number of users, one reload.
    declare -A seen=()
    while read -r user pass rest; do
      [ -n "${user:-}" ] || continue
      [[ "$user" == \#* ]] && continue
      [ -z "${rest:-}" ] || at_die "line for '$user': expected 'USER PASSWORD'"
      check_user "$user"
      check_password "${pass:-}"
      [ -z "${seen[$user]:-}" ] || at_die "'$user' appears twice in the batch"
      seen[$user]=1
      printf '%s:%s\n' "$user" "$pass" >>"$plain"
    done
    n="${#seen[@]}"
    if [ "$n" -gt 0 ]; then apply "$n users"; fi
    at_log "added $n users"
    ;;
  add-role)
    [ $# -eq 2 ] || usage
    role="$1"
    user="$2"
    check_role_user "$user"
    grep -qx "user at-$role" "$AT_INFRA_DIR/mosquitto.acl" \
      || at_die "unknown role '$role': infra/mosquitto.acl has no service user at-$role"
    read_password
    printf '%s:%s\n' "$user" "$pass" >"$plain"
    set_role "$user" "$role"
    apply "'$user'"
    at_log "added $user with the grants of at-$role"
    ;;
  add-bridge)
    [ $# -eq 1 ] || usage
    name="$1"
    check_role_user "$name-up"
    check_role_user "$name-down"
    read_password
    printf '%s:%s\n' "$name-up" "$pass" "$name-down" "$pass" >"$plain"
    set_role "$name-up" ingest-up
    set_role "$name-down" ingest-down
    apply "'$name-up' and '$name-down'"
    at_log "added the bridge users $name-up and $name-down"
    ;;
  remove)
    [ $# -eq 1 ] || usage
    user="$1"
    check_user "$user"
    [[ " $AT_MQTT_SERVICE_USERS " != *" $user "* ]] || at_die "refusing to remove the service user $user"
    if ! grep -q "^$(printf '%s' "$user" | sed 's/[.]/\\./g'):" "$AT_MQTT_PASSWD_FILE"; then
      at_log "$user was not there"
      exit 0
    fi
    mosquitto_passwd -D "$AT_MQTT_PASSWD_FILE" "$user"
    set_role "$user"
    # We do not know USER's password, so we cannot watch USER being refused; the sentinel's fresh
    # password in the same rewrite proves the reload.
    : >"$plain"
    apply "the removal of '$user'"
    at_log "removed $user"
    ;;
  list)
    cut -d: -f1 "$AT_MQTT_PASSWD_FILE"
    ;;
  *) usage ;;
esac
