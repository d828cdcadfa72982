/*
 * Private: what the trust module's files share (docs/trust.md): the key
 * and root structures, DSSE's pre-authentication encoding, Ed25519 sign
 * and verify through EVP, strict base64, canonical JSON, the signatures
 * array of root.json and revocations, and threshold counting.
 */
#ifndef PS_TRUST_H
#define PS_TRUST_H

#include <stddef.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "json_dump.h"
#include "pkgstore/trust.h"

#define PS_TRUST_PUBLIC_SIZE 32
#define PS_TRUST_SIG_SIZE 64
/* base64 of 32 and of 64 bytes, without the NUL */
#define PS_TRUST_PUBLIC_B64_LEN 44
#define PS_TRUST_SIG_B64_LEN 88
/* Longest base64 field read before decoding: a wrong length is then
 * "not base64 of N bytes" (EINVALID), not a limit. */
#define PS_TRUST_B64_FIELD_MAX 256 /* and key ids */

struct pkgstore_trust_key {
    EVP_PKEY *pkey;
    int has_private;
    unsigned char public_raw[PS_TRUST_PUBLIC_SIZE];
    char keyid[PKGSTORE_TRUST_KEYID_SIZE];
};

typedef struct ps_trust_sig {
    char keyid[PKGSTORE_TRUST_KEYID_SIZE];
    unsigned char sig[PS_TRUST_SIG_SIZE];
} ps_trust_sig;

typedef struct ps_trust_sigs {
    size_t count;
    ps_trust_sig items[PKGSTORE_TRUST_SIGNATURES_MAX];
} ps_trust_sigs;

typedef struct ps_trust_root_key {
    char keyid[PKGSTORE_TRUST_KEYID_SIZE];
    char name[PKGSTORE_TRUST_KEY_NAME_MAX + 1];
    unsigned char public_raw[PS_TRUST_PUBLIC_SIZE];
    EVP_PKEY *pkey; /* made once, at add or parse: verifying needs no setup */
} ps_trust_root_key;

struct pkgstore_trust_root {
    uint64_t version;
    unsigned int threshold;
    int64_t created;
    size_t key_count;
    ps_trust_root_key keys[PKGSTORE_TRUST_ROOT_KEYS_MAX];
    ps_trust_sigs sigs;
};

/* OpenSSL's queued error as the detail "<what>: <openssl text>"; returns
 * PKGSTORE_EINTERNAL. */
int ps_trust_openssl_error(const char *what);

/* The hex SHA-256 of a raw public key. */
int ps_trust_keyid(char out[PKGSTORE_TRUST_KEYID_SIZE], const unsigned char *public_raw);

/* A public EVP_PKEY from 32 raw bytes (NULL on failure, with the detail). */
EVP_PKEY *ps_trust_public_pkey(const unsigned char *public_raw);

/* Sign / verify PAE(type, body). verify returns 1 when valid, else 0. */
int ps_trust_sign(unsigned char sig[PS_TRUST_SIG_SIZE], const pkgstore_trust_key *key,
                  const char *type, const void *body, size_t len);
int ps_trust_verify(EVP_PKEY *pkey, const unsigned char sig[PS_TRUST_SIG_SIZE], const char *type,
                    const void *body, size_t len);

/* Base64 (standard alphabet, padded). decode accepts only the canonical
 * encoding of exactly n bytes; 0 or PKGSTORE_EINVALID (detail: field). */
void ps_trust_b64_encode(char *out, const unsigned char *data, size_t n);
int ps_trust_b64_decode(unsigned char *out, size_t n, const char *field, const char *text);

/* 1 when text is 64 lower-case hex characters. */
int ps_trust_keyid_valid(const char *text);

/* Size and nesting limits, then jansson with duplicate keys refused; the
 * detail starts with what. */
int ps_trust_load(json_t **out, const char *what, const void *data, size_t len, size_t max);

/* Refuse fields of object not in keys (NULL-terminated). */
int ps_trust_only_keys(json_t *object, const char *prefix, const char *const *keys);

/* A string field: present, a string, at most max bytes. *out borrowed. */
int ps_trust_get_string(const char **out, json_t *object, const char *key, const char *field,
                        size_t max);

/* A UTF-8 string without NUL of at most max bytes (for builders). */
int ps_trust_check_text(const char *field, const char *text, size_t max);

/* The schemaVersion and type fields of a signed object. */
int ps_trust_check_header(json_t *signed_obj, const char *type);

/* The "signatures" array <-> sigs. */
int ps_trust_sigs_parse(ps_trust_sigs *out, json_t *array);
json_t *ps_trust_sigs_json(const ps_trust_sigs *sigs);

/* Add key's signature over PAE(type, body), replacing one by the same key. */
int ps_trust_sigs_add(ps_trust_sigs *sigs, const pkgstore_trust_key *key, const char *type,
                      const void *body, size_t len);

/* Wrap signed canonical JSON and signatures as {"signatures":..,"signed":..}. */
int ps_trust_document(char **out, size_t *len_out, json_t *signed_obj, const ps_trust_sigs *sigs,
                      const char *what);

/* Parse {"signatures":[..],"signed":{..}} into its parts (*signed_obj is a
 * new reference). */
int ps_trust_document_parse(json_t **signed_obj, ps_trust_sigs *sigs, const char *what,
                            const void *data, size_t len);

/* Count the distinct keys of root with a valid signature in sigs over
 * PAE(type, body). why receives "; "-separated reasons for those that did
 * not count (may be truncated). */
size_t ps_trust_count(const pkgstore_trust_root *root, const ps_trust_sigs *sigs, const char *type,
                      const void *body, size_t len, char *why, size_t why_size);

/* Append "key <short id>: <reason>" to why. */
void ps_trust_why(char *why, size_t size, const char *keyid, const char *reason);

/* The root's signed object (canonical source of its signed bytes). */
json_t *ps_trust_root_signed_json(const pkgstore_trust_root *root);

#endif
