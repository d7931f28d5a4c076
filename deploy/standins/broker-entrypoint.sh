#!/bin/sh
# The broker stand-in: Tansu speaks neither TLS nor SASL, so socat terminates TLS
# on the clients' port 9092 with the broker certificate of compose.yaml's mount
# (/etc/kafka/secrets, made by deploy/kafka/make-secrets.sh) and hands each
# connection to Tansu on loopback. Clients connect with SSL and check the
# certificate against the compose CA, as they would with SASL_SSL on apache/kafka,
# but authenticate as nobody: there is no SASL and no ACL here.
set -eu
secrets=/etc/kafka/secrets
[ -s "$secrets/kafka.keystore.p12" ] || {
    echo "no broker keystore in $secrets: run deploy/kafka/make-secrets.sh first" >&2
    exit 1
}
umask 077
openssl pkcs12 -in "$secrets/kafka.keystore.p12" -passin "file:$secrets/keystore-password" \
    -clcerts -nokeys -out /tmp/broker-cert.pem
openssl pkcs12 -in "$secrets/kafka.keystore.p12" -passin "file:$secrets/keystore-password" \
    -nocerts -nodes -out /tmp/broker-key.pem
socat "OPENSSL-LISTEN:9092,fork,reuseaddr,cert=/tmp/broker-cert.pem,key=/tmp/broker-key.pem,verify=0" \
    TCP:127.0.0.1:9093 &
exec tansu broker --listener-url=tcp://127.0.0.1:9093 --advertised-listener-url=tcp://kafka:9092
