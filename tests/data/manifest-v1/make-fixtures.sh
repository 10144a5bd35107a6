#!/usr/bin/env bash
# Regenerates the v1 manifest fixtures with Izuma/Pelion manifest-tool 2.6.2 (`create-v1`).
# Run from this directory with manifest-tool on PATH (for example the test venv's bin/).
# The key and certificate are made once with openssl; the manifests are then made exactly as below.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -f update.key.pem ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out update.key.pem
  openssl req -new -x509 -key update.key.pem -subj "/CN=imprint v1 fixtures" -days 7300 \
    -outform der -out update.cert.der
  # a different certificate (its fingerprint is not the one the manifests name)
  openssl ecparam -name prime256v1 -genkey -noout -out other.key.pem
  openssl req -new -x509 -key other.key.pem -subj "/CN=other" -days 7300 -outform der -out other.cert.der
  head -c 3000 /dev/urandom > payload.bin
  head -c 700 /dev/urandom > delta.bin
fi
# vendor 0123456789abcdef0123456789abcdef, class fedcba9876543210fedcba9876543210 (raw.yaml, delta-config.yaml; delta.yaml is the patch metadata manifest-delta-tool writes)
manifest-tool create-v1 -c raw.yaml -k update.key.pem --update-certificate update.cert.der -o raw-v42.manifest -v 42
manifest-tool create-v1 -c raw.yaml -k update.key.pem --update-certificate update.cert.der -o raw-migrate-1.2.3.manifest --fw-migrate-ver 1.2.3
manifest-tool create-v1 -c delta-config.yaml -k update.key.pem --update-certificate update.cert.der -o delta-v7.manifest -v 7
