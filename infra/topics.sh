#!/usr/bin/env bash
# Creates every Kafka topic of infra/topics.tsv (DESIGN.md, "Topics") through Kafka's Admin API
# (infra/kafka/KafkaAdmin.java), with its partition count, cleanup.policy=delete and retention.ms
# (-1 = retain forever), replicated on min(nodes, 3) brokers (the broker's default.replication.factor;
# min.insync.replicas comes from the broker: 2 on the three-node cluster).
# Usage: infra/topics.sh [PREFIX]
#   PREFIX is put in front of every name, e.g. `infra/topics.sh t123.` creates t123.at.sync.v1, … (tests
#   use a fresh prefix per run so they never see each other's records).
# A topic that already exists is fine (its partition count is checked: a different count is an error).
# Prints the resulting table. Needs the broker: run infra/start.sh first.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

prefix="${1:-}"
[ $# -le 1 ] || at_die "usage: infra/topics.sh [PREFIX]"
[[ "$prefix" =~ ^[A-Za-z0-9._-]{0,100}$ ]] || at_die "bad prefix '$prefix': Kafka topic names allow only [A-Za-z0-9._-]"
tsv="$AT_INFRA_DIR/topics.tsv"
[ -r "$tsv" ] || at_die "missing $tsv"
at_port_open "$AT_KAFKA_PORT" || at_die "no broker on 127.0.0.1:$AT_KAFKA_PORT: run infra/start.sh first"

t0="$(at_now_ms)"
at_kafka_admin topics "$AT_KAFKA_BROKERS" "$tsv" "$prefix" -1 || at_die "creating the topics failed (above)"
at_log "$(grep -cvE '^\s*(#|$)' "$tsv") topics ready on $AT_KAFKA_BROKERS in $(($(at_now_ms) - t0)) ms"
