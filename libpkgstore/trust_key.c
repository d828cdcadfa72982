/*
 * trust_key.c - Ed25519 keys: generate through EVP, read and write PEM
 * (PKCS#8 private, SubjectPublicKeyInfo public), the derived key id, and
 * the atomic, never-overwriting key file write (docs/trust.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "error.h"
#include "file_io.h"
#include "trust.h"

/* Never let OpenSSL prompt on the terminal for an encrypted key's
 * passphrase: the library must not touch the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* Take pkey (owned on success and failure) into a new key. */
static int key_from_pkey(pkgstore_trust_key **out, EVP_PKEY *pkey, int has_private)
{
    size_t raw_len = PS_TRUST_PUBLIC_SIZE;
    pkgstore_trust_key *key = NULL;
    int error;
    if (EVP_PKEY_id(pkey) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(pkey);
        return ps_error_set(PKGSTORE_EINVALID, "key: not an Ed25519 key");
    }
    if (!(key = calloc(1, sizeof(*key)))) {
        EVP_PKEY_free(pkey);
        return ps_error_set(PKGSTORE_ENOMEM, "key: out of memory");
    }
    key->pkey = pkey;
    key->has_private = has_private;
    if (EVP_PKEY_get_raw_public_key(pkey, key->public_raw, &raw_len) != 1 ||
        raw_len != PS_TRUST_PUBLIC_SIZE) {
        error = ps_trust_openssl_error("key: EVP_PKEY_get_raw_public_key");
        goto fail;
    }
    if ((error = ps_trust_keyid(key->keyid, key->public_raw)) < 0)
        goto fail;
    *out = key;
    return 0;
fail:
    pkgstore_trust_key_free(key);
    return error;
}

int pkgstore_trust_key_generate(pkgstore_trust_key **out)
{
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "key: no output pointer");
    *out = NULL;
    if (!(ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL)))
        return ps_trust_openssl_error("key: EVP_PKEY_CTX_new_id");
    if (EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &pkey) != 1) {
        EVP_PKEY_CTX_free(ctx);
        return ps_trust_openssl_error("key: EVP_PKEY_keygen");
    }
    EVP_PKEY_CTX_free(ctx);
    return key_from_pkey(out, pkey, 1);
}

int pkgstore_trust_key_parse(pkgstore_trust_key **out, const void *data, size_t len)
{
    static const char private_tag[] = "-----BEGIN PRIVATE KEY-----";
    static const char public_tag[] = "-----BEGIN PUBLIC KEY-----";
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    int has_private;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "key: no output pointer");
    *out = NULL;
    if (!data && len)
        return ps_error_set(PKGSTORE_EINVALID, "key: NULL data");
    if (len > PKGSTORE_TRUST_KEY_FILE_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "key: %zu bytes, more than the %d allowed", len,
                            PKGSTORE_TRUST_KEY_FILE_MAX);
    /* Decide by the PEM label, so that an encrypted key ("ENCRYPTED
     * PRIVATE KEY") or a certificate is refused by name, not misread. */
    if (len >= sizeof(private_tag) - 1 && memcmp(data, private_tag, sizeof(private_tag) - 1) == 0)
        has_private = 1;
    else if (len >= sizeof(public_tag) - 1 && memcmp(data, public_tag, sizeof(public_tag) - 1) == 0)
        has_private = 0;
    else if (len >= 11 && memcmp(data, "-----BEGIN ", 11) == 0)
        return ps_error_set(PKGSTORE_EINVALID,
                            "key: neither an unencrypted \"PRIVATE KEY\" nor a \"PUBLIC KEY\" "
                            "PEM block");
    else
        return ps_error_set(PKGSTORE_EINVALID, "key: not a PEM key");
    if (!(bio = BIO_new_mem_buf(data, (int)len)))
        return ps_error_set(PKGSTORE_ENOMEM, "key: out of memory");
    pkey = has_private ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)
                       : PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (!pkey) {
        ERR_clear_error();
        return ps_error_set(PKGSTORE_EINVALID, "key: malformed PEM %s key",
                            has_private ? "private" : "public");
    }
    return key_from_pkey(out, pkey, has_private);
}

int pkgstore_trust_key_load(pkgstore_trust_key **out, const char *path)
{
    char buf[PKGSTORE_TRUST_KEY_FILE_MAX + 1];
    struct stat st;
    size_t len = 0;
    int fd, error;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "key: no output pointer");
    *out = NULL;
    if (!path)
        return ps_error_set(PKGSTORE_EINVALID, "key: no path");
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
        return ps_error_errno(errno, "%s", path);
    if (fstat(fd, &st) < 0) {
        error = ps_error_errno(errno, "%s: fstat", path);
        close(fd);
        return error;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ps_error_set(PKGSTORE_EINVALID, "%s: not a regular file", path);
    }
    while (len < sizeof(buf)) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            error = ps_error_errno(errno, "%s: read", path);
            close(fd);
            return error;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if ((error = pkgstore_trust_key_parse(out, buf, len)) < 0) {
        OPENSSL_cleanse(buf, sizeof(buf));
        ps_error_prefix("%s", path);
        return error;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    if ((*out)->has_private && (st.st_mode & 077)) {
        pkgstore_trust_key_free(*out);
        *out = NULL;
        return ps_error_set(PKGSTORE_EDENIED,
                            "%s: private key file has mode %04o; others may read it "
                            "(chmod 600)",
                            path, (unsigned)(st.st_mode & 07777));
    }
    return 0;
}

/* Write data to path atomically and without replacing anything: a
 * temporary file beside it, fsync, link() to path (EEXIST if there is
 * one), unlink the temporary, fsync the directory. */
static int write_new_file(const char *path, const char *data, size_t len, mode_t mode)
{
    char tmp[4096], dir[4096];
    int fd = -1, error = 0;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
        return ps_error_set(PKGSTORE_EINVALID, "%s: path too long", path);
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0)
        return ps_error_errno(errno, "%s: create", tmp);
    if (fchmod(fd, mode) < 0 || ps_write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        error = ps_error_errno(errno, "%s: write", tmp);
        goto out;
    }
    if (close(fd) < 0) {
        fd = -1;
        error = ps_error_errno(errno, "%s: close", tmp);
        goto out;
    }
    fd = -1;
    if (link(tmp, path) < 0) {
        error = errno == EEXIST
                    ? ps_error_set(PKGSTORE_EEXISTS, "%s: already exists (never overwritten)", path)
                    : ps_error_errno(errno, "%s", path);
        goto out;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
        unlink(tmp);
        tmp[0] = '\0';
        if (fsync(dir_fd) < 0)
            error = ps_error_errno(errno, "%s: fsync", dir);
        close(dir_fd);
    }
out:
    if (fd >= 0)
        close(fd);
    if (tmp[0])
        unlink(tmp);
    return error;
}

static int save_pem(const pkgstore_trust_key *key, const char *path, int private_half)
{
    BIO *bio = NULL;
    char *pem = NULL;
    long pem_len;
    int error;
    if (!key || !path)
        return ps_error_set(PKGSTORE_EINVALID, "key: NULL key or path");
    if (private_half && !key->has_private)
        return ps_error_set(PKGSTORE_EINVALID, "%s: key %.16s... has no private half", path,
                            key->keyid);
    if (!(bio = BIO_new(BIO_s_mem())))
        return ps_error_set(PKGSTORE_ENOMEM, "key: out of memory");
    if ((private_half ? PEM_write_bio_PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL, NULL)
                      : PEM_write_bio_PUBKEY(bio, key->pkey)) != 1) {
        BIO_free(bio);
        return ps_trust_openssl_error("key: PEM_write_bio");
    }
    pem_len = BIO_get_mem_data(bio, &pem);
    error = write_new_file(path, pem, (size_t)pem_len, private_half ? 0600 : 0644);
    if (private_half)
        OPENSSL_cleanse(pem, (size_t)pem_len);
    BIO_free(bio);
    return error;
}

int pkgstore_trust_key_save_private(const pkgstore_trust_key *key, const char *path)
{
    return save_pem(key, path, 1);
}

int pkgstore_trust_key_save_public(const pkgstore_trust_key *key, const char *path)
{
    return save_pem(key, path, 0);
}

const char *pkgstore_trust_key_id(const pkgstore_trust_key *key)
{
    return key ? key->keyid : "";
}

int pkgstore_trust_key_has_private(const pkgstore_trust_key *key)
{
    return key && key->has_private;
}

void pkgstore_trust_key_free(pkgstore_trust_key *key)
{
    if (!key)
        return;
    EVP_PKEY_free(key->pkey);
    free(key);
}
