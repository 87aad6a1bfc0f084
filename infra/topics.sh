#!/usr/bin/env bash
# Creates every Kafka topic of infra/topics.tsv (DESIGN.md, "Topics") on the running nisshi, with its
# partition count and configs cleanup.policy=delete and retention.ms (-1 = retain forever).
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
command -v nisshi >/dev/null 2>&1 || at_die "nisshi not on PATH: run infra/install.sh"
at_port_open "$AT_KAFKA_PORT" || at_die "no broker on $AT_KAFKA_URL: run infra/start.sh first"

# nisshi reads a .env in its working directory: run it from one that has none.
(umask 077 && mkdir -p "$AT_NISSHI_DIR")
cd "$AT_NISSHI_DIR"

t0="$(at_now_ms)"
declare -A want_partitions status
names=()
while IFS=$'\t' read -r name partitions retention rest; do
  [ -n "${name:-}" ] || continue
  [[ "$name" == \#* ]] && continue
  [[ "$partitions" =~ ^[0-9]+$ ]] && [[ "$retention" =~ ^-?[0-9]+$ ]] && [ -z "${rest:-}" ] \
    || at_die "$tsv: bad line '$name	$partitions	$retention${rest:+	$rest}'"
  topic="$prefix$name"
  names+=("$topic")
  want_partitions[$topic]="$partitions"
  if err="$(nisshi topic create "$topic" --broker "$AT_KAFKA_URL" --partitions "$partitions" \
    --config cleanup.policy=delete --config "retention.ms=$retention" --silent 2>&1)"; then
    status[$topic]=created
  elif grep -qiE "TopicAlreadyExists|already exists" <<<"$err"; then
    status[$topic]=exists
  else
    at_die "creating $topic failed: $err"
  fi
done <"$tsv"

# What the broker now has (a metadata request): check the partition counts and print the table.
listing="$(nisshi topic list --broker "$AT_KAFKA_URL")" || at_die "nisshi topic list failed"
declare -A have_partitions
while IFS=$'\t' read -r name count; do
  have_partitions[$name]="$count"
done < <(jq -r '.[] | [.name, (.partitions | length)] | @tsv' <<<"$listing")

bad=0
printf '%-44s %10s %14s  %s\n' topic partitions retention.ms status
while IFS=$'\t' read -r name partitions retention _; do
  [ -n "${name:-}" ] && [[ "$name" != \#* ]] || continue
  topic="$prefix$name"
  have="${have_partitions[$topic]:-missing}"
  note="${status[$topic]}"
  if [ "$have" != "$partitions" ]; then
    note="$note, BROKER HAS $have PARTITIONS"
    bad=1
  fi
  printf '%-44s %10s %14s  %s\n' "$topic" "$partitions" "$retention" "$note"
done <"$tsv"
[ "$bad" = 0 ] || at_die "some topics exist with another partition count (delete them or use another prefix)"
at_log "${#names[@]} topics ready on $AT_KAFKA_BROKERS in $(($(at_now_ms) - t0)) ms"
