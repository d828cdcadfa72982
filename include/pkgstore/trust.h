/*
 * pkgstore/trust.h - Ed25519 keys, signed manifests, roots of trust and
 * revocations (docs/trust.md).
 *
 * Everything signed is canonical bytes wrapped with their payload type in
 * DSSE's pre-authentication encoding, so a signature for one kind of
 * document never verifies as another. Crypto is OpenSSL EVP's; nothing here
 * reads a clock except pkgstore_trust_root_new() and
 * pkgstore_trust_revocation_new() (their "created").
 *
 * Trust failures (unknown key, bad signature, below threshold, a rotation
 * the old root did not sign) are PKGSTORE_EDENIED with a detail that names
 * the document and every reason, e.g.
 *   "otelcol 0.98.0: 1 valid signature, 2 required (key 3b1f...: unknown key)".
 * Malformed input is PKGSTORE_EINVALID or PKGSTORE_ELIMIT with the field.
 *
 * Objects are plain values: safe to read from many threads at once;
 * modifying one needs the caller's own exclusion.
 */
#ifndef PKGSTORE_TRUST_H
#define PKGSTORE_TRUST_H

#include "common.h"
#include "digest.h"
#include "index.h"
#include "manifest.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PKGSTORE_TRUST_SCHEMA_VERSION 1

/* Payload types (docs/trust.md). */
#define PKGSTORE_TRUST_TYPE_MANIFEST "application/vnd.pkgstore.manifest.v1+json"
#define PKGSTORE_TRUST_TYPE_ROOT "application/vnd.pkgstore.root.v1+json"
#define PKGSTORE_TRUST_TYPE_REVOCATION "application/vnd.pkgstore.revocation.v1+json"

/* A key id: 64 lower-case hex characters (SHA-256 of the raw public key). */
#define PKGSTORE_TRUST_KEYID_SIZE 65 /* with the NUL */

/* Limits. Anything beyond them is PKGSTORE_ELIMIT. */
#define PKGSTORE_TRUST_ENVELOPE_SIZE_MAX 4096
#define PKGSTORE_TRUST_DOCUMENT_SIZE_MAX (64 * 1024) /* root.json, a revocation */
#define PKGSTORE_TRUST_KEY_FILE_MAX 16384
#define PKGSTORE_TRUST_ROOT_KEYS_MAX 32
#define PKGSTORE_TRUST_SIGNATURES_MAX 64
#define PKGSTORE_TRUST_KEY_NAME_MAX 256
#define PKGSTORE_TRUST_REASON_MAX 1024

/** An Ed25519 key: public only, or with its private half (opaque). */
typedef struct pkgstore_trust_key pkgstore_trust_key;
/** One parsed signature envelope (opaque). */
typedef struct pkgstore_trust_envelope pkgstore_trust_envelope;
/** A root of trust, root.json (opaque). */
typedef struct pkgstore_trust_root pkgstore_trust_root;
/** A revocation statement (opaque). */
typedef struct pkgstore_trust_revocation pkgstore_trust_revocation;

/* ---- keys ---- */

/** A new random key pair into *out. Free with pkgstore_trust_key_free().
 * Errors: PKGSTORE_EINTERNAL (OpenSSL failed; the detail quotes it),
 * PKGSTORE_ENOMEM. */
PKGSTORE_API int pkgstore_trust_key_generate(pkgstore_trust_key **out);

/**
 * Parse a PEM key: "PRIVATE KEY" (unencrypted PKCS#8) gives a key with its
 * private half, "PUBLIC KEY" a public key. Only Ed25519.
 * Errors: PKGSTORE_EINVALID (not PEM, another algorithm, encrypted),
 * PKGSTORE_ELIMIT (over PKGSTORE_TRUST_KEY_FILE_MAX bytes), PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_trust_key_parse(pkgstore_trust_key **out, const void *data, size_t len);

/**
 * Load a key file as pkgstore_trust_key_parse(). A private key file that
 * its group or others may read is refused.
 * Errors: those of parse, PKGSTORE_ENOTFOUND, PKGSTORE_EDENIED (including
 * too open permissions), PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_trust_key_load(pkgstore_trust_key **out, const char *path);

/**
 * Write the private key (mode 0600) or the public key (mode 0644) as PEM to
 * path, atomically: a temporary file in the same directory, fsync, then a
 * hard link to path, which never replaces an existing file.
 * Errors: PKGSTORE_EEXISTS (path exists), PKGSTORE_EINVALID (private asked
 * of a public key), PKGSTORE_EDENIED, PKGSTORE_ENOSPC, PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_trust_key_save_private(const pkgstore_trust_key *key, const char *path);
PKGSTORE_API int pkgstore_trust_key_save_public(const pkgstore_trust_key *key, const char *path);

/** The key id (64 hex characters). Borrowed: valid until key is freed. */
PKGSTORE_API const char *pkgstore_trust_key_id(const pkgstore_trust_key *key);

/** 1 when key holds its private half, else 0. */
PKGSTORE_API int pkgstore_trust_key_has_private(const pkgstore_trust_key *key);

/** Free a key (its private half is cleared by OpenSSL). Accepts NULL. */
PKGSTORE_API void pkgstore_trust_key_free(pkgstore_trust_key *key);

/* ---- envelopes: detached manifest signatures ---- */

/**
 * Sign the canonical bytes of manifest m with key into a new envelope, its
 * canonical JSON in *out (NUL-terminated, free with pkgstore_free()) and
 * its length in *len_out (may be NULL).
 * Errors: PKGSTORE_EINVALID (no private key, m has no artifact),
 * PKGSTORE_EINTERNAL, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_trust_manifest_sign(char **out, size_t *len_out,
                                              const pkgstore_trust_key *key,
                                              const pkgstore_manifest *m);

/**
 * Parse len bytes of envelope JSON into *out (free with
 * pkgstore_trust_envelope_free()). Strict: the fields of docs/trust.md,
 * nothing else; canonical base64 of a 64-byte signature. The signature is
 * not checked here (see pkgstore_trust_manifest_verify()).
 * Errors: PKGSTORE_EINVALID, PKGSTORE_ELIMIT, PKGSTORE_EUNSUPPORTED
 * (another schemaVersion), PKGSTORE_ENOMEM. On failure *out is NULL.
 */
PKGSTORE_API int pkgstore_trust_envelope_parse(pkgstore_trust_envelope **out, const void *data,
                                               size_t len);

/** The envelope's canonical bytes in *out (free with pkgstore_free()).
 * Errors: PKGSTORE_EINVALID, PKGSTORE_ENOMEM. */
PKGSTORE_API int pkgstore_trust_envelope_serialize(char **out, size_t *len_out,
                                                   const pkgstore_trust_envelope *env);

PKGSTORE_API void pkgstore_trust_envelope_free(pkgstore_trust_envelope *env);

/* Accessors; strings borrowed until env is freed. */
PKGSTORE_API const char *pkgstore_trust_envelope_keyid(const pkgstore_trust_envelope *env);
PKGSTORE_API const char *pkgstore_trust_envelope_payload_type(const pkgstore_trust_envelope *env);
/** The SHA-256 of the signed body (for a manifest: the manifest digest). */
PKGSTORE_API const pkgstore_digest *
pkgstore_trust_envelope_payload_digest(const pkgstore_trust_envelope *env);

/**
 * Verify that the manifest bytes (as stored: the manifest blob) carry a
 * threshold of valid signatures by distinct keys of root among the count
 * envelopes. Envelopes that do not count (unknown key, another payload type
 * or digest, a bad signature, a key already counted) are no error by
 * themselves; the detail lists them.
 *
 * *manifest_out (may be NULL) receives the manifest parsed from those
 * signed bytes (free with pkgstore_manifest_free()), only on success: its
 * name, version, type, platforms and artifact digests are the ones to act
 * on. *valid_out (may be NULL) receives the number of distinct keys whose
 * signatures verified, also on PKGSTORE_EDENIED.
 *
 * Errors: PKGSTORE_EDENIED (below the threshold), PKGSTORE_EINVALID (the
 * bytes are not a canonical manifest: a manifest is signed and verified
 * only in canonical form), PKGSTORE_ELIMIT, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_trust_manifest_verify(pkgstore_manifest **manifest_out, size_t *valid_out,
                                                const pkgstore_trust_root *root,
                                                const void *manifest_data, size_t manifest_len,
                                                pkgstore_trust_envelope *const *envelopes,
                                                size_t count);

/**
 * Compare a verified manifest with what was offered (mix-and-match): name,
 * version (SemVer-equal after normalization) and type must be equal, and
 * platform (may be NULL: not checked) must be one of its artifacts'
 * platforms exactly. Errors: PKGSTORE_EDENIED naming the first difference,
 * PKGSTORE_EINVALID (NULL m, name or version).
 */
PKGSTORE_API int pkgstore_trust_manifest_match(const pkgstore_manifest *m, const char *name,
                                               const char *version, pkgstore_package_type type,
                                               const char *platform);

/* ---- signatures in a store ---- */

/** A stored signature envelope: its blob digest and its bytes. */
typedef struct pkgstore_trust_stored_signature {
    pkgstore_digest digest; /* of the envelope blob */
    char *data;             /* the envelope's canonical JSON, NUL-terminated */
    size_t len;
} pkgstore_trust_stored_signature;

/**
 * Keep a signature of the manifest of name version in the store: the
 * envelope as a blob and a record in the index's "signatures" database
 * under the manifest digest (docs/index-format.md), in one transaction
 * under the shared store lock, as the registry adds. The envelope must
 * parse, be in canonical form and sign, by its payload digest, the
 * manifest that the registry holds for name version now. Its signature is
 * not checked here: the store holds no root; verifiers check.
 * Removing or replacing that version's manifest drops its records; gc keeps
 * the envelope blobs that records name.
 * *envelope_digest_out (may be NULL) receives the envelope blob's digest.
 * Returns 0 when added, 1 when that envelope was already recorded.
 * Errors: PKGSTORE_EINVALID (not an envelope, not canonical, not a manifest
 * signature), PKGSTORE_ENOTFOUND (no such version), PKGSTORE_ECONFLICT (it
 * signs another manifest than the version's), PKGSTORE_EIO, PKGSTORE_ENOSPC,
 * PKGSTORE_ELOCKED.
 */
PKGSTORE_API int pkgstore_trust_signature_add(pkgstore_digest *envelope_digest_out,
                                              pkgstore_store *store, const char *name,
                                              const char *version, const void *envelope,
                                              size_t len);

/**
 * The envelopes stored for manifest_digest, in envelope digest order, into
 * a new array *out of *count_out items (free with
 * pkgstore_trust_signatures_free(); *out is NULL when there are none).
 * Errors: PKGSTORE_ECORRUPT (a malformed record, or a recorded envelope
 * over PKGSTORE_TRUST_ENVELOPE_SIZE_MAX), PKGSTORE_EIO, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_trust_signatures_list(pkgstore_trust_stored_signature **out,
                                                size_t *count_out, pkgstore_store *store,
                                                const pkgstore_digest *manifest_digest);

/** Free a list from pkgstore_trust_signatures_list(). Accepts NULL. */
PKGSTORE_API void pkgstore_trust_signatures_free(pkgstore_trust_stored_signature *list,
                                                 size_t count);

/* ---- root.json ---- */

/**
 * A new unsigned root into *out: version >= 1, no keys yet, threshold 1,
 * "created" now. Free with pkgstore_trust_root_free().
 * Errors: PKGSTORE_EINVALID (version 0), PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_trust_root_new(pkgstore_trust_root **out, uint64_t version);

/** Add the public half of key, with an optional name (UTF-8, may be NULL).
 * Drops every signature (they covered the old content).
 * Errors: PKGSTORE_EEXISTS (key already listed), PKGSTORE_ELIMIT,
 * PKGSTORE_EINVALID (bad name). */
PKGSTORE_API int pkgstore_trust_root_add_key(pkgstore_trust_root *root,
                                             const pkgstore_trust_key *key, const char *name);

/** Set the threshold (1 to the number of keys, checked when signing and
 * parsing). Drops every signature. Errors: PKGSTORE_EINVALID (0). */
PKGSTORE_API int pkgstore_trust_root_set_threshold(pkgstore_trust_root *root,
                                                   unsigned int threshold);

/** Set "created" (Unix seconds). Drops every signature. Errors:
 * PKGSTORE_EINVALID (outside 0000-9999). */
PKGSTORE_API int pkgstore_trust_root_set_created(pkgstore_trust_root *root, int64_t seconds);

/**
 * Add key's signature over the root's canonical bytes, replacing an earlier
 * signature by the same key. The key need not be listed in this root (an
 * old root's key signs a rotation).
 * Errors: PKGSTORE_EINVALID (no private key; no keys; threshold above the
 * number of keys), PKGSTORE_ELIMIT, PKGSTORE_EINTERNAL, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_trust_root_sign(pkgstore_trust_root *root, const pkgstore_trust_key *key);

/** root.json in canonical form (sorted keys, compact, UTF-8) into *out,
 * free with pkgstore_free(). Errors: PKGSTORE_EINVALID (no keys, or
 * threshold above their number), PKGSTORE_ENOMEM. */
PKGSTORE_API int pkgstore_trust_root_serialize(char **out, size_t *len_out,
                                               const pkgstore_trust_root *root);

/**
 * Parse root.json strictly into *out; signatures are kept but not checked
 * (pkgstore_trust_root_verify() does). Every listed key id must be the one
 * derived from its public key.
 * Errors: PKGSTORE_EINVALID, PKGSTORE_ELIMIT, PKGSTORE_EUNSUPPORTED,
 * PKGSTORE_ENOMEM. On failure *out is NULL.
 */
PKGSTORE_API int pkgstore_trust_root_parse(pkgstore_trust_root **out, const void *data, size_t len);

/**
 * With trusted NULL: 0 when root is signed by a threshold of its own keys
 * (the check for a pinned root). With trusted, the root currently trusted:
 * 0 only when root may replace it, that is root's version is higher, and
 * root is signed by a threshold of trusted's keys and by a threshold of its
 * own keys (docs/trust.md, "Rotation").
 * Errors: PKGSTORE_EDENIED (the detail says which rule failed and lists the
 * signatures that did not count), PKGSTORE_EINVALID (NULL root).
 */
PKGSTORE_API int pkgstore_trust_root_verify(const pkgstore_trust_root *root,
                                            const pkgstore_trust_root *trusted);

PKGSTORE_API void pkgstore_trust_root_free(pkgstore_trust_root *root);

PKGSTORE_API uint64_t pkgstore_trust_root_version(const pkgstore_trust_root *root);
PKGSTORE_API unsigned int pkgstore_trust_root_threshold(const pkgstore_trust_root *root);
PKGSTORE_API int64_t pkgstore_trust_root_created(const pkgstore_trust_root *root);
PKGSTORE_API size_t pkgstore_trust_root_key_count(const pkgstore_trust_root *root);
/** Key i's id and name ("" when none) in *keyid and *name (either may be
 * NULL), borrowed until root is modified or freed. Errors:
 * PKGSTORE_ENOTFOUND (out of range). */
PKGSTORE_API int pkgstore_trust_root_key(const char **keyid, const char **name,
                                         const pkgstore_trust_root *root, size_t i);
PKGSTORE_API size_t pkgstore_trust_root_signature_count(const pkgstore_trust_root *root);
/** The key id that signature i names (not checked: who claims to have
 * signed; pkgstore_trust_root_verify() says which count), in document
 * order; borrowed until root is modified or freed. NULL when i is out of
 * range. */
PKGSTORE_API const char *pkgstore_trust_root_signature_keyid(const pkgstore_trust_root *root,
                                                             size_t i);

/* ---- revocations ---- */

/**
 * A new unsigned revocation of name version (normalized like a manifest's)
 * with an optional reason (UTF-8, may be NULL), "created" now.
 * Errors: PKGSTORE_EINVALID, PKGSTORE_ELIMIT, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_trust_revocation_new(pkgstore_trust_revocation **out, const char *name,
                                               const char *version, const char *reason);

/** Set "created" (Unix seconds); drops every signature. */
PKGSTORE_API int pkgstore_trust_revocation_set_created(pkgstore_trust_revocation *rev,
                                                       int64_t seconds);

/** Add key's signature, as pkgstore_trust_root_sign(). */
PKGSTORE_API int pkgstore_trust_revocation_sign(pkgstore_trust_revocation *rev,
                                                const pkgstore_trust_key *key);

/** The revocation document in canonical form into *out (pkgstore_free()). */
PKGSTORE_API int pkgstore_trust_revocation_serialize(char **out, size_t *len_out,
                                                     const pkgstore_trust_revocation *rev);

/** Parse a revocation strictly; signatures are not checked. Errors as
 * pkgstore_trust_root_parse(). */
PKGSTORE_API int pkgstore_trust_revocation_parse(pkgstore_trust_revocation **out, const void *data,
                                                 size_t len);

/** 0 when rev is signed by a threshold of root's keys. Errors:
 * PKGSTORE_EDENIED, PKGSTORE_EINVALID. */
PKGSTORE_API int pkgstore_trust_revocation_verify(const pkgstore_trust_revocation *rev,
                                                  const pkgstore_trust_root *root);

PKGSTORE_API void pkgstore_trust_revocation_free(pkgstore_trust_revocation *rev);

PKGSTORE_API const char *pkgstore_trust_revocation_name(const pkgstore_trust_revocation *rev);
PKGSTORE_API const char *pkgstore_trust_revocation_version(const pkgstore_trust_revocation *rev);
/** The reason, "" when none. */
PKGSTORE_API const char *pkgstore_trust_revocation_reason(const pkgstore_trust_revocation *rev);
PKGSTORE_API int64_t pkgstore_trust_revocation_created(const pkgstore_trust_revocation *rev);
PKGSTORE_API size_t pkgstore_trust_revocation_signature_count(const pkgstore_trust_revocation *rev);
/** The key id that signature i names, as
 * pkgstore_trust_root_signature_keyid(). */
PKGSTORE_API const char *
pkgstore_trust_revocation_signature_keyid(const pkgstore_trust_revocation *rev, size_t i);

#ifdef __cplusplus
}
#endif

#endif
