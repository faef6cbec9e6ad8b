#!/usr/bin/env bash
# A test CA and a server certificate for DOMAIN (and www.DOMAIN, 127.0.0.1), as
# tests/tools/git-https-server.sh does for git: a CA-signed leaf, so that --ca-file is exercised.
set -euo pipefail
dir=$1; domain=$2; mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=provisio test CA" \
  -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$domain" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:www.%s,IP:127.0.0.1\n' "$domain" "$domain" > "$dir/san.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 2 -extfile "$dir/san.ext" -out "$dir/server.pem" 2>/dev/null
