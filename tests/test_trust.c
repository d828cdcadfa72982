/*
 * test_trust.c - keys, manifest signature envelopes, root.json and its
 * rotation rule, revocations (docs/trust.md): valid signatures, unknown
 * keys, thresholds, a key counted once, garbage and wrong-type signatures,
 * a manifest changed after signing, mix-and-match, and the canonical bytes
 * pinned, non-ASCII text included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pkgstore.h"

#include "gc.h" /* private: ps_gc_set_clock_skew(), a test hook */
#include "store_test_util.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
/* 2026-12-03T10:00:00Z */
#define CREATED 1796292000

/* ------------------------------------------------------------------ fixtures */

/* A key made from a fixed seed (Ed25519 is deterministic, so signatures
 * and documents are reproducible), through the public PEM parser. */
static pkgstore_trust_key *seeded_key(unsigned char seed)
{
    unsigned char raw[32];
    memset(raw, seed, sizeof(raw));
    EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, sizeof(raw));
    assert_non_null(pkey);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
    char *pem = NULL;
    long len = BIO_get_mem_data(bio, &pem);
    pkgstore_trust_key *key = NULL;
    assert_int_equal(pkgstore_trust_key_parse(&key, pem, (size_t)len), 0);
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    return key;
}

static pkgstore_manifest *sample_manifest(const char *name, const char *version)
{
    pkgstore_manifest *m = NULL;
    pkgstore_artifact a;
    memset(&a, 0, sizeof(a));
    assert_int_equal(pkgstore_manifest_new(&m, name, version, PKGSTORE_TYPE_PRIMARY), 0);
    assert_int_equal(pkgstore_manifest_set_created(m, CREATED), 0);
    strcpy(a.platform, "linux/amd64");
    assert_int_equal(pkgstore_digest_parse(&a.digest, D1), 0);
    a.size = 10;
    strcpy(a.format, "binary");
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), 0);
    strcpy(a.platform, "linux/arm64");
    assert_int_equal(pkgstore_digest_parse(&a.digest, D2), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), 0);
    return m;
}

/* A root of the given keys and threshold, signed by the signers. */
static pkgstore_trust_root *make_root(uint64_t version, unsigned threshold,
                                      pkgstore_trust_key **keys, size_t key_count,
                                      pkgstore_trust_key **signers, size_t signer_count)
{
    pkgstore_trust_root *root = NULL;
    assert_int_equal(pkgstore_trust_root_new(&root, version), 0);
    assert_int_equal(pkgstore_trust_root_set_created(root, CREATED), 0);
    for (size_t i = 0; i < key_count; i++)
        assert_int_equal(pkgstore_trust_root_add_key(root, keys[i], NULL), 0);
    assert_int_equal(pkgstore_trust_root_set_threshold(root, threshold), 0);
    for (size_t i = 0; i < signer_count; i++)
        assert_int_equal(pkgstore_trust_root_sign(root, signers[i]), 0);
    return root;
}

/* Sign m with key; parse the envelope back. */
static pkgstore_trust_envelope *sign_manifest(pkgstore_trust_key *key, pkgstore_manifest *m)
{
    char *text = NULL;
    size_t len = 0;
    pkgstore_trust_envelope *env = NULL;
    assert_int_equal(pkgstore_trust_manifest_sign(&text, &len, key, m), 0);
    assert_int_equal(pkgstore_trust_envelope_parse(&env, text, len), 0);
    pkgstore_free(text);
    return env;
}

static char *canonical(size_t *len, pkgstore_manifest *m)
{
    char *text = NULL;
    assert_int_equal(pkgstore_manifest_serialize(&text, len, m, 0), 0);
    return text;
}

static void expect_detail(const char *want)
{
    if (!strstr(pkgstore_error_detail(), want))
        fail_msg("detail \"%s\" does not contain \"%s\"", pkgstore_error_detail(), want);
}

/* Verify m's canonical bytes against root with envelopes; expect rc. */
static size_t verify(int rc, pkgstore_trust_root *root, pkgstore_manifest *m,
                     pkgstore_trust_envelope **envs, size_t count)
{
    size_t len = 0, valid = 99;
    char *text = canonical(&len, m);
    pkgstore_manifest *verified = NULL;
    int got = pkgstore_trust_manifest_verify(&verified, &valid, root, text, len, envs, count);
    if (got != rc)
        fail_msg("verify gave %d (%s), wanted %d", got, pkgstore_error_detail(), rc);
    if (rc == 0) {
        assert_non_null(verified);
        assert_string_equal(pkgstore_manifest_name(verified), pkgstore_manifest_name(m));
    } else {
        assert_null(verified);
    }
    pkgstore_manifest_free(verified);
    pkgstore_free(text);
    return valid;
}

/* ------------------------------------------------------------------ keys */

static void test_trust__key_generate_save_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_trust.XXXXXX", priv[256], pub[256];
    struct stat st;
    pkgstore_trust_key *key = NULL, *loaded = NULL, *public_only = NULL;
    assert_non_null(mkdtemp(dir));
    snprintf(priv, sizeof(priv), "%s/a.key", dir);
    snprintf(pub, sizeof(pub), "%s/a.pub", dir);

    assert_int_equal(pkgstore_trust_key_generate(&key), 0);
    assert_int_equal(strlen(pkgstore_trust_key_id(key)), 64);
    assert_int_equal(pkgstore_trust_key_save_private(key, priv), 0);
    assert_int_equal(pkgstore_trust_key_save_public(key, pub), 0);
    assert_int_equal(stat(priv, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(pub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    /* never overwritten, and no temporary file left behind */
    assert_int_equal(pkgstore_trust_key_save_private(key, priv), PKGSTORE_EEXISTS);
    DIR *d = opendir(dir);
    struct dirent *e;
    int entries = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            entries++;
    closedir(d);
    assert_int_equal(entries, 2);

    assert_int_equal(pkgstore_trust_key_load(&loaded, priv), 0);
    assert_true(pkgstore_trust_key_has_private(loaded));
    assert_string_equal(pkgstore_trust_key_id(loaded), pkgstore_trust_key_id(key));
    assert_int_equal(pkgstore_trust_key_load(&public_only, pub), 0);
    assert_false(pkgstore_trust_key_has_private(public_only));
    assert_string_equal(pkgstore_trust_key_id(public_only), pkgstore_trust_key_id(key));
    /* a public key cannot sign or be saved as a private one */
    assert_int_equal(pkgstore_trust_key_save_private(public_only, priv), PKGSTORE_EINVALID);
    pkgstore_manifest *m = sample_manifest("otelcol", "1.0.0");
    char *env = NULL;
    assert_int_equal(pkgstore_trust_manifest_sign(&env, NULL, public_only, m), PKGSTORE_EINVALID);
    assert_null(env);
    pkgstore_manifest_free(m);

    /* a private key others can read is refused */
    pkgstore_trust_key_free(loaded);
    loaded = NULL;
    assert_int_equal(chmod(priv, 0640), 0);
    assert_int_equal(pkgstore_trust_key_load(&loaded, priv), PKGSTORE_EDENIED);
    assert_null(loaded);
    expect_detail("chmod 600");
    assert_int_equal(pkgstore_trust_key_load(&loaded, "/nonexistent/key"), PKGSTORE_ENOTFOUND);

    pkgstore_trust_key_free(key);
    pkgstore_trust_key_free(public_only);
    unlink(priv);
    unlink(pub);
    rmdir(dir);
}

static void test_trust__key_id_is_sha256_of_raw_public_key(void **state)
{
    (void)state;
    pkgstore_trust_key *key = seeded_key(7);
    unsigned char raw[32], seed[32], hash[32];
    size_t raw_len = sizeof(raw);
    unsigned int hash_len = 0;
    char hex[65];
    memset(seed, 7, sizeof(seed));
    EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
    assert_int_equal(EVP_PKEY_get_raw_public_key(pkey, raw, &raw_len), 1);
    assert_int_equal(EVP_Digest(raw, raw_len, hash, &hash_len, EVP_sha256(), NULL), 1);
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", hash[i]);
    assert_string_equal(pkgstore_trust_key_id(key), hex);
    EVP_PKEY_free(pkey);
    pkgstore_trust_key_free(key);
}

static void test_trust__key_parse_refuses_other_keys(void **state)
{
    (void)state;
    pkgstore_trust_key *key = (pkgstore_trust_key *)1;
    static const char *const bad[] = {
        "",
        "not a key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(pkgstore_trust_key_parse(&key, bad[i], strlen(bad[i])), PKGSTORE_EINVALID);
        assert_null(key);
        assert_true(pkgstore_error_detail()[0] != '\0');
    }
    /* an EC key is well-formed PEM but not Ed25519 */
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(ec);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, ec, NULL, NULL, 0, NULL, NULL), 1);
    char *pem = NULL;
    long len = BIO_get_mem_data(bio, &pem);
    assert_int_equal(pkgstore_trust_key_parse(&key, pem, (size_t)len), PKGSTORE_EINVALID);
    expect_detail("not an Ed25519 key");
    BIO_free(bio);
    EVP_PKEY_free(ec);
}

/* ------------------------------------------------------------------ envelopes */

static void test_trust__manifest_signature_verifies(void **state)
{
    (void)state;
    pkgstore_trust_key *a = seeded_key(1);
    pkgstore_trust_root *root = make_root(1, 1, &a, 1, &a, 1);
    pkgstore_manifest *m = sample_manifest("otelcol", "0.98.0");
    pkgstore_trust_envelope *env = sign_manifest(a, m);
    pkgstore_digest digest;
    assert_int_equal(pkgstore_manifest_digest(&digest, m), 0);
    assert_true(pkgstore_digest_equal(pkgstore_trust_envelope_payload_digest(env), &digest));
    assert_string_equal(pkgstore_trust_envelope_keyid(env), pkgstore_trust_key_id(a));
    assert_string_equal(pkgstore_trust_envelope_payload_type(env), PKGSTORE_TRUST_TYPE_MANIFEST);
    assert_int_equal(verify(0, root, m, &env, 1), 1);
    pkgstore_trust_envelope_free(env);
    pkgstore_manifest_free(m);
    pkgstore_trust_root_free(root);
    pkgstore_trust_key_free(a);
}

/* The signature is Ed25519 over DSSE's PAE of the payload type and the
 * canonical manifest bytes, checked here with EVP directly. */
static void test_trust__signature_is_over_dsse_pae(void **state)
{
    (void)state;
    pkgstore_trust_key *a = seeded_key(1);
    pkgstore_manifest *m = sample_manifest("otelcol", "0.98.0");
    char *env_text = NULL;
    size_t env_len = 0, len = 0;
    assert_int_equal(pkgstore_trust_manifest_sign(&env_text, &env_len, a, m), 0);
    char *body = canonical(&len, m);
    char *pae = malloc(len + 128);
    int head = sprintf(pae, "DSSEv1 %zu %s %zu ", strlen(PKGSTORE_TRUST_TYPE_MANIFEST),
                       PKGSTORE_TRUST_TYPE_MANIFEST, len);
    memcpy(pae + head, body, len);

    char *b64 = strstr(env_text, "\"signature\":\"") + 13;
    unsigned char sig[66];
    assert_int_equal(EVP_DecodeBlock(sig, (unsigned char *)b64, 88), 66);
    unsigned char seed[32];
    memset(seed, 1, sizeof(seed));
    EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey), 1);
    assert_int_equal(EVP_DigestVerify(ctx, sig, 64, (unsigned char *)pae, (size_t)head + len), 1);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    free(pae);
    pkgstore_free(body);
    pkgstore_free(env_text);
    pkgstore_manifest_free(m);
    pkgstore_trust_key_free(a);
}

static void test_trust__envelope_canonical_bytes_are_pinned(void **state)
{
    (void)state;
    pkgstore_trust_key *a = seeded_key(1);
    pkgstore_manifest *m = sample_manifest("otelcol", "0.98.0");
    char *text = NULL, *again = NULL, digest[PKGSTORE_DIGEST_STR_SIZE], head[512];
    size_t len = 0, again_len = 0;
    pkgstore_digest manifest_digest;
    pkgstore_trust_envelope *env = NULL;
    assert_int_equal(pkgstore_trust_manifest_sign(&text, &len, a, m), 0);
    assert_int_equal(pkgstore_manifest_digest(&manifest_digest, m), 0);
    pkgstore_digest_format(digest, &manifest_digest);
    snprintf(
        head, sizeof(head),
        "{\"keyid\":\"%s\",\"payloadDigest\":\"%s\",\"payloadType\":\"" PKGSTORE_TRUST_TYPE_MANIFEST
        "\",\"schemaVersion\":1,\"signature\":\"",
        pkgstore_trust_key_id(a), digest);
    assert_int_equal(strncmp(text, head, strlen(head)), 0);
    assert_int_equal(len, strlen(head) + 88 + 2);
    assert_string_equal(text + len - 2, "\"}");
    /* parse, serialize: the same bytes */
    assert_int_equal(pkgstore_trust_envelope_parse(&env, text, len), 0);
    assert_int_equal(pkgstore_trust_envelope_serialize(&again, &again_len, env), 0);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, text, len);
    pkgstore_digest whole;
    char whole_text[PKGSTORE_DIGEST_STR_SIZE];
    assert_int_equal(pkgstore_digest_buffer(&whole, text, len), 0);
    pkgstore_digest_format(whole_text, &whole);
    /* Ed25519 signatures are deterministic: the whole document is pinned */
    assert_string_equal(whole_text,
                        "sha256:f3312fe35f4273c37b70bf44bc8de46d653eaf576007891841b4096ba7521473");
    pkgstore_free(again);
    pkgstore_free(text);
    pkgstore_trust_envelope_free(env);
    pkgstore_manifest_free(m);
    pkgstore_trust_key_free(a);
}

static void test_trust__unknown_key_does_not_count(void **state)
{
    (void)state;
    pkgstore_trust_key *a = seeded_key(1), *stranger = seeded_key(9);
    pkgstore_trust_root *root = make_root(1, 1, &a, 1, &a, 1);
    pkgstore_manifest *m = sample_manifest("otelcol", "0.98.0");
    pkgstore_trust_envelope *env = sign_manifest(stranger, m);
    assert_int_equal(verify(PKGSTORE_EDENIED, root, m, &env, 1), 0);
    expect_detail("otelcol 0.98.0: 0 valid signatures, 1 required");
    expect_detail("unknown key");
    /* no signature at all */
    assert_int_equal(verify(PKGSTORE_EDENIED, root, m, NULL, 0), 0);
    pkgstore_trust_envelope_free(env);
    pkgstore_manifest_free(m);
    pkgstore_trust_root_free(root);
    pkgstore_trust_key_free(a);
    pkgstore_trust_key_free(stranger);
}

static void test_trust__below_threshold_and_duplicate_key_counted_once(void **state)
{
    (void)state;
    pkgstore_trust_key *keys[3] = {seeded_key(1), seeded_key(2), seeded_key(3)};
    pkgstore_trust_root *root = make_root(1, 2, keys, 3, keys, 2);
    pkgstore_manifest *m = sample_manifest("otelcol", "0.98.0");
    pkgstore_trust_envelope *envs[3] = {sign_manifest(keys[0], m), sign_manifest(keys[0], m),
                                        sign_manifest(keys[2], m)};
    assert_int_equal(verify(PKGSTORE_EDENIED, root, m, envs, 1), 1);
    expect_detail("1 valid signature, 2 required");
    /* the same key twice is one key */
    assert_int_equal(verify(PKGSTORE_EDENIED, root, m, envs, 2), 1);
    expect_detail("counted once");
    /* two distinct keys reach it, whatever else is present */
    assert_int_equal(verify(0, root, m, envs, 3), 2);
    for (int i = 0; i < 3; i++) {
        pkgstore_trust_envelope_free(envs[i]);
        pkgstore_trust_key_free(keys[i]);
    }
    pkgstore_manifest_free(m);
    pkgstore_trust_root_free(root);
}

/* One leaked key with threshold 2: the attacker signs with it and with as
 * many keys of their own as they like, and still falls short. */
static void test_trust__one_compromised_key_with_threshold_two(void **state)
{
    (void)state;
    pkgstore_trust_key *keys[2] = {seeded_key(1), seeded_key(2)};
    pkgstore_trust_key *own[2] = {seeded_key(20), seeded_key(21)};
    pkgstore_trust_root *root = make_root(1, 2, keys, 2, keys, 2);
    pkgstore_manifest *evil = sample_manifest("otelcol", "6.6.6");
    pkgstore_trust_envelope *envs[4] = {sign_manifest(keys[0], evil), sign_manifest(own[0], evil),
                                        sign_manifest(own[1], evil), sign_manifest(keys[0], evil)};
    assert_int_equal(verify(PKGSTORE_EDENIED, root, evil, envs, 4), 1);
    /* nor can it rotate the root to keys it holds */
    pkgstore_trust_key *evil_keys[2] = {keys[0], own[0]};
    pkgstore_trust_key *evil_signers[3] = {keys[0], own[0], own[1]};
    pkgstore_trust_root *next = make_root(2, 1, evil_keys, 2, evil_signers, 3);
    assert_int_equal(pkgstore_trust_root_verify(next, root), PKGSTORE_EDENIED);
    expect_detail("1 valid signature by the trusted root's keys, 2 required");
    for (int i = 0; i < 4; i++)
        pkgstore_trust_envelope_free(envs[i]);
    for (int i = 0; i < 2; i++) {
        pkgstore_trust_key_free(keys[i]);
        pkgstore_trust_key_free(own[i]);
    }
    pkgstore_manifest_free(evil);
    pkgstore_trust_root_free(root);
    pkgstore_trust_root_free(next);
}

static void test_trust__manifest_changed_after_signing(void **state)
{
    (void)state;
    pkgstore_trust_key *a = seeded_key(1);
    pkgstore_trust_root *root = make_root(1, 1, &a, 1, &a, 1);
    pkgstore_manifest *m = sample_manifest("otelcol", "0.98.0");
    pkgstore_trust_envelope *env = sign_manifest(a, m);
    /* the artifact's digest swapped for another blob */
    pkgstore_artifact swapped = *pkgstore_manifest_artifact(m, 0);
    assert_int_equal(pkgstore_digest_parse(&swapped.digest, D2), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &swapped), 1);
    assert_int_equal(verify(PKGSTORE_EDENIED, root, m, &env, 1), 0);
    expect_detail("signs another manifest");

    /* an envelope edited to name the new digest still fails its signature */
    char *text = NULL, *forged = NULL, digest[PKGSTORE_DIGEST_STR_SIZE];
    size_t len = 0;
    pkgstore_digest changed;
    pkgstore_trust_envelope *forged_env = NULL;
    assert_int_equal(pkgstore_trust_envelope_serialize(&text, &len, env), 0);
    assert_int_equal(pkgstore_manifest_digest(&changed, m), 0);
    pkgstore_digest_format(digest, &changed);
    forged = strdup(text);
    char *at = strstr(forged, "sha256:");
    memcpy(at, digest, strlen(digest));
    assert_int_equal(pkgstore_trust_envelope_parse(&forged_env, forged, len), 0);
    assert_int_equal(verify(PKGSTORE_EDENIED, root, m, &forged_env, 1), 0);
    expect_detail("signature does not verify");

    free(forged);
    pkgstore_free(text);
    pkgstore_trust_envelope_free(forged_env);
    pkgstore_trust_envelope_free(env);
    pkgstore_manifest_free(m);
    pkgstore_trust_root_free(root);
    pkgstore_trust_key_free(a);
}

static void test_trust__only_canonical_manifest_bytes_verify(void **state)
{
    (void)state;
    pkgstore_trust_key *a = seeded_key(1);
    pkgstore_trust_root *root = make_root(1, 1, &a, 1, &a, 1);
    pkgstore_manifest *m = sample_manifest("otelcol", "0.98.0"), *out = NULL;
    pkgstore_trust_envelope *env = sign_manifest(a, m);
    char *pretty = NULL;
    size_t len = 0;
    assert_int_equal(pkgstore_manifest_serialize(&pretty, &len, m, PKGSTORE_MANIFEST_PRETTY), 0);
    assert_int_equal(pkgstore_trust_manifest_verify(&out, NULL, root, pretty, len, &env, 1),
                     PKGSTORE_EINVALID);
    expect_detail("not in canonical form");
    assert_null(out);
    assert_int_equal(pkgstore_trust_manifest_verify(&out, NULL, root, "{}", 2, NULL, 0),
                     PKGSTORE_EINVALID);
    pkgstore_free(pretty);
    pkgstore_trust_envelope_free(env);
    pkgstore_manifest_free(m);
    pkgstore_trust_root_free(root);
    pkgstore_trust_key_free(a);
}

static void expect_envelope_error(const char *text, int code, const char *want)
{
    pkgstore_trust_envelope *env = (pkgstore_trust_envelope *)1;
    int rc = pkgstore_trust_envelope_parse(&env, text, strlen(text));
    if (rc != code)
        fail_msg("parse gave %d (%s), wanted %d for %s", rc, pkgstore_error_detail(), code, text);
    assert_null(env);
    if (want)
        expect_detail(want);
}

static void test_trust__garbage_truncated_and_wrong_type_signatures(void **state)
{
    (void)state;
    pkgstore_trust_key *a = seeded_key(1);
    pkgstore_trust_root *root = make_root(1, 1, &a, 1, &a, 1);
    pkgstore_manifest *m = sample_manifest("otelcol", "0.98.0");
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(pkgstore_trust_manifest_sign(&text, &len, a, m), 0);

    /* every truncation is refused */
    for (size_t cut = 0; cut < len; cut++) {
        pkgstore_trust_envelope *env = (pkgstore_trust_envelope *)1;
        assert_int_equal(pkgstore_trust_envelope_parse(&env, text, cut), PKGSTORE_EINVALID);
        assert_null(env);
    }
    expect_envelope_error("garbage", PKGSTORE_EINVALID, "envelope: not valid JSON");
    expect_envelope_error("[]", PKGSTORE_EINVALID, "not a JSON object");
    expect_envelope_error("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
                          PKGSTORE_ELIMIT, "nested deeper");

    char *mutated = strdup(text);
    char *sig = strstr(mutated, "\"signature\":\"") + 13;
    /* a signature that is not base64, too short, or not canonical base64 */
    sig[0] = '!';
    expect_envelope_error(mutated, PKGSTORE_EINVALID, "signature: not");
    strcpy(mutated, text);
    sig = strstr(mutated, "\"signature\":\"") + 13;
    memmove(sig + 4, sig + 8, strlen(sig + 8) + 1);
    expect_envelope_error(mutated, PKGSTORE_EINVALID, "signature: not base64 of 64 bytes");
    strcpy(mutated, text);
    sig = strstr(mutated, "\"signature\":\"") + 13;
    sig[85] = sig[85] == 'A' ? 'B' : 'A'; /* last char before "==": non-zero padding bits */
    {
        pkgstore_trust_envelope *env = NULL;
        int rc = pkgstore_trust_envelope_parse(&env, mutated, strlen(mutated));
        if (rc == 0) {
            /* the bits were significant: then it is a wrong signature */
            assert_int_equal(verify(PKGSTORE_EDENIED, root, m, &env, 1), 0);
            expect_detail("signature does not verify");
            pkgstore_trust_envelope_free(env);
        } else {
            assert_int_equal(rc, PKGSTORE_EINVALID);
        }
    }
    /* a flipped signature bit */
    strcpy(mutated, text);
    sig = strstr(mutated, "\"signature\":\"") + 13;
    sig[10] = sig[10] == 'A' ? 'B' : 'A';
    {
        pkgstore_trust_envelope *env = NULL;
        assert_int_equal(pkgstore_trust_envelope_parse(&env, mutated, strlen(mutated)), 0);
        assert_int_equal(verify(PKGSTORE_EDENIED, root, m, &env, 1), 0);
        expect_detail("signature does not verify");
        pkgstore_trust_envelope_free(env);
    }
    /* another payload type: a root signature is no manifest signature */
    free(mutated);
    mutated = malloc(len + 64);
    char *type = strstr(text, PKGSTORE_TRUST_TYPE_MANIFEST);
    size_t head = (size_t)(type - text);
    memcpy(mutated, text, head);
    strcpy(mutated + head, PKGSTORE_TRUST_TYPE_ROOT);
    strcat(mutated, type + strlen(PKGSTORE_TRUST_TYPE_MANIFEST));
    {
        pkgstore_trust_envelope *env = NULL;
        assert_int_equal(pkgstore_trust_envelope_parse(&env, mutated, strlen(mutated)), 0);
        assert_int_equal(verify(PKGSTORE_EDENIED, root, m, &env, 1), 0);
        expect_detail("not a manifest signature");
        pkgstore_trust_envelope_free(env);
    }
    strcpy(mutated + head, "application/json");
    strcat(mutated, type + strlen(PKGSTORE_TRUST_TYPE_MANIFEST));
    expect_envelope_error(mutated, PKGSTORE_EINVALID, "payloadType: not a pkgstore payload type");

    expect_envelope_error("{\"keyid\":\"x\"}", PKGSTORE_EINVALID, "schemaVersion: missing");
    expect_envelope_error("{\"schemaVersion\":2}", PKGSTORE_EUNSUPPORTED, "schemaVersion: 2");
    expect_envelope_error("{\"schemaVersion\":1,\"extra\":1}", PKGSTORE_EINVALID,
                          "extra: unknown field");
    expect_envelope_error("{\"schemaVersion\":1,\"schemaVersion\":1}", PKGSTORE_EINVALID,
                          "duplicate");
    expect_envelope_error("{\"schemaVersion\":1,\"keyid\":\"ABC\"}", PKGSTORE_EINVALID,
                          "keyid: not 64 lower-case hex");

    free(mutated);
    pkgstore_free(text);
    pkgstore_manifest_free(m);
    pkgstore_trust_root_free(root);
    pkgstore_trust_key_free(a);
}

static void test_trust__mix_and_match_is_caught(void **state)
{
    (void)state;
    pkgstore_manifest *m = sample_manifest("otelcol", "0.98.0");
    assert_int_equal(
        pkgstore_trust_manifest_match(m, "otelcol", "0.98.0", PKGSTORE_TYPE_PRIMARY, "linux/arm64"),
        0);
    assert_int_equal(
        pkgstore_trust_manifest_match(m, "otelcol", "v0.98.0", PKGSTORE_TYPE_PRIMARY, NULL), 0);
    assert_int_equal(
        pkgstore_trust_manifest_match(m, "otelcol-contrib", "0.98.0", PKGSTORE_TYPE_PRIMARY, NULL),
        PKGSTORE_EDENIED);
    expect_detail("offered otelcol-contrib, but the signed manifest is of otelcol");
    assert_int_equal(
        pkgstore_trust_manifest_match(m, "otelcol", "0.99.0", PKGSTORE_TYPE_PRIMARY, NULL),
        PKGSTORE_EDENIED);
    expect_detail("offered 0.99.0, but the signed manifest is 0.98.0");
    assert_int_equal(
        pkgstore_trust_manifest_match(m, "otelcol", "0.98.0+build2", PKGSTORE_TYPE_PRIMARY, NULL),
        PKGSTORE_EDENIED);
    assert_int_equal(
        pkgstore_trust_manifest_match(m, "otelcol", "0.98.0", PKGSTORE_TYPE_ADDON, NULL),
        PKGSTORE_EDENIED);
    expect_detail("offered as addon, but signed as primary");
    assert_int_equal(pkgstore_trust_manifest_match(m, "otelcol", "0.98.0", PKGSTORE_TYPE_PRIMARY,
                                                   "darwin/arm64"),
                     PKGSTORE_EDENIED);
    expect_detail("offered for darwin/arm64");
    assert_int_equal(
        pkgstore_trust_manifest_match(m, "otelcol", "garbage", PKGSTORE_TYPE_PRIMARY, NULL),
        PKGSTORE_EDENIED);
    pkgstore_manifest_free(m);
}

/* ------------------------------------------------------------------ roots */

static void test_trust__root_canonical_bytes_are_pinned(void **state)
{
    (void)state;
    pkgstore_trust_key *a = seeded_key(1), *b = seeded_key(2);
    pkgstore_trust_root *root = NULL, *parsed = NULL;
    char *text = NULL, *again = NULL, b64a[45], b64b[45], expected[1024];
    size_t len = 0, again_len = 0;
    unsigned char raw[32];
    size_t raw_len = 32;
    unsigned char seed[32];

    assert_int_equal(pkgstore_trust_root_new(&root, 3), 0);
    assert_int_equal(pkgstore_trust_root_set_created(root, CREATED), 0);
    /* non-ASCII, a quote and a backslash in a key's name */
    assert_int_equal(
        pkgstore_trust_root_add_key(root, a, "Z\xc3\xbcrich \xe2\x80\x94 \xe9\x8d\xb5 \"q\" \\"),
        0);
    assert_int_equal(pkgstore_trust_root_add_key(root, b, NULL), 0);
    assert_int_equal(pkgstore_trust_root_add_key(root, a, NULL), PKGSTORE_EEXISTS);
    assert_int_equal(pkgstore_trust_root_add_key(root, b, "bad \xff"), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_trust_root_set_threshold(root, 2), 0);
    assert_int_equal(pkgstore_trust_root_sign(root, a), 0);
    assert_int_equal(pkgstore_trust_root_sign(root, b), 0);
    assert_int_equal(pkgstore_trust_root_sign(root, a), 0); /* replaces a's */
    assert_int_equal(pkgstore_trust_root_signature_count(root), 2);
    {
        const char *first = pkgstore_trust_root_signature_keyid(root, 0);
        const char *second = pkgstore_trust_root_signature_keyid(root, 1);
        assert_non_null(first);
        assert_non_null(second);
        assert_string_not_equal(first, second);
        assert_true(strcmp(first, pkgstore_trust_key_id(a)) == 0 ||
                    strcmp(first, pkgstore_trust_key_id(b)) == 0);
        assert_true(strcmp(second, pkgstore_trust_key_id(a)) == 0 ||
                    strcmp(second, pkgstore_trust_key_id(b)) == 0);
        assert_null(pkgstore_trust_root_signature_keyid(root, 2));
        assert_null(pkgstore_trust_root_signature_keyid(NULL, 0));
    }
    assert_int_equal(pkgstore_trust_root_serialize(&text, &len, root), 0);

    for (int k = 0; k < 2; k++) {
        memset(seed, k + 1, sizeof(seed));
        EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
        raw_len = 32;
        assert_int_equal(EVP_PKEY_get_raw_public_key(pkey, raw, &raw_len), 1);
        EVP_EncodeBlock((unsigned char *)(k ? b64b : b64a), raw, 32);
        EVP_PKEY_free(pkey);
    }
    snprintf(
        expected, sizeof(expected),
        "\"signed\":{\"created\":\"2026-12-03T10:00:00Z\",\"keys\":[{\"keyid\":\"%s\","
        "\"name\":\"Z\xc3\xbcrich \xe2\x80\x94 \xe9\x8d\xb5 \\\"q\\\" \\\\\",\"public\":\"%s\"},"
        "{\"keyid\":\"%s\",\"public\":\"%s\"}],\"schemaVersion\":1,\"threshold\":2,"
        "\"type\":\"root\",\"version\":3}}",
        pkgstore_trust_key_id(a), b64a, pkgstore_trust_key_id(b), b64b);
    assert_int_equal(strncmp(text, "{\"signatures\":[{\"keyid\":\"", 25), 0);
    assert_true(len > strlen(expected));
    assert_string_equal(text + len - strlen(expected), expected);

    assert_int_equal(pkgstore_trust_root_parse(&parsed, text, len), 0);
    assert_int_equal(pkgstore_trust_root_verify(parsed, NULL), 0);
    assert_int_equal(pkgstore_trust_root_version(parsed), 3);
    assert_int_equal(pkgstore_trust_root_threshold(parsed), 2);
    assert_int_equal(pkgstore_trust_root_created(parsed), CREATED);
    assert_int_equal(pkgstore_trust_root_key_count(parsed), 2);
    const char *keyid = NULL, *name = NULL;
    assert_int_equal(pkgstore_trust_root_key(&keyid, &name, parsed, 0), 0);
    assert_string_equal(keyid, pkgstore_trust_key_id(a));
    assert_string_equal(name, "Z\xc3\xbcrich \xe2\x80\x94 \xe9\x8d\xb5 \"q\" \\");
    assert_int_equal(pkgstore_trust_root_key(&keyid, &name, parsed, 2), PKGSTORE_ENOTFOUND);
    assert_int_equal(pkgstore_trust_root_serialize(&again, &again_len, parsed), 0);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, text, len);

    /* \u escapes in the input are the same text: same canonical bytes,
     * still verified */
    char *escaped = strdup(text);
    char *u = strstr(escaped, "Z\xc3\xbc");
    assert_non_null(u);
    size_t esc_len = len - 2 + 6;
    char *spelled = malloc(esc_len + 1);
    size_t at = (size_t)(u - escaped) + 1;
    memcpy(spelled, escaped, at);
    memcpy(spelled + at, "\\u00fc", 6);
    memcpy(spelled + at + 6, escaped + at + 2, len - at - 2 + 1);
    pkgstore_trust_root *from_escaped = NULL;
    assert_int_equal(pkgstore_trust_root_parse(&from_escaped, spelled, esc_len), 0);
    assert_int_equal(pkgstore_trust_root_verify(from_escaped, NULL), 0);

    pkgstore_digest whole;
    char whole_text[PKGSTORE_DIGEST_STR_SIZE];
    assert_int_equal(pkgstore_digest_buffer(&whole, text, len), 0);
    pkgstore_digest_format(whole_text, &whole);
    /* Ed25519 signatures are deterministic: the whole document is pinned */
    assert_string_equal(whole_text,
                        "sha256:a323a3e64812f4e965b973bd67d7a466c565b4d06fb82446c2554d4b13f58cc3");

    free(spelled);
    free(escaped);
    pkgstore_trust_root_free(from_escaped);
    pkgstore_free(again);
    pkgstore_free(text);
    pkgstore_trust_root_free(parsed);
    pkgstore_trust_root_free(root);
    pkgstore_trust_key_free(a);
    pkgstore_trust_key_free(b);
}

static void test_trust__root_threshold_of_its_own_keys(void **state)
{
    (void)state;
    pkgstore_trust_key *keys[3] = {seeded_key(1), seeded_key(2), seeded_key(3)};
    pkgstore_trust_root *ok = make_root(1, 2, keys, 3, keys + 1, 2);
    pkgstore_trust_root *short_root = make_root(1, 2, keys, 3, keys, 1);
    assert_int_equal(pkgstore_trust_root_verify(ok, NULL), 0);
    assert_int_equal(pkgstore_trust_root_verify(short_root, NULL), PKGSTORE_EDENIED);
    expect_detail("root version 1: 1 valid signature by its own keys, 2 required");

    /* content changed after signing: the parsed root no longer verifies */
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(pkgstore_trust_root_serialize(&text, &len, ok), 0);
    char *edited = strstr(text, "\"threshold\":2");
    edited[12] = '1';
    pkgstore_trust_root *parsed = NULL;
    assert_int_equal(pkgstore_trust_root_parse(&parsed, text, len), 0);
    assert_int_equal(pkgstore_trust_root_verify(parsed, NULL), PKGSTORE_EDENIED);
    expect_detail("signature does not verify");

    pkgstore_free(text);
    pkgstore_trust_root_free(parsed);
    pkgstore_trust_root_free(ok);
    pkgstore_trust_root_free(short_root);
    for (int i = 0; i < 3; i++)
        pkgstore_trust_key_free(keys[i]);
}

static void test_trust__root_rotation_rule(void **state)
{
    (void)state;
    pkgstore_trust_key *a = seeded_key(1), *b = seeded_key(2), *c = seeded_key(3),
                       *d = seeded_key(4);
    pkgstore_trust_key *old_keys[2] = {a, b}, *new_keys[2] = {b, c};
    pkgstore_trust_root *v1 = make_root(1, 2, old_keys, 2, old_keys, 2);

    /* a and b (old threshold) and b and c (new threshold): adopted */
    pkgstore_trust_key *all[3] = {a, b, c};
    pkgstore_trust_root *v2 = make_root(2, 2, new_keys, 2, all, 3);
    assert_int_equal(pkgstore_trust_root_verify(v2, v1), 0);

    /* signed by too few old keys: only b of the old root */
    pkgstore_trust_root *v2_few_old = make_root(2, 2, new_keys, 2, new_keys, 2);
    assert_int_equal(pkgstore_trust_root_verify(v2_few_old, v1), PKGSTORE_EDENIED);
    expect_detail("1 valid signature by the trusted root's keys, 2 required");

    /* old keys agree but the new key holders did not: c has not signed */
    pkgstore_trust_root *v2_few_new = make_root(2, 2, new_keys, 2, old_keys, 2);
    assert_int_equal(pkgstore_trust_root_verify(v2_few_new, v1), PKGSTORE_EDENIED);
    expect_detail("by its own keys, 2 required");

    /* not newer: a replay of the same or an older version */
    pkgstore_trust_root *v1_again = make_root(1, 2, new_keys, 2, all, 3);
    assert_int_equal(pkgstore_trust_root_verify(v1_again, v1), PKGSTORE_EDENIED);
    expect_detail("not newer than the trusted version 1");
    assert_int_equal(pkgstore_trust_root_verify(v1, v2), PKGSTORE_EDENIED);

    /* the next rotation is judged by v2's keys, no longer a's */
    pkgstore_trust_key *by_a_b[2] = {a, b}, *v3_keys[2] = {c, d}, *v3_signers[3] = {b, c, d};
    pkgstore_trust_key *a_b_c_d[4] = {a, b, c, d};
    pkgstore_trust_root *v3_old = make_root(3, 2, v3_keys, 2, by_a_b, 2);
    assert_int_equal(pkgstore_trust_root_verify(v3_old, v2), PKGSTORE_EDENIED);
    pkgstore_trust_root *v3 = make_root(3, 2, v3_keys, 2, v3_signers, 3);
    assert_int_equal(pkgstore_trust_root_verify(v3, v2), 0);
    (void)a_b_c_d;

    /* a manifest signed by the rotated-out key a counts no more */
    pkgstore_manifest *m = sample_manifest("otelcol", "1.0.0");
    pkgstore_trust_envelope *envs[2] = {sign_manifest(a, m), sign_manifest(b, m)};
    assert_int_equal(verify(0, v1, m, envs, 2), 2);
    assert_int_equal(verify(PKGSTORE_EDENIED, v2, m, envs, 2), 1);

    pkgstore_trust_envelope_free(envs[0]);
    pkgstore_trust_envelope_free(envs[1]);
    pkgstore_manifest_free(m);
    pkgstore_trust_root_free(v1);
    pkgstore_trust_root_free(v2);
    pkgstore_trust_root_free(v2_few_old);
    pkgstore_trust_root_free(v2_few_new);
    pkgstore_trust_root_free(v1_again);
    pkgstore_trust_root_free(v3_old);
    pkgstore_trust_root_free(v3);
    pkgstore_trust_key_free(a);
    pkgstore_trust_key_free(b);
    pkgstore_trust_key_free(c);
    pkgstore_trust_key_free(d);
}

static void expect_root_error(const char *text, int code, const char *want)
{
    pkgstore_trust_root *root = (pkgstore_trust_root *)1;
    int rc = pkgstore_trust_root_parse(&root, text, strlen(text));
    if (rc != code)
        fail_msg("parse gave %d (%s), wanted %d for %s", rc, pkgstore_error_detail(), code, text);
    assert_null(root);
    if (want)
        expect_detail(want);
}

/* root_text with the first from replaced by to */
static char *replace(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    assert_non_null(at);
    char *out = malloc(strlen(text) + strlen(to) + 1);
    size_t head = (size_t)(at - text);
    memcpy(out, text, head);
    strcpy(out + head, to);
    strcat(out, at + strlen(from));
    return out;
}

static void test_trust__root_parse_refuses_bad_roots(void **state)
{
    (void)state;
    pkgstore_trust_key *keys[2] = {seeded_key(1), seeded_key(2)};
    pkgstore_trust_root *root = make_root(1, 2, keys, 2, keys, 2);
    char *text = NULL, *bad;
    size_t len = 0;
    assert_int_equal(pkgstore_trust_root_serialize(&text, &len, root), 0);

    for (size_t cut = 0; cut < len; cut += 7) {
        char *prefix = strndup(text, cut);
        expect_root_error(prefix, PKGSTORE_EINVALID, NULL);
        free(prefix);
    }
    expect_root_error("{}", PKGSTORE_EINVALID, "signatures: missing");
    expect_root_error("{\"signatures\":[],\"signed\":[]}", PKGSTORE_EINVALID,
                      "signed: not an object");
    struct {
        const char *from, *to;
        int code;
        const char *want;
    } cases[] = {
        {"\"threshold\":2", "\"threshold\":3", PKGSTORE_EINVALID, "signed.threshold"},
        {"\"threshold\":2", "\"threshold\":0", PKGSTORE_EINVALID, "signed.threshold"},
        {"\"threshold\":2", "\"threshold\":\"2\"", PKGSTORE_EINVALID, "signed.threshold"},
        {"\"version\":1", "\"version\":0", PKGSTORE_EINVALID, "signed.version"},
        {"\"version\":1", "\"version\":-1", PKGSTORE_EINVALID, "signed.version"},
        {"\"type\":\"root\"", "\"type\":\"revocation\"", PKGSTORE_EINVALID, "signed.type"},
        {"\"schemaVersion\":1", "\"schemaVersion\":2", PKGSTORE_EUNSUPPORTED,
         "signed.schemaVersion"},
        {"\"schemaVersion\":1", "\"schemaVersion\":1,\"expires\":0", PKGSTORE_EINVALID,
         "signed.expires: unknown field"},
        {"\"created\":\"2026-12-03T10:00:00Z\"", "\"created\":\"yesterday\"", PKGSTORE_EINVALID,
         "signed.created"},
        {"\"keys\":[", "\"keys\":[1,", PKGSTORE_EINVALID, "signed.keys[0]: not an object"},
        {"\"public\":\"", "\"public\":\"A", PKGSTORE_EINVALID, "signed.keys[0].public"},
        {"\"keys\":[{\"keyid\":\"", "\"keys\":[{\"keyid\":\"0", PKGSTORE_EINVALID,
         "signed.keys[0].keyid"},
        {"\"keys\":[{\"keyid\":\"3", "\"keys\":[{\"keyid\":\"4", PKGSTORE_EINVALID,
         "signed.keys[0].keyid: not the id of its public key"},
        {"\"signatures\":[{\"keyid\":\"", "\"signatures\":[{\"keyid\":\"x", PKGSTORE_EINVALID,
         "signatures[0].keyid"},
        {"\"signature\":\"", "\"signature\":\"==", PKGSTORE_EINVALID, "signatures[0].signature"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bad = replace(text, cases[i].from, cases[i].to);
        expect_root_error(bad, cases[i].code, cases[i].want);
        free(bad);
    }
    /* a key listed twice */
    const char *first = strstr(text, "\"keys\":[") + 8;
    const char *end = strstr(first, "},") + 1;
    char *dup_entry = strndup(first, (size_t)(end - first));
    char *with_dup = malloc(strlen(dup_entry) + 16);
    sprintf(with_dup, "\"keys\":[%s,", dup_entry);
    bad = replace(text, "\"keys\":[", with_dup);
    expect_root_error(bad, PKGSTORE_EINVALID, "key listed twice");
    free(bad);
    free(with_dup);
    free(dup_entry);
    /* limits */
    char *big = malloc(PKGSTORE_TRUST_DOCUMENT_SIZE_MAX + 2);
    memset(big, ' ', PKGSTORE_TRUST_DOCUMENT_SIZE_MAX + 1);
    big[PKGSTORE_TRUST_DOCUMENT_SIZE_MAX + 1] = '\0';
    expect_root_error(big, PKGSTORE_ELIMIT, "more than");
    free(big);

    pkgstore_free(text);
    pkgstore_trust_root_free(root);
    pkgstore_trust_key_free(keys[0]);
    pkgstore_trust_key_free(keys[1]);
}

static void test_trust__root_builder_refuses_incomplete_roots(void **state)
{
    (void)state;
    pkgstore_trust_key *a = seeded_key(1);
    pkgstore_trust_root *root = NULL;
    char *text = NULL;
    assert_int_equal(pkgstore_trust_root_new(&root, 0), PKGSTORE_EINVALID);
    assert_null(root);
    assert_int_equal(pkgstore_trust_root_new(&root, 1), 0);
    assert_int_equal(pkgstore_trust_root_sign(root, a), PKGSTORE_EINVALID);
    expect_detail("no keys");
    assert_int_equal(pkgstore_trust_root_serialize(&text, NULL, root), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_trust_root_add_key(root, a, NULL), 0);
    assert_int_equal(pkgstore_trust_root_set_threshold(root, 0), PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_trust_root_set_threshold(root, 2), 0);
    assert_int_equal(pkgstore_trust_root_sign(root, a), PKGSTORE_EINVALID);
    expect_detail("threshold 2 is above its 1 key");
    assert_int_equal(pkgstore_trust_root_verify(root, NULL), PKGSTORE_EINVALID);
    pkgstore_trust_root_free(root);
    pkgstore_trust_key_free(a);
}

/* ------------------------------------------------------------------ revocations */

static void test_trust__revocation_canonical_bytes_are_pinned(void **state)
{
    (void)state;
    pkgstore_trust_key *keys[2] = {seeded_key(1), seeded_key(2)};
    pkgstore_trust_root *root = make_root(1, 2, keys, 2, keys, 2);
    pkgstore_trust_revocation *rev = NULL, *parsed = NULL;
    char *text = NULL, *again = NULL;
    size_t len = 0, again_len = 0;
    static const char expected_signed[] =
        "\"signed\":{\"created\":\"2026-12-03T10:00:00Z\",\"name\":\"otelcol-contrib\","
        "\"reason\":\"crashes on arm64 \xe2\x80\x94 incident \xe2\x84\x96"
        "42 \\\"q\\\"\\n\","
        "\"schemaVersion\":1,\"type\":\"revocation\",\"version\":\"0.98.0\"}}";

    assert_int_equal(pkgstore_trust_revocation_new(&rev, "otelcol-contrib", "v0.98.0",
                                                   "crashes on arm64 \xe2\x80\x94 incident "
                                                   "\xe2\x84\x96"
                                                   "42 \"q\"\n"),
                     0);
    assert_int_equal(pkgstore_trust_revocation_set_created(rev, CREATED), 0);
    assert_int_equal(pkgstore_trust_revocation_sign(rev, keys[0]), 0);
    assert_int_equal(pkgstore_trust_revocation_serialize(&text, &len, rev), 0);
    assert_string_equal(text + len - strlen(expected_signed), expected_signed);

    assert_int_equal(pkgstore_trust_revocation_parse(&parsed, text, len), 0);
    assert_string_equal(pkgstore_trust_revocation_name(parsed), "otelcol-contrib");
    assert_string_equal(pkgstore_trust_revocation_version(parsed), "0.98.0");
    assert_int_equal(pkgstore_trust_revocation_created(parsed), CREATED);
    assert_int_equal(pkgstore_trust_revocation_signature_count(parsed), 1);
    assert_string_equal(pkgstore_trust_revocation_signature_keyid(parsed, 0),
                        pkgstore_trust_key_id(keys[0]));
    assert_null(pkgstore_trust_revocation_signature_keyid(parsed, 1));
    assert_int_equal(pkgstore_trust_revocation_serialize(&again, &again_len, parsed), 0);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, text, len);

    /* one of two keys is not enough; both are */
    assert_int_equal(pkgstore_trust_revocation_verify(parsed, root), PKGSTORE_EDENIED);
    expect_detail("revocation of otelcol-contrib 0.98.0: 1 valid signature, 2 required");
    assert_int_equal(pkgstore_trust_revocation_sign(rev, keys[1]), 0);
    assert_int_equal(pkgstore_trust_revocation_verify(rev, root), 0);

    pkgstore_digest whole;
    char whole_text[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_free(text);
    assert_int_equal(pkgstore_trust_revocation_serialize(&text, &len, rev), 0);
    assert_int_equal(pkgstore_digest_buffer(&whole, text, len), 0);
    pkgstore_digest_format(whole_text, &whole);
    /* Ed25519 signatures are deterministic: the whole document is pinned */
    assert_string_equal(whole_text,
                        "sha256:80a86641ab5c013e2de7ab53c55135026a2240806c84063f432d38a6b9886b7d");

    /* the revoked version changed after signing */
    char *edited = replace(text, "\"version\":\"0.98.0\"", "\"version\":\"0.97.0\"");
    pkgstore_trust_revocation *tampered = NULL;
    assert_int_equal(pkgstore_trust_revocation_parse(&tampered, edited, strlen(edited)), 0);
    assert_int_equal(pkgstore_trust_revocation_verify(tampered, root), PKGSTORE_EDENIED);
    expect_detail("signature does not verify");
    pkgstore_trust_revocation_free(tampered);
    free(edited);

    pkgstore_free(text);
    pkgstore_free(again);
    pkgstore_trust_revocation_free(rev);
    pkgstore_trust_revocation_free(parsed);
    pkgstore_trust_root_free(root);
    pkgstore_trust_key_free(keys[0]);
    pkgstore_trust_key_free(keys[1]);
}

/* A root's signatures moved onto a revocation (same keys, same document
 * shape) never verify: the payload type is part of what is signed. */
static void test_trust__signatures_do_not_cross_payload_types(void **state)
{
    (void)state;
    pkgstore_trust_key *a = seeded_key(1);
    pkgstore_trust_root *root = make_root(1, 1, &a, 1, &a, 1);
    pkgstore_trust_revocation *rev = NULL, *grafted = NULL;
    char *root_text = NULL, *rev_text = NULL;
    size_t len = 0;
    assert_int_equal(pkgstore_trust_revocation_new(&rev, "otelcol", "1.0.0", NULL), 0);
    assert_int_equal(pkgstore_trust_revocation_serialize(&rev_text, &len, rev), 0);
    assert_int_equal(pkgstore_trust_root_serialize(&root_text, &len, root), 0);
    /* root's "signatures":[...] in front of the revocation's "signed" */
    const char *root_signed = strstr(root_text, ",\"signed\":");
    const char *rev_signed = strstr(rev_text, ",\"signed\":");
    char *graft = malloc(strlen(root_text) + strlen(rev_text));
    size_t head = (size_t)(root_signed - root_text);
    memcpy(graft, root_text, head);
    strcpy(graft + head, rev_signed);
    assert_int_equal(pkgstore_trust_revocation_parse(&grafted, graft, strlen(graft)), 0);
    assert_int_equal(pkgstore_trust_revocation_verify(grafted, root), PKGSTORE_EDENIED);
    expect_detail("signature does not verify");
    /* and the revocation parser refuses a root */
    pkgstore_trust_revocation *not_rev = NULL;
    assert_int_equal(pkgstore_trust_revocation_parse(&not_rev, root_text, strlen(root_text)),
                     PKGSTORE_EINVALID);
    assert_null(not_rev);
    free(graft);
    pkgstore_free(root_text);
    pkgstore_free(rev_text);
    pkgstore_trust_revocation_free(rev);
    pkgstore_trust_revocation_free(grafted);
    pkgstore_trust_root_free(root);
    pkgstore_trust_key_free(a);
}

static void test_trust__revocation_refuses_bad_input(void **state)
{
    (void)state;
    pkgstore_trust_revocation *rev = (pkgstore_trust_revocation *)1;
    assert_int_equal(pkgstore_trust_revocation_new(&rev, "Bad Name", "1.0.0", NULL),
                     PKGSTORE_EINVALID);
    assert_null(rev);
    assert_int_equal(pkgstore_trust_revocation_new(&rev, "otelcol", "1.0", NULL),
                     PKGSTORE_EINVALID);
    assert_int_equal(pkgstore_trust_revocation_new(&rev, "otelcol", "1.0.0", "bad \xc3"),
                     PKGSTORE_EINVALID);
    static const char *const bad[] = {
        "{\"signatures\":[],\"signed\":{\"created\":\"2026-12-03T10:00:00Z\",\"name\":\"otelcol\","
        "\"schemaVersion\":1,\"type\":\"revocation\",\"version\":\"v1.0.0\"}}",
        "{\"signatures\":[],\"signed\":{\"created\":\"2026-12-03T10:00:00Z\",\"name\":\"Otelcol\","
        "\"schemaVersion\":1,\"type\":\"revocation\",\"version\":\"1.0.0\"}}",
        "{\"signatures\":[],\"signed\":{\"created\":\"2026-12-03T10:00:00Z\",\"name\":\"otelcol\","
        "\"reason\":\"\",\"schemaVersion\":1,\"type\":\"revocation\",\"version\":\"1.0.0\"}}",
        "{\"signatures\":[],\"signed\":{\"created\":\"2026-12-03T10:00:00Z\",\"name\":\"otelcol\","
        "\"reason\":\"a\\u0000b\",\"schemaVersion\":1,\"type\":\"revocation\",\"version\":\"1.0."
        "0\"}}",
        "{\"signatures\":[],\"signed\":{\"name\":\"otelcol\","
        "\"schemaVersion\":1,\"type\":\"revocation\",\"version\":\"1.0.0\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rev = (pkgstore_trust_revocation *)1;
        if (pkgstore_trust_revocation_parse(&rev, bad[i], strlen(bad[i])) != PKGSTORE_EINVALID)
            fail_msg("accepted %s", bad[i]);
        assert_null(rev);
    }
    static const char good[] =
        "{\"signatures\":[],\"signed\":{\"created\":\"2026-12-03T10:00:00Z\",\"name\":\"otelcol\","
        "\"schemaVersion\":1,\"type\":\"revocation\",\"version\":\"1.0.0\"}}";
    assert_int_equal(pkgstore_trust_revocation_parse(&rev, good, strlen(good)), 0);
    assert_string_equal(pkgstore_trust_revocation_reason(rev), "");
    pkgstore_trust_revocation_free(rev);
}

/* ------------------------------------------------------------------ store */

static int remember_problem(const pkgstore_fsck_problem *problem, void *payload)
{
    char *seen = payload;
    size_t used = strlen(seen);
    snprintf(seen + used, 512 - used, "%s;", problem->path);
    return 0;
}

static void test_trust__signatures_kept_in_the_store(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    pkgstore_manifest *m = NULL;
    pkgstore_artifact a;
    pkgstore_digest blob, manifest_digest, env_digest[2];
    pkgstore_trust_key *keys[2] = {seeded_key(1), seeded_key(2)};
    pkgstore_trust_root *root = make_root(1, 2, keys, 2, keys, 2);
    pkgstore_trust_stored_signature *list = NULL;
    size_t count = 0;
    char *envs[2] = {NULL, NULL};
    size_t env_len[2];

    assert_non_null(dir);
    assert_int_equal(pkgstore_store_open(&store, dir, NULL), 0);
    assert_int_equal(pkgstore_registry_open(&reg, store), 0);
    assert_int_equal(pkgstore_store_add_buffer(&blob, store, "collector\n", 10), 0);
    memset(&a, 0, sizeof(a));
    strcpy(a.platform, "linux/amd64");
    a.digest = blob;
    a.size = 10;
    strcpy(a.format, "binary");
    assert_int_equal(pkgstore_manifest_new(&m, "otelcol", "1.0.0", PKGSTORE_TYPE_PRIMARY), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(m, &a), 0);
    assert_int_equal(pkgstore_registry_put(&manifest_digest, reg, m, 0), 0);

    uint64_t generation[3];
    assert_int_equal(pkgstore_registry_generation(&generation[0], reg), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pkgstore_trust_manifest_sign(&envs[i], &env_len[i], keys[i], m), 0);
        assert_int_equal(pkgstore_trust_signature_add(&env_digest[i], store, "otelcol", "v1.0.0",
                                                      envs[i], env_len[i]),
                         0);
    }
    /* a new signature moves the registry generation (readers that cache a
     * version's signatures by it, such as pkgstored's offers, see it) */
    assert_int_equal(pkgstore_registry_generation(&generation[1], reg), 0);
    assert_true(generation[1] > generation[0]);
    /* the same envelope again is no new record, and moves nothing */
    assert_int_equal(
        pkgstore_trust_signature_add(NULL, store, "otelcol", "1.0.0", envs[0], env_len[0]), 1);
    assert_int_equal(pkgstore_registry_generation(&generation[2], reg), 0);
    assert_int_equal(generation[2], generation[1]);
    /* not a version, another version's manifest, not canonical */
    assert_int_equal(
        pkgstore_trust_signature_add(NULL, store, "otelcol", "2.0.0", envs[0], env_len[0]),
        PKGSTORE_ENOTFOUND);
    pkgstore_manifest *other = NULL;
    assert_int_equal(pkgstore_manifest_dup(&other, m), 0);
    assert_int_equal(pkgstore_registry_put(NULL, reg, other, 0), 0);
    pkgstore_manifest_free(other);
    other = NULL;
    assert_int_equal(pkgstore_manifest_new(&other, "otelcol", "1.1.0", PKGSTORE_TYPE_PRIMARY), 0);
    assert_int_equal(pkgstore_manifest_add_artifact(other, &a), 0);
    assert_int_equal(pkgstore_registry_put(NULL, reg, other, 0), 0);
    assert_int_equal(
        pkgstore_trust_signature_add(NULL, store, "otelcol", "1.1.0", envs[0], env_len[0]),
        PKGSTORE_ECONFLICT);
    char *spaced = malloc(env_len[0] + 2);
    memcpy(spaced, envs[0], env_len[0]);
    memcpy(spaced + env_len[0], " ", 2);
    assert_int_equal(
        pkgstore_trust_signature_add(NULL, store, "otelcol", "1.0.0", spaced, env_len[0] + 1),
        PKGSTORE_EINVALID);
    free(spaced);

    /* listed, and they verify the manifest blob to threshold */
    assert_int_equal(pkgstore_trust_signatures_list(&list, &count, store, &manifest_digest), 0);
    assert_int_equal(count, 2);
    pkgstore_trust_envelope *parsed[2];
    for (size_t i = 0; i < count; i++)
        assert_int_equal(pkgstore_trust_envelope_parse(&parsed[i], list[i].data, list[i].len), 0);
    void *manifest_bytes = NULL;
    size_t manifest_len = 0;
    assert_int_equal(
        pkgstore_store_blob_read(&manifest_bytes, &manifest_len, store, &manifest_digest, 1 << 20),
        0);
    assert_int_equal(
        pkgstore_trust_manifest_verify(NULL, NULL, root, manifest_bytes, manifest_len, parsed, 2),
        0);
    for (size_t i = 0; i < count; i++)
        pkgstore_trust_envelope_free(parsed[i]);
    pkgstore_trust_signatures_free(list, count);
    pkgstore_free(manifest_bytes);

    /* gc keeps the envelopes while their records name them */
    pkgstore_gc_options opts = PKGSTORE_GC_OPTIONS_INIT;
    opts.grace_seconds = 0;
    ps_gc_set_clock_skew(60);
    assert_int_equal(pkgstore_gc_run(NULL, store, &opts), 0);
    assert_int_equal(pkgstore_store_blob_exists(store, &env_digest[0]), 1);
    assert_int_equal(pkgstore_store_blob_exists(store, &env_digest[1]), 1);
    pkgstore_fsck_report report;
    assert_int_equal(pkgstore_store_fsck(&report, store, 0, NULL, NULL), 0);
    assert_int_equal(report.missing + report.corrupt + report.stray + report.orphaned, 0);

    /* a missing envelope blob is reported by fsck under the record's path */
    char blob_path[4096], hex[PKGSTORE_DIGEST_STR_SIZE], seen[512] = "";
    pkgstore_digest_format(hex, &env_digest[1]);
    snprintf(blob_path, sizeof(blob_path), "%s/blobs/sha256/%.2s/%s", dir, hex + 7, hex + 7);
    char *saved = NULL;
    size_t saved_len = 0;
    {
        void *data = NULL;
        assert_int_equal(pkgstore_store_blob_read(&data, &saved_len, store, &env_digest[1], 4096),
                         0);
        saved = data;
    }
    assert_int_equal(unlink(blob_path), 0);
    assert_int_equal(pkgstore_store_fsck(&report, store, 0, remember_problem, seen), 0);
    assert_int_equal(report.missing, 2); /* the blob record and the signature record */
    assert_non_null(strstr(seen, "index/signatures/sha256:"));
    pkgstore_digest back;
    assert_int_equal(pkgstore_store_add_buffer(&back, store, saved, saved_len), 0);
    pkgstore_free(saved);

    /* a changed manifest (a new platform) is other bytes: its old
     * signatures go with the old manifest */
    pkgstore_artifact arm = a;
    strcpy(arm.platform, "linux/arm64");
    assert_int_equal(pkgstore_manifest_add_artifact(m, &arm), 0);
    pkgstore_digest changed_digest;
    assert_int_equal(pkgstore_registry_put(&changed_digest, reg, m, 0), 0);
    assert_int_equal(pkgstore_trust_signatures_list(&list, &count, store, &manifest_digest), 0);
    assert_int_equal(count, 0);
    assert_int_equal(
        pkgstore_trust_signature_add(NULL, store, "otelcol", "1.0.0", envs[0], env_len[0]),
        PKGSTORE_ECONFLICT);
    for (int i = 0; i < 2; i++) {
        pkgstore_free(envs[i]);
        assert_int_equal(pkgstore_trust_manifest_sign(&envs[i], &env_len[i], keys[i], m), 0);
        assert_int_equal(pkgstore_trust_signature_add(&env_digest[i], store, "otelcol", "1.0.0",
                                                      envs[i], env_len[i]),
                         0);
    }
    manifest_digest = changed_digest;

    /* removing the version drops its records; gc then takes the blobs */
    assert_int_equal(pkgstore_registry_remove(reg, "otelcol", "1.0.0"), 0);
    assert_int_equal(pkgstore_trust_signatures_list(&list, &count, store, &manifest_digest), 0);
    assert_int_equal(count, 0);
    assert_null(list);
    assert_int_equal(pkgstore_gc_run(NULL, store, &opts), 0);
    ps_gc_set_clock_skew(0);
    assert_int_equal(pkgstore_store_blob_exists(store, &env_digest[0]), 0);

    for (int i = 0; i < 2; i++) {
        pkgstore_free(envs[i]);
        pkgstore_trust_key_free(keys[i]);
    }
    pkgstore_manifest_free(m);
    pkgstore_manifest_free(other);
    pkgstore_trust_root_free(root);
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trust__key_generate_save_load),
        cmocka_unit_test(test_trust__key_id_is_sha256_of_raw_public_key),
        cmocka_unit_test(test_trust__key_parse_refuses_other_keys),
        cmocka_unit_test(test_trust__manifest_signature_verifies),
        cmocka_unit_test(test_trust__signature_is_over_dsse_pae),
        cmocka_unit_test(test_trust__envelope_canonical_bytes_are_pinned),
        cmocka_unit_test(test_trust__unknown_key_does_not_count),
        cmocka_unit_test(test_trust__below_threshold_and_duplicate_key_counted_once),
        cmocka_unit_test(test_trust__one_compromised_key_with_threshold_two),
        cmocka_unit_test(test_trust__manifest_changed_after_signing),
        cmocka_unit_test(test_trust__only_canonical_manifest_bytes_verify),
        cmocka_unit_test(test_trust__garbage_truncated_and_wrong_type_signatures),
        cmocka_unit_test(test_trust__mix_and_match_is_caught),
        cmocka_unit_test(test_trust__root_canonical_bytes_are_pinned),
        cmocka_unit_test(test_trust__root_threshold_of_its_own_keys),
        cmocka_unit_test(test_trust__root_rotation_rule),
        cmocka_unit_test(test_trust__root_parse_refuses_bad_roots),
        cmocka_unit_test(test_trust__root_builder_refuses_incomplete_roots),
        cmocka_unit_test(test_trust__revocation_canonical_bytes_are_pinned),
        cmocka_unit_test(test_trust__signatures_do_not_cross_payload_types),
        cmocka_unit_test(test_trust__revocation_refuses_bad_input),
        cmocka_unit_test(test_trust__signatures_kept_in_the_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
