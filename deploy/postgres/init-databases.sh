#!/bin/sh
# Runs once, when the PostgreSQL data volume is first initialised
# (/docker-entrypoint-initdb.d). One role and one database per service: no
# service can read or write another's tables. Passwords come from the
# environment (deploy/.env): EARLYHELP_<SERVICE>_DB_PASSWORD.
set -eu

for service in intake allocation caseplan notifications; do
    var="EARLYHELP_$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
    password=$(printenv "$var" || true)
    if [ -z "$password" ]; then
        echo "init-databases: $var is not set" >&2
        exit 1
    fi
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -v role="$service" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
\connect :"role"
ALTER SCHEMA public OWNER TO :"role";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
SQL
done
