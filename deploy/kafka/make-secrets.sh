#!/bin/sh
# Makes deploy/secrets/ for compose, never overwriting what is there: a CA and the
# broker's TLS keystore (for the name "kafka"), a random SCRAM password for each
# Kafka principal, and an empty SMTP password (fill it in if your relay wants a
# login). Needs openssl. Keep deploy/secrets out of version control and backups
# that others can read; docs/operations.md "Broker credentials" says how to rotate.
set -eu
cd "$(dirname "$0")/.."
secrets=secrets
mkdir -p "$secrets/kafka/broker" "$secrets/kafka/users"
chmod 700 "$secrets"
# The containers run as other users than the one running this: files must be readable
# through the bind mount, and the 700 directory keeps other host users out.
umask 022
password() { openssl rand -base64 48 | tr -d '/+=\n' | cut -c1-40; }

if [ ! -f "$secrets/kafka/ca.pem" ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=Early Help Hub compose CA" \
    -keyout "$secrets/kafka/ca.key" -out "$secrets/kafka/ca.pem" 2>/dev/null
  chmod 600 "$secrets/kafka/ca.key"
fi
if [ ! -f "$secrets/kafka/broker/kafka.keystore.p12" ]; then
  openssl req -newkey rsa:3072 -nodes -subj "/CN=kafka" -addext "subjectAltName=DNS:kafka" \
    -keyout "$secrets/kafka/broker.key" -out "$secrets/kafka/broker.csr" 2>/dev/null
  openssl x509 -req -in "$secrets/kafka/broker.csr" -days 825 -copy_extensions copy \
    -CA "$secrets/kafka/ca.pem" -CAkey "$secrets/kafka/ca.key" -CAcreateserial \
    -out "$secrets/kafka/broker.pem" 2>/dev/null
  password > "$secrets/kafka/broker/keystore-password"
  openssl pkcs12 -export -name kafka -in "$secrets/kafka/broker.pem" \
    -inkey "$secrets/kafka/broker.key" -certfile "$secrets/kafka/ca.pem" \
    -passout "file:$secrets/kafka/broker/keystore-password" \
    -out "$secrets/kafka/broker/kafka.keystore.p12"
  chmod 644 "$secrets/kafka/broker/kafka.keystore.p12"
  rm -f "$secrets/kafka/broker.key" "$secrets/kafka/broker.csr"
fi
# The principals of deploy/kafka/acls.sh (tests/deploy checks this list against it).
for principal in earlyhelp-allocation earlyhelp-caseplan earlyhelp-intake \
  earlyhelp-notifications earlyhelp-topics; do
  [ -f "$secrets/kafka/users/$principal" ] || password > "$secrets/kafka/users/$principal"
done
[ -f "$secrets/smtp-password" ] || : > "$secrets/smtp-password"
echo "deploy/$secrets is ready"
