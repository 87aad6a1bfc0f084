#!/usr/bin/env bash
# Grants the Kafka principals the ACLs of infra/kafka-acls.tsv on the topics under PREFIX (a deployment
# or a test's own topic prefix; infra/start.sh grants the empty prefix itself). Idempotent.
# Usage: infra/kafka-acl.sh PREFIX
# ~1.5 s (the admin tool's JVM). Needs the brokers: run infra/start.sh first.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

[ $# -eq 1 ] || at_die "usage: infra/kafka-acl.sh PREFIX"
prefix="$1"
[[ "$prefix" =~ ^[A-Za-z0-9._-]{0,100}$ ]] || at_die "bad prefix '$prefix': Kafka topic names allow only [A-Za-z0-9._-]"
at_kafka_admin grant "$AT_KAFKA_BROKERS" "$AT_INFRA_DIR/kafka-acls.tsv" "$prefix" >/dev/null \
  || at_die "granting the ACLs for prefix '$prefix' failed (above)"
