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

void tls_free(void)
{
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
