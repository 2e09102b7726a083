#!/bin/sh
# Regenerates the test PKI: a stand-in ARK -> ASK -> VCEK chain shaped like AMD's (RSA-PSS
# SHA-384 / MGF1-SHA-384 / salt 48 for ARK and ASK, ECDSA P-384 VCEK with AMD's VCEK
# extensions, OIDs 1.3.6.1.4.1.3704.1.*) but rooted in a key that is not AMD's. Used by the
# negative tests (unknown root, TCB and chip-ID binding). Needs OpenSSL 3.
set -eu
cd "$(dirname "$0")"
pss_opts="-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -sigopt rsa_mgf1_md:sha384"
pss="$pss_opts -sha384"
subj="/OU=Engineering/C=US/L=Santa Clara/ST=CA/O=Advanced Micro Devices"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ark.key 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ask.key 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out vcek.key
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out asvk.key 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out vlek.key
cat > ext.cnf <<'CNF'
[ca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
[vcek]
1.3.6.1.4.1.3704.1.1 = DER:020101
1.3.6.1.4.1.3704.1.2 = DER:16084D696C616E2D4230
1.3.6.1.4.1.3704.1.3.1 = DER:020103
1.3.6.1.4.1.3704.1.3.2 = DER:020100
1.3.6.1.4.1.3704.1.3.3 = DER:020108
1.3.6.1.4.1.3704.1.3.8 = DER:020173
1.3.6.1.4.1.3704.1.4 = DER:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f
[vlek]
1.3.6.1.4.1.3704.1.1 = DER:020101
1.3.6.1.4.1.3704.1.2 = DER:16084D696C616E2D4230
1.3.6.1.4.1.3704.1.3.1 = DER:020103
1.3.6.1.4.1.3704.1.3.2 = DER:020100
1.3.6.1.4.1.3704.1.3.3 = DER:020108
1.3.6.1.4.1.3704.1.3.8 = DER:020173
1.3.6.1.4.1.3704.1.5 = DER:160B6578616D706C652D637370
CNF
openssl req -new -x509 -key ark.key -subj "$subj/CN=ARK-Milan" -days 9000 $pss \
    -extensions ca -config ext.cnf -out ark.pem 2>/dev/null
openssl req -new -key ask.key -subj "$subj/CN=SEV-Milan" -out ask.csr 2>/dev/null
openssl x509 -req -in ask.csr -CA ark.pem -CAkey ark.key -set_serial 1 -days 9000 $pss \
    -extfile ext.cnf -extensions ca -out ask.pem 2>/dev/null
openssl req -new -key vcek.key -subj "$subj/CN=SEV-VCEK" -out vcek.csr 2>/dev/null
openssl x509 -req -in vcek.csr -CA ask.pem -CAkey ask.key -set_serial 2 -days 9000 $pss \
    -extfile ext.cnf -extensions vcek -outform der -out vcek.der 2>/dev/null
# The VLEK branch: ARK -> ASVK (SEV-VLEK-Milan) -> VLEK with a CSP ID instead of a hardware ID.
openssl req -new -key asvk.key -subj "$subj/CN=SEV-VLEK-Milan" -out asvk.csr 2>/dev/null
openssl x509 -req -in asvk.csr -CA ark.pem -CAkey ark.key -set_serial 3 -days 9000 $pss \
    -extfile ext.cnf -extensions ca -out asvk.pem 2>/dev/null
openssl req -new -key vlek.key -subj "$subj/CN=SEV-VLEK" -out vlek.csr 2>/dev/null
openssl x509 -req -in vlek.csr -CA asvk.pem -CAkey asvk.key -set_serial 4 -days 9000 $pss \
    -extfile ext.cnf -extensions vlek -outform der -out vlek.der 2>/dev/null
openssl pkey -in vlek.key -text -noout | awk '/^priv:/{f=1;next} /^pub:/{f=0} f' | tr -d ' :\n' | tail -c 96 > vlek.scalar.hex
# Revocation lists issued by the ARK: one empty, one revoking the ASK.
mkdir -p crl.db && : > crl.db/index.txt && echo 01 > crl.db/crlnumber
cat > crl.cnf <<'CNF'
[ca]
default_ca = ark
[ark]
database = crl.db/index.txt
crlnumber = crl.db/crlnumber
default_md = sha384
default_crl_days = 9000
CNF
openssl ca -config crl.cnf -gencrl -keyfile ark.key -cert ark.pem $pss_opts -md sha384 -out crl_empty.pem 2>/dev/null
openssl ca -config crl.cnf -revoke ask.pem -keyfile ark.key -cert ark.pem 2>/dev/null
openssl ca -config crl.cnf -gencrl -keyfile ark.key -cert ark.pem $pss_opts -md sha384 -out crl_ask_revoked.pem 2>/dev/null
rm -rf crl.db crl.cnf
# The VCEK's private scalar (48 bytes, hex) for signing test reports.
openssl pkey -in vcek.key -text -noout | awk '/^priv:/{f=1;next} /^pub:/{f=0} f' | tr -d ' :\n' | tail -c 96 > vcek.scalar.hex
rm -f ask.csr vcek.csr asvk.csr vlek.csr ark.key ask.key asvk.key vcek.key vlek.key ext.cnf
openssl verify -CAfile ark.pem -untrusted ask.pem ask.pem
openssl x509 -inform der -in vcek.der | openssl verify -CAfile ark.pem -untrusted ask.pem
openssl x509 -inform der -in vlek.der | openssl verify -CAfile ark.pem -untrusted asvk.pem
openssl crl -in crl_empty.pem -CAfile ark.pem -noout
openssl crl -in crl_ask_revoked.pem -CAfile ark.pem -noout -text | grep -A1 "Serial Number"
