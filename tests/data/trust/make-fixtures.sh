#!/bin/sh
# Regenerates the trust fixtures with openssl (run from this directory). Every file here was
# produced by exactly these commands; the tests treat openssl as the outside oracle.
set -eu
# P-256 key: PKCS#8 PEM, SEC1 PEM (with the EC PARAMETERS block openssl ecparam writes), DER of both.
openssl ecparam -name prime256v1 -genkey -out p256-sec1.pem
openssl pkcs8 -topk8 -nocrypt -in p256-sec1.pem -out p256-pkcs8.pem
openssl pkcs8 -topk8 -nocrypt -in p256-sec1.pem -outform DER -out p256-pkcs8.der
openssl ec -in p256-sec1.pem -outform DER -out p256-sec1.der
# A self-signed P-256 certificate for that key, valid 20 years, DER and PEM.
openssl req -new -x509 -key p256-sec1.pem -sha256 -subj "/CN=Imprint test update authority/O=Imprint tests" \
  -addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature" \
  -addext "extendedKeyUsage=codeSigning" \
  -days 7300 -set_serial 0x1234abcd -out p256-cert.pem
openssl x509 -in p256-cert.pem -outform DER -out p256-cert.der
# A second P-256 key that matches no certificate here.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other-p256-pkcs8.pem
# An RSA key and certificate, and a secp384r1 key and certificate: both must be refused.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-key.pem
openssl req -new -x509 -key rsa-key.pem -sha256 -subj "/CN=Imprint test RSA" -days 3650 -outform DER -out rsa-cert.der
openssl ecparam -name secp384r1 -genkey -noout -out p384-sec1.pem
openssl pkcs8 -topk8 -nocrypt -in p384-sec1.pem -out p384-pkcs8.pem
openssl req -new -x509 -key p384-sec1.pem -sha384 -subj "/CN=Imprint test P-384" -days 3650 -outform DER -out p384-cert.der
# An expired P-256 certificate (valid 2015-01-01 .. 2016-01-01). OpenSSL 3.0's req/x509 cannot
# set dates, so a throwaway `openssl ca` database signs it.
workdir=$(mktemp -d)
touch "$workdir/index.txt"
cat > "$workdir/ca.cnf" <<CNF
[ca]
default_ca = test_ca
[test_ca]
database = $workdir/index.txt
new_certs_dir = $workdir
serial = $workdir/serial
default_md = sha256
policy = anything
x509_extensions = leaf
[anything]
commonName = supplied
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
CNF
echo 01 > "$workdir/serial"
openssl req -new -key p256-sec1.pem -subj "/CN=Imprint test expired" -out "$workdir/expired.csr"
openssl ca -batch -config "$workdir/ca.cnf" -selfsign -keyfile p256-sec1.pem -in "$workdir/expired.csr" \
  -startdate 20150101000000Z -enddate 20160101000000Z -notext -out "$workdir/expired.pem"
openssl x509 -in "$workdir/expired.pem" -outform DER -out expired-cert.der
rm -rf "$workdir"
# Garbage: bytes that are neither PEM nor DER.
printf 'this is not a key or a certificate, just some bytes for the test!' > garbage.bin
# A CA made by openssl and a leaf it issued for the p256 key, so chain checks meet signatures
# openssl made (and Imprint can issue from a CA it did not make).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out openssl-ca-key.pem
openssl req -new -x509 -key openssl-ca-key.pem -sha256 -subj "/CN=Imprint test openssl CA/O=Imprint tests" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -days 7300 -out openssl-ca-cert.pem
workdir=$(mktemp -d)
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' > "$workdir/leaf.ext"
openssl req -new -key p256-sec1.pem -subj "/CN=Imprint test leaf from openssl CA" -out "$workdir/leaf.csr"
openssl x509 -req -in "$workdir/leaf.csr" -CA openssl-ca-cert.pem -CAkey openssl-ca-key.pem -set_serial 7 \
  -days 3650 -sha256 -extfile "$workdir/leaf.ext" -outform DER -out openssl-leaf-cert.der
rm -rf "$workdir"
