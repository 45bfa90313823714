#!/bin/sh
# First start: initdb with the password from POSTGRES_PASSWORD_FILE (never on a
# command line or in the environment), scram-sha-256 for every network client,
# and the database POSTGRES_DB. Every start: run postgres in the foreground.
set -eu
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  [ -s "${POSTGRES_PASSWORD_FILE:-}" ] || {
    echo "codeact-postgres: POSTGRES_PASSWORD_FILE must name a non-empty file" >&2; exit 1; }
  echo "codeact-postgres: initialising $PGDATA" >&2
  "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$POSTGRES_PASSWORD_FILE" \
    --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";" \
      | "$bin/postgres" --single -D "$PGDATA" -j postgres >/dev/null
  fi
fi
exec "$bin/postgres" -D "$PGDATA" "$@"
