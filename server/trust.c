/*
 * server/trust.c - the roots of trust and the revocations pkgstored serves
 * (docs/trust.md, "The registry's part"), and --require-signatures.
 *
 * The server holds no key and decides nothing about trust for a node: it
 * keeps what admins gave it, checked as a node would check it, so that a
 * mistake is refused at the source. Both live in a directory beside the
 * store (default STORE.trust), not in the store's index: they are a few
 * small documents, read once at start and written whole, and every write
 * is a temporary file, fsync, rename and an fsync of the directory before
 * the admin is answered (no partial file, ever):
 *   root.N.json        each root.json version N the server accepted
 *   revocations.json   {"generation":G,"revocations":[<signed revocation>]}
 * One mutex guards the state; it is taken by admin writes, the trust
 * routes and, for two integers, each heartbeat (trust_summary()).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server.h"

typedef struct stored_root {
    uint64_t version;
    char *text; /* as received (canonical: checked on PUT) */
    size_t len;
    pkgstore_trust_root *root;
} stored_root;

static struct {
    pthread_mutex_t lock;
    char dir[4200];
    stored_root *roots; /* ascending version */
    size_t nroots;
    pkgstore_trust_root *pinned; /* --trust-root, or NULL */
    int require;                 /* --require-signatures */
    json_t *revocations;         /* array of objects */
    uint64_t generation;
} g_trust = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---------------------------------------------------------------- files */

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* name in g_trust.dir, replaced atomically by data. */
static int write_atomic(const char *name, const char *data, size_t len, char *err,
                        size_t err_size)
{
    char path[4400], tmp[4420];
    snprintf(path, sizeof path, "%s/%s", g_trust.dir, name);
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, err_size, "%s: %s", tmp, strerror(errno));
        return errno == ENOSPC ? PKGSTORE_ENOSPC : PKGSTORE_EIO;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        done += (size_t)n;
    }
    if (fchmod(fd, 0644) < 0 || fsync(fd) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        goto fail;
    if (fsync_dir(g_trust.dir) < 0) {
        snprintf(err, err_size, "%s: fsync: %s", g_trust.dir, strerror(errno));
        return PKGSTORE_EIO;
    }
    return 0;
fail:;
    int saved = errno;
    snprintf(err, err_size, "%s: %s", path, strerror(saved));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return saved == ENOSPC ? PKGSTORE_ENOSPC : PKGSTORE_EIO;
}

int read_whole_file(char **out, size_t *len_out, const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    /* sized by the file, not by max: a cap of 64 MiB must not cost that */
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int saved = 0;
    if (fstat(fileno(f), &st) < 0)
        saved = errno;
    else if ((uint64_t)st.st_size > max)
        saved = EFBIG;
    else if (!(buf = malloc((size_t)st.st_size + 2)))
        saved = ENOMEM;
    else if ((len = fread(buf, 1, (size_t)st.st_size + 1, f)) > max)
        saved = EFBIG; /* grew past max while read */
    else if (ferror(f))
        saved = EIO;
    fclose(f);
    if (saved) {
        free(buf);
        errno = saved;
        return -1;
    }
    buf[len] = '\0';
    *out = buf;
    *len_out = len;
    return 0;
}

/* ---------------------------------------------------------------- roots */

static const stored_root *newest_root(void)
{
    return g_trust.nroots ? &g_trust.roots[g_trust.nroots - 1] : NULL;
}

/* Keep text (stolen) as a root in memory, in version order. */
static int roots_insert(pkgstore_trust_root *root, char *text, size_t len)
{
    stored_root *grown = realloc(g_trust.roots, (g_trust.nroots + 1) * sizeof *grown);
    if (!grown)
        return PKGSTORE_ENOMEM;
    g_trust.roots = grown;
    uint64_t version = pkgstore_trust_root_version(root);
    size_t at = g_trust.nroots;
    while (at > 0 && g_trust.roots[at - 1].version > version)
        at--;
    memmove(&g_trust.roots[at + 1], &g_trust.roots[at], (g_trust.nroots - at) * sizeof *grown);
    g_trust.roots[at] = (stored_root){version, text, len, root};
    g_trust.nroots++;
    return 0;
}

/* The root that policies are checked against: the pinned root, moved
 * forward along the stored roots that rotate validly from it. */
static const pkgstore_trust_root *enforcing_root(void)
{
    const pkgstore_trust_root *trusted = g_trust.pinned;
    for (size_t i = 0; trusted && i < g_trust.nroots; i++) {
        if (g_trust.roots[i].version > pkgstore_trust_root_version(trusted) &&
            pkgstore_trust_root_verify(g_trust.roots[i].root, trusted) == 0)
            trusted = g_trust.roots[i].root;
    }
    return trusted;
}

/* Check body as a root the server may add (see trust.h's rules); on
 * success *root_out and *version_out. Called with the lock held. */
static int root_check(pkgstore_trust_root **root_out, int *untrusted_out, const char *body,
                      size_t len, char *err, size_t err_size)
{
    pkgstore_trust_root *root = NULL;
    char *canonical = NULL;
    size_t canonical_len = 0;
    int error = pkgstore_trust_root_parse(&root, body, len);
    if (error < 0) {
        snprintf(err, err_size, "root.json: %s", pkgstore_error_detail());
        return error;
    }
    if ((error = pkgstore_trust_root_serialize(&canonical, &canonical_len, root)) < 0 ||
        canonical_len != len || memcmp(canonical, body, len) != 0) {
        snprintf(err, err_size, "root.json: not in canonical form (as pkgstore-key root writes "
                                "it: sorted keys, compact, no trailing newline)");
        error = PKGSTORE_EINVALID;
        goto fail;
    }
    const stored_root *current = newest_root();
    uint64_t version = pkgstore_trust_root_version(root);
    for (size_t i = 0; i < g_trust.nroots; i++) {
        if (g_trust.roots[i].version == version) {
            snprintf(err, err_size, "root.json: version %" PRIu64 " is already held%s", version,
                     g_trust.roots[i].len == len && memcmp(g_trust.roots[i].text, body, len) == 0
                         ? " (the same document)"
                         : " (a different document: versions never change)");
            error = PKGSTORE_ECONFLICT;
            goto fail;
        }
    }
    if (current && version < current->version) {
        snprintf(err, err_size, "root.json: version %" PRIu64 " is older than the current %" PRIu64,
                 version, current->version);
        error = PKGSTORE_ECONFLICT;
        goto fail;
    }
    if (!current && g_trust.pinned) {
        uint64_t pinned_version = pkgstore_trust_root_version(g_trust.pinned);
        char *pinned_text = NULL;
        size_t pinned_len = 0;
        int same = version == pinned_version &&
                   pkgstore_trust_root_serialize(&pinned_text, &pinned_len, g_trust.pinned) == 0 &&
                   pinned_len == len && memcmp(pinned_text, body, len) == 0;
        pkgstore_free(pinned_text);
        if (version < pinned_version || (version == pinned_version && !same)) {
            snprintf(err, err_size,
                     "root.json version %" PRIu64 ": %s the server's --trust-root (version %" PRIu64
                     ")",
                     version, version < pinned_version ? "older than" : "another document than",
                     pinned_version);
            error = PKGSTORE_ECONFLICT;
            goto fail;
        }
    }
    /* the first root: self-signed to threshold (and, pinned, a valid
     * successor of the pinned root or the pinned root itself) */
    const pkgstore_trust_root *trusted = current ? current->root : NULL;
    if (!current && g_trust.pinned && version > pkgstore_trust_root_version(g_trust.pinned))
        trusted = g_trust.pinned;
    if ((error = pkgstore_trust_root_verify(root, trusted)) < 0) {
        snprintf(err, err_size, "root.json version %" PRIu64 ": %s", version,
                 pkgstore_error_detail());
        error = PKGSTORE_ECONFLICT; /* the contract: a refused rotation is 409 */
        *untrusted_out = 1;
        goto fail;
    }
    pkgstore_free(canonical);
    *root_out = root;
    return 0;
fail:
    pkgstore_free(canonical);
    pkgstore_trust_root_free(root);
    return error;
}

int trust_root_put(uint64_t *version_out, int *untrusted_out, const char *body, size_t len,
                   char *err, size_t err_size)
{
    pkgstore_trust_root *root = NULL;
    char *text = NULL, name[64];
    *untrusted_out = 0;
    pthread_mutex_lock(&g_trust.lock);
    int error = root_check(&root, untrusted_out, body, len, err, err_size);
    if (error < 0)
        goto out;
    uint64_t version = pkgstore_trust_root_version(root);
    snprintf(name, sizeof name, "root.%" PRIu64 ".json", version);
    if ((error = write_atomic(name, body, len, err, err_size)) < 0)
        goto out;
    if (!(text = malloc(len + 1))) {
        error = PKGSTORE_ENOMEM;
        snprintf(err, err_size, "out of memory");
        goto out;
    }
    memcpy(text, body, len);
    text[len] = '\0';
    if ((error = roots_insert(root, text, len)) < 0) {
        snprintf(err, err_size, "out of memory");
        goto out;
    }
    root = NULL; /* now owned by g_trust */
    text = NULL;
    *version_out = version;
out:
    pthread_mutex_unlock(&g_trust.lock);
    pkgstore_trust_root_free(root);
    free(text);
    return error;
}

int trust_root_get(char **out, size_t *len_out, uint64_t version)
{
    int error = PKGSTORE_ENOTFOUND;
    *out = NULL;
    pthread_mutex_lock(&g_trust.lock);
    for (size_t i = 0; i < g_trust.nroots; i++) {
        const stored_root *r = &g_trust.roots[i];
        if (version ? r->version != version : i + 1 != g_trust.nroots)
            continue;
        error = (*out = malloc(r->len + 1)) ? 0 : PKGSTORE_ENOMEM;
        if (*out) {
            memcpy(*out, r->text, r->len + 1);
            *len_out = r->len;
        }
    }
    pthread_mutex_unlock(&g_trust.lock);
    return error;
}

/* ---------------------------------------------------------------- revocations */

static int revocations_save(json_t *list, uint64_t generation, char *err, size_t err_size)
{
    json_t *doc = json_pack("{s:I, s:O}", "generation", (json_int_t)generation, "revocations",
                            list);
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    if (!text) {
        snprintf(err, err_size, "out of memory");
        return PKGSTORE_ENOMEM;
    }
    int error = write_atomic("revocations.json", text, strlen(text), err, err_size);
    free(text);
    return error;
}

int trust_revocation_put(json_t **record_out, int *changed_out, const char *body, size_t len,
                         char *err, size_t err_size)
{
    pkgstore_trust_revocation *rev = NULL;
    char *canonical = NULL;
    size_t canonical_len = 0;
    json_t *doc = NULL, *list = NULL;
    *record_out = NULL;
    *changed_out = 0;
    int error = pkgstore_trust_revocation_parse(&rev, body, len);
    if (error < 0) {
        snprintf(err, err_size, "revocation: %s", pkgstore_error_detail());
        return error;
    }
    if ((error = pkgstore_trust_revocation_serialize(&canonical, &canonical_len, rev)) < 0 ||
        !(doc = json_loadb(canonical, canonical_len, 0, NULL))) {
        snprintf(err, err_size, "revocation: %s",
                 error < 0 ? pkgstore_error_detail() : "out of memory");
        error = error < 0 ? error : PKGSTORE_ENOMEM;
        goto out;
    }
    pthread_mutex_lock(&g_trust.lock);
    const stored_root *current = newest_root();
    const pkgstore_trust_root *root = current ? current->root : g_trust.pinned;
    if (root && (error = pkgstore_trust_revocation_verify(rev, root)) < 0) {
        snprintf(err, err_size, "revocation of %s %s: %s (root version %" PRIu64 ")",
                 pkgstore_trust_revocation_name(rev), pkgstore_trust_revocation_version(rev),
                 pkgstore_error_detail(), pkgstore_trust_root_version(root));
        error = PKGSTORE_EDENIED;
        goto unlock;
    }
    /* one per name and version: a newer statement replaces an older one */
    size_t index = json_array_size(g_trust.revocations), i;
    json_t *item;
    json_array_foreach(g_trust.revocations, i, item) {
        json_t *signed_obj = json_object_get(item, "signed");
        if (strcmp(json_string_value(json_object_get(signed_obj, "name")),
                   pkgstore_trust_revocation_name(rev)) == 0 &&
            strcmp(json_string_value(json_object_get(signed_obj, "version")),
                   pkgstore_trust_revocation_version(rev)) == 0)
            index = i;
    }
    int replace = index < json_array_size(g_trust.revocations);
    if (replace && json_equal(json_array_get(g_trust.revocations, index), doc)) {
        error = 0; /* the same statement again: nothing changes */
        goto done;
    }
    if (replace) {
        json_t *old = json_array_get(g_trust.revocations, index);
        const char *old_created =
            json_string_value(json_object_get(json_object_get(old, "signed"), "created"));
        const char *new_created =
            json_string_value(json_object_get(json_object_get(doc, "signed"), "created"));
        if (old_created && new_created && strcmp(new_created, old_created) < 0) {
            snprintf(err, err_size,
                     "revocation of %s %s: older (%s) than the one held (%s); the newest wins",
                     pkgstore_trust_revocation_name(rev), pkgstore_trust_revocation_version(rev),
                     new_created, old_created);
            error = PKGSTORE_ECONFLICT;
            goto unlock;
        }
    }
    if (!(list = json_copy(g_trust.revocations)) ||
        (replace ? json_array_set(list, index, doc) : json_array_append(list, doc)) < 0) {
        snprintf(err, err_size, "out of memory");
        error = PKGSTORE_ENOMEM;
        goto unlock;
    }
    if ((error = revocations_save(list, g_trust.generation + 1, err, err_size)) < 0)
        goto unlock;
    json_decref(g_trust.revocations);
    g_trust.revocations = list;
    list = NULL; /* now owned by g_trust */
    g_trust.generation++;
    *changed_out = 1;
done:
    *record_out = json_pack("{s:s, s:s, s:I}", "name", pkgstore_trust_revocation_name(rev),
                            "version", pkgstore_trust_revocation_version(rev), "generation",
                            (json_int_t)g_trust.generation);
unlock:
    pthread_mutex_unlock(&g_trust.lock);
out:
    json_decref(list);
    json_decref(doc);
    pkgstore_free(canonical);
    pkgstore_trust_revocation_free(rev);
    return error;
}

json_t *trust_revocations_json(void)
{
    pthread_mutex_lock(&g_trust.lock);
    json_t *body = json_pack("{s:I, s:O}", "generation", (json_int_t)g_trust.generation,
                             "revocations", g_trust.revocations);
    pthread_mutex_unlock(&g_trust.lock);
    return body;
}

void trust_summary(uint64_t *root_version, uint64_t *generation)
{
    pthread_mutex_lock(&g_trust.lock);
    *root_version = g_trust.nroots ? newest_root()->version : 0;
    *generation = g_trust.generation;
    pthread_mutex_unlock(&g_trust.lock);
}

/* ---------------------------------------------------------------- policies */

int trust_require_signatures(void)
{
    return g_trust.require;
}

/* Under --require-signatures a policy may name a version only while the
 * version's manifest is signed, and an upload may change a manifest only
 * while no policy names the version. Each is a check followed by a write
 * in another transaction (the library offers no hook inside its own), so
 * the two exclude each other here: a policy PUT holds this lock
 * exclusively from its signature check to its write, an upload holds it
 * shared from its "targeted?" check to its registry write (uploads do not
 * exclude each other). Writers outside this process are not covered
 * (docs/trust.md). */
static pthread_rwlock_t g_signed_lock = PTHREAD_RWLOCK_INITIALIZER;

void trust_policy_lock(void)
{
    if (g_trust.require)
        pthread_rwlock_wrlock(&g_signed_lock);
}

void trust_upload_lock(void)
{
    if (g_trust.require)
        pthread_rwlock_rdlock(&g_signed_lock);
}

void trust_signed_unlock(void)
{
    if (g_trust.require)
        pthread_rwlock_unlock(&g_signed_lock);
}

int trust_check_signed(const char *name, const char *version, char *err, size_t err_size)
{
    pkgstore_manifest *manifest = NULL;
    pkgstore_digest digest;
    pkgstore_trust_stored_signature *list = NULL;
    pkgstore_trust_envelope **envelopes = NULL;
    size_t count = 0, parsed = 0, valid = 0;
    char *text = NULL;
    size_t len = 0;
    int error = pkgstore_registry_get(&manifest, &digest, g_server.registry, name, version);
    if (error < 0) {
        snprintf(err, err_size, "%s", pkgstore_error_detail());
        return error;
    }
    if ((error = pkgstore_manifest_serialize(&text, &len, manifest, 0)) < 0 ||
        (error = pkgstore_trust_signatures_list(&list, &count, g_server.store, &digest)) < 0) {
        snprintf(err, err_size, "%s %s: %s", name, version, pkgstore_error_detail());
        goto out;
    }
    if (count && !(envelopes = calloc(count, sizeof *envelopes))) {
        error = PKGSTORE_ENOMEM;
        snprintf(err, err_size, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < count; i++)
        if (pkgstore_trust_envelope_parse(&envelopes[parsed], list[i].data, list[i].len) == 0)
            parsed++;
    pthread_mutex_lock(&g_trust.lock);
    const pkgstore_trust_root *root = enforcing_root();
    error = root ? pkgstore_trust_manifest_verify(NULL, &valid, root, text, len, envelopes, parsed)
                 : PKGSTORE_EDENIED;
    if (error < 0)
        snprintf(err, err_size,
                 "%s %s is not signed to threshold by root version %" PRIu64
                 " (%zu stored signature(s)): %s; sign it (pkgstore-push --sign-key, or "
                 "pkgstore-sign) before a policy targets it",
                 name, version, root ? pkgstore_trust_root_version(root) : 0, count,
                 root ? pkgstore_error_detail() : "no root");
    pthread_mutex_unlock(&g_trust.lock);
    if (error == PKGSTORE_EDENIED)
        error = PKGSTORE_ECONFLICT; /* the version's state, not the admin's right */
out:
    for (size_t i = 0; i < parsed; i++)
        pkgstore_trust_envelope_free(envelopes[i]);
    free(envelopes);
    pkgstore_trust_signatures_free(list, count);
    pkgstore_free(text);
    pkgstore_manifest_free(manifest);
    return error;
}

/* Is keyid one of root's keys? */
static int root_has_key(const pkgstore_trust_root *root, const char *keyid)
{
    for (size_t i = 0; i < pkgstore_trust_root_key_count(root); i++) {
        const char *id = NULL;
        if (pkgstore_trust_root_key(&id, NULL, root, i) == 0 && strcmp(id, keyid) == 0)
            return 1;
    }
    return 0;
}

/* Is name version revoked by a statement the server holds? (locked) */
static int revoked_locked(const char *name, const char *version)
{
    size_t i;
    json_t *item;
    json_array_foreach(g_trust.revocations, i, item) {
        json_t *signed_obj = json_object_get(item, "signed");
        const char *n = json_string_value(json_object_get(signed_obj, "name"));
        const char *v = json_string_value(json_object_get(signed_obj, "version"));
        if (n && v && strcmp(n, name) == 0 && strcmp(v, version) == 0)
            return 1;
    }
    return 0;
}

json_t *trust_signatures_check(const char *name, const char *version, const char *text,
                               size_t len, const pkgstore_trust_stored_signature *list,
                               size_t count)
{
    pkgstore_trust_envelope **envelopes = count ? calloc(count, sizeof *envelopes) : NULL;
    json_t *states = json_array(), *out = NULL;
    size_t valid = 0, parsed = 0;
    if ((count && !envelopes) || !states)
        goto done;
    pthread_mutex_lock(&g_trust.lock);
    const pkgstore_trust_root *root = enforcing_root();
    int pinned = root != NULL;
    if (!root && newest_root())
        root = newest_root()->root;
    for (size_t i = 0; i < count; i++) {
        const char *state = "unchecked";
        pkgstore_trust_envelope *env = NULL;
        if (pkgstore_trust_envelope_parse(&env, list[i].data, list[i].len) < 0) {
            state = "malformed";
        } else {
            envelopes[parsed++] = env;
            size_t one = 0;
            if (root && !root_has_key(root, pkgstore_trust_envelope_keyid(env)))
                state = "unknown key";
            else if (root) {
                pkgstore_trust_manifest_verify(NULL, &one, root, text, len, &env, 1);
                state = one ? "valid" : "bad signature";
            }
        }
        json_array_append_new(states, json_string(state));
    }
    int error = root ? pkgstore_trust_manifest_verify(NULL, &valid, root, text, len, envelopes,
                                                      parsed)
                     : PKGSTORE_EDENIED;
    out = json_pack("{s:o, s:b, s:o, s:I, s:b, s:b, s:O}", "root_version",
                    root ? json_integer((json_int_t)pkgstore_trust_root_version(root))
                         : json_null(),
                    "root_pinned", pinned, "threshold",
                    root ? json_integer((json_int_t)pkgstore_trust_root_threshold(root))
                         : json_null(),
                    "valid", (json_int_t)valid, "signed", error == 0, "revoked",
                    revoked_locked(name, version), "states", states);
    pthread_mutex_unlock(&g_trust.lock);
done:
    for (size_t i = 0; i < parsed; i++)
        pkgstore_trust_envelope_free(envelopes[i]);
    free(envelopes);
    json_decref(states);
    return out;
}

int trust_version_targeted(char *policy_out, size_t policy_size, const char *name,
                           const char *version)
{
    pkgstore_semver semver;
    char normalized[PKGSTORE_SEMVER_STR_SIZE];
    pkgstore_policies *set = NULL;
    if (pkgstore_version_parse(&semver, version) < 0)
        return 0; /* the route refuses it on its own */
    pkgstore_version_format(normalized, &semver);
    int error = pkgstore_policies_load(&set, g_server.registry);
    if (error < 0) {
        snprintf(policy_out, policy_size, "%s", pkgstore_error_detail());
        return error;
    }
    int found = 0;
    for (size_t i = 0; !found && i < pkgstore_policies_count(set); i++) {
        const pkgstore_policy *policy = pkgstore_policies_at(set, i);
        if (strcmp(pkgstore_policy_package(policy), name) == 0 &&
            strcmp(pkgstore_policy_version(policy), normalized) == 0) {
            snprintf(policy_out, policy_size, "%s", pkgstore_policy_name(policy));
            found = 1;
        }
    }
    pkgstore_policies_free(set);
    return found;
}

/* ---------------------------------------------------------------- start */

static int load_roots(char *err, size_t err_size)
{
    DIR *d = opendir(g_trust.dir);
    if (!d) {
        snprintf(err, err_size, "%s: %s", g_trust.dir, strerror(errno));
        return -1;
    }
    struct dirent *entry;
    int error = 0;
    while (!error && (entry = readdir(d))) {
        uint64_t version = 0;
        int consumed = 0;
        if (sscanf(entry->d_name, "root.%" SCNu64 ".json%n", &version, &consumed) != 1 ||
            (size_t)consumed != strlen(entry->d_name))
            continue;
        char path[4500], *text = NULL;
        size_t len = 0;
        pkgstore_trust_root *root = NULL;
        snprintf(path, sizeof path, "%s/%s", g_trust.dir, entry->d_name);
        if (read_whole_file(&text, &len, path, PKGSTORE_TRUST_DOCUMENT_SIZE_MAX) < 0) {
            snprintf(err, err_size, "%s: %s", path, strerror(errno));
            error = -1;
        } else if (pkgstore_trust_root_parse(&root, text, len) < 0 ||
                   pkgstore_trust_root_version(root) != version) {
            snprintf(err, err_size, "%s: %s", path,
                     root ? "its version is not the one in its name" : pkgstore_error_detail());
            error = -1;
        } else if (roots_insert(root, text, len) < 0) {
            snprintf(err, err_size, "out of memory");
            error = -1;
        } else {
            root = NULL; /* now owned by g_trust */
            text = NULL;
        }
        pkgstore_trust_root_free(root);
        free(text);
    }
    closedir(d);
    return error;
}

static int load_revocations(char *err, size_t err_size)
{
    char path[4400], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/revocations.json", g_trust.dir);
    if (read_whole_file(&text, &len, path, 64u << 20) < 0) {
        if (errno == ENOENT) {
            g_trust.revocations = json_array();
            return g_trust.revocations ? 0 : -1;
        }
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    json_t *list = json_object_get(doc, "revocations");
    json_t *generation = json_object_get(doc, "generation");
    if (!json_is_array(list) || !json_is_integer(generation) ||
        json_integer_value(generation) < 0) {
        snprintf(err, err_size, "%s: not a revocations file (%s)", path,
                 doc ? "missing generation or revocations" : jerr.text);
        json_decref(doc);
        return -1;
    }
    /* each must still be a revocation (the file is ours, but a hand edit
     * must not crash the server later) */
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        char *item_text = json_dumps(item, JSON_COMPACT | JSON_SORT_KEYS);
        pkgstore_trust_revocation *rev = NULL;
        int error = item_text ? pkgstore_trust_revocation_parse(&rev, item_text,
                                                               strlen(item_text))
                              : PKGSTORE_ENOMEM;
        free(item_text);
        pkgstore_trust_revocation_free(rev);
        if (error < 0) {
            snprintf(err, err_size, "%s: revocations[%zu]: %s", path, i,
                     error == PKGSTORE_ENOMEM ? "out of memory" : pkgstore_error_detail());
            json_decref(doc);
            return -1;
        }
    }
    g_trust.revocations = json_incref(list);
    g_trust.generation = (uint64_t)json_integer_value(generation);
    json_decref(doc);
    return 0;
}

int trust_open(const char *dir, const char *pinned_path, int require, char *err, size_t err_size)
{
    snprintf(g_trust.dir, sizeof g_trust.dir, "%s", dir);
    g_trust.require = require;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        snprintf(err, err_size, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (load_roots(err, err_size) < 0 || load_revocations(err, err_size) < 0)
        return -1;
    if (pinned_path) {
        char *text = NULL;
        size_t len = 0;
        if (read_whole_file(&text, &len, pinned_path, PKGSTORE_TRUST_DOCUMENT_SIZE_MAX) < 0) {
            snprintf(err, err_size, "--trust-root %s: %s", pinned_path, strerror(errno));
            return -1;
        }
        int error = pkgstore_trust_root_parse(&g_trust.pinned, text, len);
        if (error == 0 && (error = pkgstore_trust_root_verify(g_trust.pinned, NULL)) < 0) {
            pkgstore_trust_root_free(g_trust.pinned);
            g_trust.pinned = NULL;
        }
        free(text);
        if (error < 0) {
            snprintf(err, err_size, "--trust-root %s: %s", pinned_path, pkgstore_error_detail());
            return -1;
        }
    }
    if (require && !g_trust.pinned) {
        snprintf(err, err_size, "--require-signatures needs --trust-root FILE (the root policies "
                                "are checked against)");
        return -1;
    }
    return 0;
}

void trust_close(void)
{
    for (size_t i = 0; i < g_trust.nroots; i++) {
        free(g_trust.roots[i].text);
        pkgstore_trust_root_free(g_trust.roots[i].root);
    }
    free(g_trust.roots);
    g_trust.roots = NULL;
    g_trust.nroots = 0;
    pkgstore_trust_root_free(g_trust.pinned);
    g_trust.pinned = NULL;
    json_decref(g_trust.revocations);
    g_trust.revocations = NULL;
}
