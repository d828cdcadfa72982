/*
 * server/tls.h - pkgstored's HTTPS certificate (tls.c). Only main.c and
 * tls.c see GnuTLS's types.
 */
#ifndef PKGSTORED_TLS_H
#define PKGSTORED_TLS_H

#include <stddef.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

/* Load (or, on SIGHUP, reload) the PEM certificate chain and its private
 * key. Returns 0, or -1 with the reason in err; on failure the certificate
 * in use stays. Logs what it loaded, and warns when it has expired. */
int tls_load(const char *cert_path, const char *key_path, char *err, size_t err_size);

/* Free every generation loaded: after MHD_stop_daemon() only. */
void tls_free(void);

/* MHD_OPTION_HTTPS_CERT_CALLBACK: the current certificate and key. */
gnutls_certificate_retrieve_function2 tls_certificate_callback;

/* --tls-client-ca: load (or, on SIGHUP, reload) the PEM authorities that
 * nodes' client certificates must chain to. 0, or -1 with the reason in
 * err (the list in use stays). tls_client_ca_free(): at exit. */
int tls_client_ca_load(const char *path, char *err, size_t err_size);
void tls_client_ca_free(void);

#endif
