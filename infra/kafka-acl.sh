#!/usr/bin/env bash
# Grants the Kafka principals the ACLs of infra/kafka-acls.tsv on the topics under PREFIX (a deployment
# or a test's own topic prefix; infra/start.sh grants the empty prefix itself). Idempotent.
# Usage: infra/kafka-acl.sh PREFIX
#        infra/kafka-acl.sh --service ID PREFIX
# The second form signs up one service: the principal at-service-ID, its password generated once into
# $AT_SECRETS_DIR/kafka-at-service-ID.password (0600), and the table's {service} rows for ID under
# PREFIX (use "" for the unprefixed topics). atctl's service commands sign in as it.
# ~1.5 s (the admin tool's JVM). Needs the brokers: run infra/start.sh first.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

usage="usage: infra/kafka-acl.sh PREFIX | infra/kafka-acl.sh --service ID PREFIX"
check_prefix() {
  [[ "$1" =~ ^[A-Za-z0-9._-]{0,100}$ ]] || at_die "bad prefix '$1': Kafka topic names allow only [A-Za-z0-9._-]"
}

if [ "${1:-}" = "--service" ]; then
  [ $# -eq 3 ] || at_die "$usage"
  id="$2" prefix="$3"
  [[ "$id" =~ ^[A-Za-z0-9._-]{1,100}$ ]] || at_die "bad service id '$id': [A-Za-z0-9._-], at most 100"
  check_prefix "$prefix"
  file="$AT_SECRETS_DIR/kafka-at-service-$id.password"
  if [ ! -s "$file" ]; then
    # Generated aside and moved into place: two callers for one service end with one password.
    tmp="$(umask 077 && mktemp "$AT_SECRETS_DIR/kafka-service.XXXXXX")"
    openssl rand -hex 24 >"$tmp"
    ln "$tmp" "$file" 2>/dev/null || true
    rm -f "$tmp"
  fi
  at_kafka_admin service "$AT_KAFKA_BROKERS" "$AT_INFRA_DIR/kafka-acls.tsv" "$prefix" "$id" "$file" >/dev/null \
    || at_die "signing up the service '$id' for prefix '$prefix' failed (above)"
  exit 0
fi
[ $# -eq 1 ] || at_die "$usage"
prefix="$1"
check_prefix "$prefix"
at_kafka_admin grant "$AT_KAFKA_BROKERS" "$AT_INFRA_DIR/kafka-acls.tsv" "$prefix" >/dev/null \
  || at_die "granting the ACLs for prefix '$prefix' failed (above)"
