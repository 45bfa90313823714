#!/bin/sh
# Renders nginx's configuration from the environment and starts it.
#
# TLS: the certificate and key are read from $CODEACT_TLS_DIR (cert.pem, key.pem).
# When none is there a self-signed one is made once for $CODEACT_SITE_HOST, so
# the stack serves HTTPS from its first start; put a real pair in the directory
# (README, "Deploy") and restart the proxy to use it.
set -eu
: "${CODEACT_SITE_HOST:=localhost}"
: "${CODEACT_HTTPS_PORT:=443}"
: "${CODEACT_UPSTREAM:=web:8000}"
: "${CODEACT_MAX_BODY_KB:=1024}"
: "${CODEACT_MAX_UPLOAD_BODY_MB:=201}"
: "${CODEACT_TLS_DIR:=/etc/codeact/tls}"
: "${CODEACT_RESOLVER:=127.0.0.11}"
export CODEACT_SITE_HOST CODEACT_HTTPS_PORT CODEACT_UPSTREAM CODEACT_MAX_BODY_KB \
  CODEACT_MAX_UPLOAD_BODY_MB CODEACT_TLS_DIR CODEACT_RESOLVER

if [ ! -s "$CODEACT_TLS_DIR/cert.pem" ] || [ ! -s "$CODEACT_TLS_DIR/key.pem" ]; then
  echo "codeact-proxy: no certificate in $CODEACT_TLS_DIR; making a self-signed one for $CODEACT_SITE_HOST" >&2
  umask 077
  openssl req -x509 -newkey rsa:2048 -sha256 -days 825 -nodes -subj "/CN=$CODEACT_SITE_HOST" \
    -addext "subjectAltName=DNS:$CODEACT_SITE_HOST,DNS:localhost,IP:127.0.0.1" \
    -keyout "$CODEACT_TLS_DIR/key.pem" -out "$CODEACT_TLS_DIR/cert.pem" 2>/dev/null
fi

# ":443" is left out of redirects, as browsers do.
if [ "$CODEACT_HTTPS_PORT" = 443 ]; then CODEACT_HTTPS_AUTHORITY=$CODEACT_SITE_HOST
else CODEACT_HTTPS_AUTHORITY=$CODEACT_SITE_HOST:$CODEACT_HTTPS_PORT; fi
export CODEACT_HTTPS_AUTHORITY

# nginx's workers (www-data) write request bodies and the static cache here.
install -d -o www-data -g www-data /tmp/nginx /tmp/nginx/static
envsubst "$(env | sed -n 's/^\(CODEACT_[A-Z_]*\)=.*/${\1}/p' | tr '\n' ' ')" \
  < /etc/codeact/nginx.conf.template > /tmp/nginx/nginx.conf
nginx -t -c /tmp/nginx/nginx.conf -q
exec nginx -c /tmp/nginx/nginx.conf -g 'daemon off;'
