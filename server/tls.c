/*
 * server/tls.c - pkgstored's certificate and key for HTTPS, handed to
 * libmicrohttpd (which does the TLS, over GnuTLS) through its certificate
 * callback, and reloaded on SIGHUP.
 *
 * Why a callback rather than MHD_OPTION_HTTPS_MEM_CERT: libmicrohttpd reads
 * those once, at start. The callback is asked at every handshake, so a
 * reload only swaps the pointer it returns; connections already
 * established keep their sessions. A generation is never freed before
 * exit: GnuTLS keeps pointing at the certificate a session was given
 * (gnutls_certificate_get_ours()), and a reload costs a few kilobytes.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "server.h"
#include "tls.h"

/* The server's certificate and its chain: a handful is plenty. */
#define TLS_CHAIN_MAX 16u

typedef struct tls_generation {
    gnutls_pcert_st certs[TLS_CHAIN_MAX];
    unsigned int count;
    gnutls_privkey_t key;
    time_t not_after;
    char subject[256];
    struct tls_generation *previous; /* kept until tls_free() */
} tls_generation;

static _Atomic(tls_generation *) current;
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;

static void generation_free(tls_generation *gen)
{
    if (!gen)
        return;
    for (unsigned int i = 0; i < gen->count; i++)
        gnutls_pcert_deinit(&gen->certs[i]);
    if (gen->key)
        gnutls_privkey_deinit(gen->key);
    free(gen);
}

/* Whether the key is the private half of the leaf certificate's public
 * key: both exported as SubjectPublicKeyInfo and compared. */
static int key_matches(gnutls_privkey_t key, gnutls_pubkey_t cert_pubkey)
{
    gnutls_pubkey_t pub = NULL;
    gnutls_datum_t a = {NULL, 0}, b = {NULL, 0};
    int same = 0;
    if (gnutls_pubkey_init(&pub) == 0 && gnutls_pubkey_import_privkey(pub, key, 0, 0) == 0 &&
        gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &a) == 0 &&
        gnutls_pubkey_export2(cert_pubkey, GNUTLS_X509_FMT_DER, &b) == 0)
        same = a.size == b.size && memcmp(a.data, b.data, a.size) == 0;
    gnutls_free(a.data);
    gnutls_free(b.data);
    if (pub)
        gnutls_pubkey_deinit(pub);
    return same;
}

/* The leaf's subject and expiry, for the log. */
static void describe_leaf(tls_generation *gen)
{
    gnutls_x509_crt_t crt = NULL;
    if (gnutls_pcert_export_x509(&gen->certs[0], &crt) < 0)
        return;
    size_t size = sizeof gen->subject;
    if (gnutls_x509_crt_get_dn(crt, gen->subject, &size) < 0)
        gen->subject[0] = '\0';
    gen->not_after = gnutls_x509_crt_get_expiration_time(crt);
    gnutls_x509_crt_deinit(crt);
}

/* Read the PEM certificate chain and key into a new generation; NULL with
 * the reason in err. */
static tls_generation *load(const char *cert_path, const char *key_path, char *err,
                            size_t err_size)
{
    gnutls_datum_t cert_pem = {NULL, 0}, key_pem = {NULL, 0};
    tls_generation *gen = calloc(1, sizeof *gen);
    int rc;
    if (!gen) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    errno = 0;
    if ((rc = gnutls_load_file(cert_path, &cert_pem)) < 0) {
        snprintf(err, err_size, "%s: cannot read: %s", cert_path, strerror(errno ? errno : EIO));
        goto fail;
    }
    errno = 0;
    if ((rc = gnutls_load_file(key_path, &key_pem)) < 0) {
        snprintf(err, err_size, "%s: cannot read: %s", key_path, strerror(errno ? errno : EIO));
        goto fail;
    }
    gen->count = TLS_CHAIN_MAX;
    rc = gnutls_pcert_list_import_x509_raw(gen->certs, &gen->count, &cert_pem,
                                           GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0 || gen->count == 0) {
        gen->count = 0;
        snprintf(err, err_size, "%s: not a PEM certificate chain (of at most %u): %s", cert_path,
                 TLS_CHAIN_MAX, rc < 0 ? gnutls_strerror(rc) : "no certificate");
        goto fail;
    }
    if ((rc = gnutls_privkey_init(&gen->key)) < 0 ||
        (rc = gnutls_privkey_import_x509_raw(gen->key, &key_pem, GNUTLS_X509_FMT_PEM, NULL, 0)) <
            0) {
        snprintf(err, err_size, "%s: not an unencrypted PEM private key: %s", key_path,
                 gnutls_strerror(rc));
        goto fail;
    }
    if (!key_matches(gen->key, gen->certs[0].pubkey)) {
        snprintf(err, err_size, "%s: not the key of the certificate in %s", key_path, cert_path);
        goto fail;
    }
    describe_leaf(gen);
    gnutls_free(cert_pem.data);
    gnutls_memset(key_pem.data, 0, key_pem.size);
    gnutls_free(key_pem.data);
    return gen;
fail:
    gnutls_free(cert_pem.data);
    if (key_pem.data)
        gnutls_memset(key_pem.data, 0, key_pem.size);
    gnutls_free(key_pem.data);
    generation_free(gen);
    return NULL;
}

static void log_loaded(const char *msg, const tls_generation *gen, const char *cert_path)
{
    char q1[4300], q2[600], expires[32] = "unknown";
    struct tm tm;
    if (gen->not_after > 0 && gmtime_r(&gen->not_after, &tm))
        strftime(expires, sizeof expires, "%Y-%m-%dT%H:%M:%SZ", &tm);
    log_msg(LOG_INFO, msg, "cert=%s subject=%s chain=%u not_after=%s",
            log_quote(q1, sizeof q1, cert_path), log_quote(q2, sizeof q2, gen->subject),
            gen->count, expires);
    if (gen->not_after > 0 && gen->not_after < time(NULL))
        log_msg(LOG_WARN, "the certificate has expired: clients will refuse it",
                "cert=%s not_after=%s", q1, expires);
}

int tls_load(const char *cert_path, const char *key_path, char *err, size_t err_size)
{
    tls_generation *gen = load(cert_path, key_path, err, err_size);
    if (!gen)
        return -1;
    pthread_mutex_lock(&reload_lock);
    gen->previous = atomic_load(&current);
    atomic_store(&current, gen);
    pthread_mutex_unlock(&reload_lock);
    log_loaded(gen->previous ? "reloaded the TLS certificate" : "loaded the TLS certificate", gen,
               cert_path);
    return 0;
}

void tls_client_ca_free(void);

void tls_free(void)
{
    tls_client_ca_free();
    pthread_mutex_lock(&reload_lock);
    tls_generation *gen = atomic_exchange(&current, NULL);
    pthread_mutex_unlock(&reload_lock);
    while (gen) {
        tls_generation *previous = gen->previous;
        generation_free(gen);
        gen = previous;
    }
}

/* gnutls_certificate_retrieve_function2, called by GnuTLS inside a
 * libmicrohttpd worker at every handshake: the current generation. GnuTLS
 * neither frees nor keeps a copy of what it gets (the generation outlives
 * every session, see the file comment). */
int tls_certificate_callback(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                             const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                             gnutls_pcert_st **pcert, unsigned int *pcert_length,
                             gnutls_privkey_t *pkey)
{
    (void)session, (void)req_ca_dn, (void)nreqs, (void)pk_algos, (void)pk_algos_length;
    tls_generation *gen = atomic_load(&current);
    if (!gen)
        return -1;
    *pcert = gen->certs;
    *pcert_length = gen->count;
    *pkey = gen->key;
    return 0;
}

/* ---------------------------------------------------------------- client certificates */

/* --tls-client-ca: the authorities a node's client certificate must chain
 * to. Reloaded on SIGHUP like the server's certificate; a list is never
 * freed before exit, for the same reason (a verification may be using it). */
typedef struct client_ca {
    gnutls_x509_trust_list_t list;
    unsigned int count;
    struct client_ca *previous;
} client_ca;

static _Atomic(client_ca *) client_current;

int tls_client_ca_load(const char *path, char *err, size_t err_size)
{
    gnutls_datum_t pem = {NULL, 0};
    client_ca *ca = calloc(1, sizeof *ca);
    int rc;
    if (!ca) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    errno = 0;
    if (gnutls_load_file(path, &pem) < 0) {
        snprintf(err, err_size, "%s: cannot read: %s", path, strerror(errno ? errno : EIO));
        free(ca);
        return -1;
    }
    if ((rc = gnutls_x509_trust_list_init(&ca->list, 0)) < 0 ||
        (rc = gnutls_x509_trust_list_add_trust_mem(ca->list, &pem, NULL, GNUTLS_X509_FMT_PEM, 0,
                                                   0)) <= 0) {
        snprintf(err, err_size, "%s: no PEM CA certificate: %s", path,
                 rc < 0 ? gnutls_strerror(rc) : "none found");
        if (ca->list)
            gnutls_x509_trust_list_deinit(ca->list, 1);
        gnutls_free(pem.data);
        free(ca);
        return -1;
    }
    ca->count = (unsigned int)rc;
    gnutls_free(pem.data);
    pthread_mutex_lock(&reload_lock);
    ca->previous = atomic_load(&client_current);
    atomic_store(&client_current, ca);
    pthread_mutex_unlock(&reload_lock);
    char q[4300];
    log_msg(LOG_INFO, ca->previous ? "reloaded the client CA" : "loaded the client CA",
            "client_ca=%s certificates=%u", log_quote(q, sizeof q, path), ca->count);
    return 0;
}

void tls_client_ca_free(void)
{
    pthread_mutex_lock(&reload_lock);
    client_ca *ca = atomic_exchange(&client_current, NULL);
    pthread_mutex_unlock(&reload_lock);
    while (ca) {
        client_ca *previous = ca->previous;
        gnutls_x509_trust_list_deinit(ca->list, 1);
        free(ca);
        ca = previous;
    }
}

/* The common name of crt, which must be a node id; -1 when it has none. */
static int common_name(gnutls_x509_crt_t crt, char *out, size_t size)
{
    size_t len = size;
    if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, out, &len) < 0 ||
        len == 0 || len >= size || memchr(out, '\0', len))
        return -1;
    out[len] = '\0';
    return 0;
}

int tls_client_node(struct MHD_Connection *conn, char *node, size_t node_size, char *why,
                    size_t why_size)
{
    client_ca *ca = atomic_load(&client_current);
    if (!ca)
        return 0;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    gnutls_session_t session = info ? (gnutls_session_t)info->tls_session : NULL;
    unsigned int count = 0;
    const gnutls_datum_t *raw = session ? gnutls_certificate_get_peers(session, &count) : NULL;
    if (!raw || count == 0)
        return 0;
    if (gnutls_certificate_type_get(session) != GNUTLS_CRT_X509) {
        snprintf(why, why_size, "not an X.509 certificate");
        return -1;
    }
    if (count > TLS_CHAIN_MAX)
        count = TLS_CHAIN_MAX;
    gnutls_x509_crt_t chain[TLS_CHAIN_MAX];
    unsigned int imported = 0, status = 0;
    int result = -1, rc = 0;
    for (; imported < count; imported++) {
        if ((rc = gnutls_x509_crt_init(&chain[imported])) < 0)
            break;
        if ((rc = gnutls_x509_crt_import(chain[imported], &raw[imported], GNUTLS_X509_FMT_DER)) <
            0) {
            gnutls_x509_crt_deinit(chain[imported]);
            break;
        }
    }
    if (imported < count) {
        snprintf(why, why_size, "unreadable certificate: %s", gnutls_strerror(rc));
        goto out;
    }
    /* The chain, its dates and a client-authentication purpose (when the
     * certificate states purposes at all). TLS itself proved that the
     * client holds the leaf's private key. */
    gnutls_typed_vdata_st purpose = {GNUTLS_DT_KEY_PURPOSE_OID,
                                     (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0};
    rc = gnutls_x509_trust_list_verify_crt2(ca->list, chain, count, &purpose, 1, 0, &status,
                                            NULL);
    if (rc < 0 || status != 0) {
        gnutls_datum_t text = {NULL, 0};
        if (rc >= 0 &&
            gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) >= 0)
            snprintf(why, why_size, "%s", (const char *)text.data);
        else
            snprintf(why, why_size, "not verified: %s",
                     rc < 0 ? gnutls_strerror(rc) : "unknown reason");
        for (size_t len = strlen(why); len > 0 && why[len - 1] == ' '; len--)
            why[len - 1] = '\0'; /* GnuTLS ends its sentences with a space */
        gnutls_free(text.data);
        goto out;
    }
    if (common_name(chain[0], node, node_size) < 0) {
        snprintf(why, why_size, "the certificate has no common name (CN) to name its node");
        goto out;
    }
    result = 1;
out:
    for (unsigned int i = 0; i < imported; i++)
        gnutls_x509_crt_deinit(chain[i]);
    return result;
}
