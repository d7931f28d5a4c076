#!/bin/sh
# compose's kafka-setup: one SCRAM-SHA-512 credential per file in
# /etc/earlyhelp/kafka-users (the file name is the principal, its content the
# password), then the ACLs of acls.sh for the hub and the partners listed in
# EARLYHELP_KAFKA_PARTNERS. Runs as ANONYMOUS on the broker's loopback listener,
# the super user; safe to run again (credentials are replaced, ACLs added once).
set -eu
: "${KAFKA_BOOTSTRAP_SERVERS:?}"
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
KAFKA_ADMIN_CONFIG=$(mktemp)
export KAFKA_ADMIN_CONFIG
for file in /etc/earlyhelp/kafka-users/*; do
  principal=$(basename "$file")
  "$KAFKA_BIN/kafka-configs.sh" --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" --alter \
    --entity-type users --entity-name "$principal" \
    --add-config "SCRAM-SHA-512=[password=$(cat "$file")]" >/dev/null
  echo "SCRAM credential set for $principal"
done
# shellcheck disable=SC2086  # a space-separated list of partner ids
sh "$(dirname "$0")/acls.sh" ${EARLYHELP_KAFKA_PARTNERS:-}
