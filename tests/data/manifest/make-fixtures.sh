#!/bin/sh
# Regenerates the manifest fixtures with the real Izuma/Pelion manifest-tool 2.6.2.
#
#   python3 -m venv /tmp/mtvenv && /tmp/mtvenv/bin/pip install manifest-tool==2.6.2
#   MT=/tmp/mtvenv/bin sh tests/data/manifest/make-fixtures.sh
#
# Run from the repository root. Everything here is developer-only test material: the private
# key is committed on purpose so that tests can sign with the same key manifest-tool used.
set -eu
MT=${MT:-/tmp/mtvenv/bin}
OUT=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# A developer environment with fixed ids (the key and certificate are fresh each run).
"$MT/manifest-dev-tool" init --cache-dir dev --generated-resource dev/update_default_resources.c \
    --vendor-id 3e6e5c2a9c8b4f0fa1d2b3c4d5e6f708 --class-id 0f1e2d3c4b5a69788796a5b4c3d2e1f0
# A second environment whose certificate must NOT verify the manifests above.
"$MT/manifest-dev-tool" init --cache-dir other --generated-resource other/update_default_resources.c

# Payloads: a deterministic 3000-byte image, a previous image, and vendor data. Both images carry
# the PELION/BSDIFF001 marker that manifest-delta-tool looks for in a bootloader-capable image.
python3 -c 'import sys; sys.stdout.buffer.write(b"PELION/BSDIFF001" + bytes((i * 7 + 3) % 256 for i in range(2984)))' > payload.bin
python3 -c 'import sys; sys.stdout.buffer.write(b"PELION/BSDIFF001" + bytes((i * 7 + 3) % 256 if i % 97 else 0 for i in range(2984)))' > previous.bin
printf 'hello from the vendor' > vendor-data.bin
"$MT/manifest-delta-tool" -c previous.bin -n payload.bin -o delta.bin --skip-size-check

# raw-binary, image signed (-m), priority 7, vendor data.
"$MT/manifest-dev-tool" create --cache-dir dev -u https://example.com/fw/payload.bin -p payload.bin \
    -o raw-signed.manifest -v 1.2.3 -r 7 -m -d vendor-data.bin
# raw-binary, image not signed (empty installed-signature), other component, defaults otherwise.
"$MT/manifest-dev-tool" create --cache-dir dev -u https://example.com/fw/boot.bin -p payload.bin \
    -o raw-unsigned.manifest -v 0.0.1 --component-name BOOT
# arm-patch-stream, image signed: installed-signature covers payload-metadata.installed-digest.
"$MT/manifest-dev-tool" create --cache-dir dev -u https://example.com/fw/delta.bin -p delta.bin \
    -o patch-signed.manifest -v 2.0.0 -r 1 -m
# encrypted-raw, image not signed: payload-digest/size are the encrypted ones given here.
"$MT/manifest-dev-tool" create --cache-dir dev -u https://example.com/fw/enc.bin -p payload.bin \
    -o encrypted-raw.manifest -v 999.999.999 \
    --encrypted-digest 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff --encrypted-size 3008
# encrypted-raw with an image signature: manifest-tool signs the plain image's digest but its own
# parse checks installed-signature over payload-digest (the encrypted digest), so manifest-tool
# refuses its own output; Imprint mirrors that verdict.
"$MT/manifest-dev-tool" create --cache-dir dev -u https://example.com/fw/enc.bin -p payload.bin \
    -o encrypted-raw-signed.manifest -v 3.0.0 -m \
    --encrypted-digest 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff --encrypted-size 3008

cp dev/dev.key.pem "$OUT/dev.key.pem"
cp dev/dev.cert.der "$OUT/dev.cert.der"
cp other/dev.cert.der "$OUT/other.cert.der"
cp payload.bin previous.bin delta.bin vendor-data.bin "$OUT/"
cp raw-signed.manifest raw-unsigned.manifest patch-signed.manifest encrypted-raw.manifest \
    encrypted-raw-signed.manifest "$OUT/"
# manifest-tool's own view of each manifest: the tests compare every field with it.
for manifest in raw-signed raw-unsigned patch-signed encrypted-raw encrypted-raw-signed; do
    "$MT/manifest-tool" parse -c dev/dev.cert.der "$manifest.manifest" > "$OUT/$manifest.parse.txt" 2>&1 \
        || echo "manifest-tool parse exit status $?" >> "$OUT/$manifest.parse.txt"
done
# PEM forms and the bare public keys, made by openssl from the DER certificates.
openssl x509 -inform der -in "$OUT/dev.cert.der" -out "$OUT/dev.cert.pem"
openssl x509 -inform der -in "$OUT/dev.cert.der" -pubkey -noout > "$OUT/dev.pub.pem"
openssl x509 -inform der -in "$OUT/other.cert.der" -pubkey -noout > "$OUT/other.pub.pem"
