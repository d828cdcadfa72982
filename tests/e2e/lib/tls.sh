# Certificates for the HTTPS tests, made at run time by the openssl command
# line (sourced, not run by prove). Nothing here is kept in the repository.
#
#   tls_ca DIR NAME                      DIR/NAME.pem and DIR/NAME.key, a CA
#   tls_cert DIR CA NAME SAN [expired]   DIR/NAME.pem and .key signed by CA,
#                                        subjectAltName SAN ("IP:127.0.0.1");
#                                        "expired": valid 2020-01-01 to 01-02
#   tls_client_cert DIR CA NAME [expired]  a client certificate (CN=NAME,
#                                        extendedKeyUsage clientAuth) for
#                                        mutual TLS

tls_ca() {
    local dir=$1 name=$2
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$dir/$name.key" -out "$dir/$name.pem" -days 30 -subj "/CN=$name" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        2>/dev/null
}

tls_cert() {
    local dir=$1 ca=$2 name=$3 san=$4 when=${5:-}
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/$name.key" \
        -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null || return 1
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=%s\n' "$san" "${TLS_EKU:-serverAuth}" \
        > "$dir/$name.ext"
    if [ "$when" = expired ]; then
        # openssl x509 cannot set a start date: openssl ca can
        local db=$dir/$name.ca
        mkdir -p "$db/new"
        : > "$db/index.txt"
        echo 01 > "$db/serial"
        cat > "$db/ca.cnf" <<CNF
[ ca ]
default_ca = test_ca
[ test_ca ]
database = $db/index.txt
new_certs_dir = $db/new
serial = $db/serial
certificate = $dir/$ca.pem
private_key = $dir/$ca.key
default_md = sha256
policy = policy_any
unique_subject = no
[ policy_any ]
commonName = supplied
CNF
        openssl ca -batch -notext -config "$db/ca.cnf" -in "$dir/$name.csr" -out "$dir/$name.pem" \
            -startdate 20200101000000Z -enddate 20200102000000Z -extfile "$dir/$name.ext" \
            2>/dev/null
    else
        openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.pem" -CAkey "$dir/$ca.key" \
            -CAcreateserial -out "$dir/$name.pem" -days 30 -extfile "$dir/$name.ext" 2>/dev/null
    fi
}

tls_client_cert() {
    TLS_EKU=clientAuth tls_cert "$1" "$2" "$3" "DNS:$3" "${4:-}"
}
