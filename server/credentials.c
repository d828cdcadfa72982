/*
 * server/credentials.c - per-node credentials: a bearer token bound to one
 * node id, with the labels the admin pins for that node.
 *
 * Only the SHA-256 of a token is kept (pkgstore_digest_buffer(), OpenSSL
 * EVP underneath): in memory and in the credentials file,
 * <store>.node-credentials by default (--node-credentials FILE), a JSON
 * document written whole to a temporary file, fsynced and renamed over the
 * old one, so a crash leaves the old set or the new one. The file is
 * private to the server's user (checked at start like the token files).
 *
 * The set in memory is the truth for requests: an issue or a revoke changes
 * it under the write lock once the file holds the change, so a revoked
 * token gets 401 from the next request on. It is kept sorted by hash, so a
 * request finds its credential by binary search among any number of nodes.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

struct node_credential {
    atomic_int refs;
    pkgstore_digest hash;          /* SHA-256 of the token */
    char id[CREDENTIAL_ID_LEN + 1]; /* the first hex digits of the hash */
    char node[254];
    int64_t created;
    uint64_t seq;                  /* issue order (the file's order): breaks ties of created */
    json_t *labels;                /* pinned: {"key":"value"} */
    json_t *self_labels;           /* reported keys kept: ["key"] or ["*"] */
    pkgstore_label *pinned;        /* labels, as the fleet wants them */
    size_t npinned;
    const char **self_keys;
    size_t nself;
    int self_any;
};

static int cmp_hash(const pkgstore_digest *a, const pkgstore_digest *b)
{
    return memcmp(a->bytes, b->bytes, sizeof a->bytes);
}

static int cmp_item(const void *a, const void *b)
{
    return cmp_hash(&(*(node_credential *const *)a)->hash, &(*(node_credential *const *)b)->hash);
}

static struct {
    pthread_rwlock_t lock;
    pthread_mutex_t write_lock; /* one change at a time, file then memory */
    node_credential **items;
    size_t count;
    /* the same credentials by node, then age (cmp_listed): for a client
     * certificate's node (credentials_for_node) and the listing */
    node_credential **by_node;
    size_t lines;  /* change lines in the file's journal */
    int exists;    /* the file exists (else the first change writes it whole) */
    char path[4200];
} g_creds = {PTHREAD_RWLOCK_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, NULL, 0, NULL, 0, 0, ""};

static int cmp_listed(const void *a, const void *b);

/* Where cred goes in by_node (or is): the first entry not before it. */
static size_t by_node_position(const node_credential *cred)
{
    size_t low = 0, high = g_creds.count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (cmp_listed(&g_creds.by_node[mid], &cred) < 0)
            low = mid + 1;
        else
            high = mid;
    }
    return low;
}

/* Drop cred from by_node, before count shrinks; under the write lock. */
static void by_node_remove(const node_credential *cred)
{
    size_t at = by_node_position(cred);
    if (at < g_creds.count && g_creds.by_node[at] == cred)
        memmove(g_creds.by_node + at, g_creds.by_node + at + 1,
                (g_creds.count - at - 1) * sizeof *g_creds.by_node);
}

static void credential_release(node_credential *cred)
{
    if (!cred || atomic_fetch_sub(&cred->refs, 1) != 1)
        return;
    json_decref(cred->labels);
    json_decref(cred->self_labels);
    free(cred->pinned);
    free(cred->self_keys);
    free(cred);
}

void credentials_release(node_credential *cred)
{
    credential_release(cred);
}

/* Node ids as the fleet takes them: [A-Za-z0-9][A-Za-z0-9._:-]{0,252}. */
static int node_id_ok(const char *id)
{
    size_t len = strlen(id);
    if (len < 1 || len > 253)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || !(c == '.' || c == '_' || c == ':' || c == '-')))
            return 0;
    }
    return 1;
}

static int cmp_label(const void *a, const void *b)
{
    return strcmp(((const pkgstore_label *)a)->key, ((const pkgstore_label *)b)->key);
}

/* Build a credential from its record (JSON object, as in the file and the
 * issue request's labels and self_labels). */
static node_credential *credential_from(const char *node, json_t *labels, json_t *self_labels,
                                        int64_t created, const pkgstore_digest *hash, char *err,
                                        size_t err_size)
{
    node_credential *cred = calloc(1, sizeof *cred);
    if (!cred) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    atomic_init(&cred->refs, 1);
    cred->hash = *hash;
    char hex[PKGSTORE_DIGEST_HEX_LEN + 1];
    pkgstore_digest_format_hex(hex, hash);
    memcpy(cred->id, hex, CREDENTIAL_ID_LEN);
    cred->created = created;
    /* the file lists a node's credentials in issue order (snapshots write
     * them by node, then age): reading it in order numbers them again */
    static atomic_uint_fast64_t next_seq;
    cred->seq = atomic_fetch_add(&next_seq, 1);
    if (!node_id_ok(node)) {
        snprintf(err, err_size, "node: must match [A-Za-z0-9][A-Za-z0-9._:-]{0,252}");
        goto fail;
    }
    snprintf(cred->node, sizeof cred->node, "%s", node);
    cred->labels = labels ? json_incref(labels) : json_object();
    cred->self_labels = self_labels ? json_incref(self_labels) : json_array();
    if (!json_is_object(cred->labels)) {
        snprintf(err, err_size, "labels: not an object");
        goto fail;
    }
    if (!json_is_array(cred->self_labels)) {
        snprintf(err, err_size, "self_labels: not an array");
        goto fail;
    }
    if (json_object_size(cred->labels) > PKGSTORE_LABELS_MAX ||
        json_array_size(cred->self_labels) > PKGSTORE_LABELS_MAX) {
        snprintf(err, err_size, "labels: more than %d", PKGSTORE_LABELS_MAX);
        goto fail;
    }
    cred->pinned = calloc(json_object_size(cred->labels) + 1, sizeof *cred->pinned);
    cred->self_keys = calloc(json_array_size(cred->self_labels) + 1, sizeof *cred->self_keys);
    if (!cred->pinned || !cred->self_keys) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    const char *key;
    json_t *value;
    json_object_foreach(cred->labels, key, value) {
        if (pkgstore_label_key_validate(key) < 0 || !json_is_string(value) ||
            pkgstore_label_value_validate(json_string_value(value)) < 0) {
            snprintf(err, err_size, "labels.%.64s: %s", key,
                     json_is_string(value) ? pkgstore_error_detail() : "not a string");
            goto fail;
        }
        cred->pinned[cred->npinned].key = key;
        cred->pinned[cred->npinned].value = json_string_value(value);
        cred->npinned++;
    }
    if (cred->npinned)
        qsort(cred->pinned, cred->npinned, sizeof *cred->pinned, cmp_label);
    size_t i;
    json_array_foreach(cred->self_labels, i, value) {
        const char *word = json_string_value(value);
        if (!word || (strcmp(word, "*") != 0 && pkgstore_label_key_validate(word) < 0)) {
            snprintf(err, err_size, "self_labels[%zu]: not a label key or \"*\"", i);
            goto fail;
        }
        if (strcmp(word, "*") == 0)
            cred->self_any = 1;
        cred->self_keys[cred->nself++] = word;
    }
    return cred;
fail:
    credential_release(cred);
    return NULL;
}

static json_t *credential_record(const node_credential *cred, int with_hash)
{
    char created[32];
    fleet_time_format(created, cred->created);
    json_t *record = json_pack("{s:s, s:s, s:s, s:O, s:O}", "id", cred->id, "node", cred->node,
                               "created", created, "labels", cred->labels, "self_labels",
                               cred->self_labels);
    if (record && with_hash) {
        char digest[PKGSTORE_DIGEST_STR_SIZE];
        pkgstore_digest_format(digest, &cred->hash);
        json_object_set_new(record, "sha256", json_string(digest));
    }
    return record;
}

/* ---------------------------------------------------------------- the file */

/*
 * The file is a journal, so that issuing or revoking one credential among
 * 100,000 writes one line, not the whole set: the first line is
 * {"version":2}, then one change per line, {"issue":RECORD} or
 * {"revoke":"sha256:..."}, each appended and fsynced before the admin is
 * answered. When the lines outnumber twice the live credentials (plus a
 * margin), the set is written whole again (snapshot(): a temporary file,
 * fsync, rename, fsync of the directory), which also happens at start for
 * a version 1 file (one JSON document, as earlier servers wrote it), a
 * last line torn by a crash in the middle of an append (dropped), or a
 * whole last line that lost its newline (kept).
 */
#define JOURNAL_SLACK 1024u

/* Write items to the file as a fresh journal: header and one issue line
 * each, in by_node order (node, then age), so that a reload numbers each
 * node's credentials in the order they were issued. */
static int snapshot(node_credential *const *items, size_t count, char *err, size_t err_size)
{
    char tmp[4300], dir_buf[4200];
    int error = -1, made = 0;
    FILE *file = NULL;

    snprintf(tmp, sizeof tmp, "%s.XXXXXX", g_creds.path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, err_size, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    made = 1;
    if (!(file = fdopen(fd, "w"))) {
        close(fd);
        goto io;
    }
    fputs("{\"version\":2}\n", file);
    for (size_t i = 0; i < count; i++) {
        json_t *line = json_pack("{s:o}", "issue", credential_record(items[i], 1));
        if (!line || json_dumpf(line, file, JSON_COMPACT) < 0) {
            json_decref(line);
            goto io;
        }
        json_decref(line);
        fputc('\n', file);
    }
    if (fflush(file) != 0 || ferror(file) || fsync(fileno(file)) < 0)
        goto io;
    int closed = fclose(file);
    file = NULL;
    if (closed != 0 || rename(tmp, g_creds.path) < 0)
        goto io;
    made = 0;
    snprintf(dir_buf, sizeof dir_buf, "%s", g_creds.path);
    int dir_fd = open(dirname(dir_buf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
        (void)fsync(dir_fd);
        close(dir_fd);
    }
    g_creds.lines = count;
    g_creds.exists = 1;
    error = 0;
    goto out;
io:
    snprintf(err, err_size, "%s: %s", g_creds.path, strerror(errno ? errno : EIO));
out:
    if (file)
        fclose(file);
    if (made)
        unlink(tmp);
    return error;
}

/* Append one change (a line) and fsync it. A failed write is cut back off,
 * so that the next line does not join a torn one. */
static int append_line(json_t *line, char *err, size_t err_size)
{
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    if (!text) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    size_t len = strlen(text);
    text[len++] = '\n'; /* json_dumps()'s terminator becomes the newline */
    int fd = open(g_creds.path, O_WRONLY | O_APPEND | O_CLOEXEC);
    struct stat st;
    int error = -1;
    if (fd < 0 || fstat(fd, &st) < 0)
        goto io;
    for (size_t done = 0; done < len;) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto cut;
        done += (size_t)n;
    }
    if (fsync(fd) < 0)
        goto cut;
    g_creds.lines++;
    error = 0;
    goto out;
cut: {
    int saved = errno;
    (void)ftruncate(fd, st.st_size);
    errno = saved;
}
io:
    snprintf(err, err_size, "%s: %s", g_creds.path, strerror(errno));
out:
    if (fd >= 0)
        close(fd);
    free(text);
    return error;
}

/* Make one change durable: line appended to the journal, or, while there
 * is no file yet, items (the set after the change) written whole. */
static int record_change(json_t *line, node_credential *const *items, size_t count, char *err,
                         size_t err_size)
{
    if (!g_creds.exists) {
        json_decref(line);
        return snapshot(items, count, err, err_size);
    }
    return append_line(line, err, err_size);
}

/* After a change: write the set whole when the journal has grown past
 * twice the set. A failure leaves the journal, which is still whole. */
static void maybe_compact(node_credential *const *items, size_t count)
{
    char err[300];
    if (g_creds.lines <= 2 * count + JOURNAL_SLACK)
        return;
    if (snapshot(items, count, err, sizeof err) < 0)
        log_msg(LOG_WARN, "node credentials: could not compact the file; it stays as it is",
                "detail=%s", err);
}

/* One issue record (in either version of the file) into a credential. */
static node_credential *record_credential(json_t *record, const char *path, const char *where,
                                          char *err, size_t err_size)
{
    const char *node = json_string_value(json_object_get(record, "node"));
    const char *digest = json_string_value(json_object_get(record, "sha256"));
    const char *created = json_string_value(json_object_get(record, "created"));
    pkgstore_digest hash;
    struct tm tm = {0};
    char detail[300];
    if (!node || !digest || !created || pkgstore_digest_parse(&hash, digest) < 0 ||
        !strptime(created, "%Y-%m-%dT%H:%M:%SZ", &tm)) {
        snprintf(err, err_size, "%s: %s: node, sha256 or created missing or malformed", path,
                 where);
        return NULL;
    }
    node_credential *cred =
        credential_from(node, json_object_get(record, "labels"),
                        json_object_get(record, "self_labels"), (int64_t)timegm(&tm), &hash,
                        detail, sizeof detail);
    if (!cred)
        snprintf(err, err_size, "%s: %s: %s", path, where, detail);
    return cred;
}

typedef struct load_state {
    node_credential **items;
    size_t count, cap;
    pkgstore_digest *revoked;
    size_t nrevoked, revoked_cap;
} load_state;

static int push_item(load_state *st, node_credential *cred)
{
    if (st->count == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        node_credential **grown = realloc(st->items, cap * sizeof *grown);
        if (!grown)
            return -1;
        st->items = grown;
        st->cap = cap;
    }
    st->items[st->count++] = cred;
    return 0;
}

static int push_revoked(load_state *st, const pkgstore_digest *hash)
{
    if (st->nrevoked == st->revoked_cap) {
        size_t cap = st->revoked_cap ? st->revoked_cap * 2 : 16;
        pkgstore_digest *grown = realloc(st->revoked, cap * sizeof *grown);
        if (!grown)
            return -1;
        st->revoked = grown;
        st->revoked_cap = cap;
    }
    st->revoked[st->nrevoked++] = *hash;
    return 0;
}

static int cmp_digest(const void *a, const void *b)
{
    return cmp_hash(a, b);
}

/* A version 1 file: {"version":1,"credentials":[RECORD...]}. */
static int load_v1(load_state *st, const char *text, size_t len, const char *path, char *err,
                   size_t err_size)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *list = json_object_get(doc, "credentials");
    json_t *version = json_object_get(doc, "version");
    if (!doc) {
        snprintf(err, err_size, "%s: line %d: %s", path, jerr.line, jerr.text);
        return -1;
    }
    if (!json_is_integer(version) || json_integer_value(version) != 1 || !json_is_array(list)) {
        snprintf(err, err_size, "%s: not a credentials file (version 1 or 2)", path);
        json_decref(doc);
        return -1;
    }
    size_t i;
    json_t *record;
    json_array_foreach(list, i, record) {
        char where[40];
        snprintf(where, sizeof where, "credentials[%zu]", i);
        node_credential *cred = record_credential(record, path, where, err, err_size);
        if (cred && push_item(st, cred) < 0) {
            credential_release(cred);
            cred = NULL;
            snprintf(err, err_size, "out of memory");
        }
        if (!cred) {
            json_decref(doc);
            return -1;
        }
    }
    json_decref(doc);
    return 0;
}

/* A version 2 journal; *torn is set when its last line was cut short (a
 * crash while appending), which is then ignored. */
static int load_v2(load_state *st, const char *text, size_t len, const char *path, int *torn,
                   char *err, size_t err_size)
{
    size_t lineno = 1;
    const char *p = memchr(text, '\n', len);
    p = p ? p + 1 : text + len; /* after the header */
    while (p < text + len) {
        lineno++;
        const char *end = memchr(p, '\n', (size_t)(text + len - p));
        int last = !end;
        if (!end)
            end = text + len;
        json_error_t jerr;
        json_t *line = json_loadb(p, (size_t)(end - p), JSON_REJECT_DUPLICATES, &jerr);
        json_t *issue = json_object_get(line, "issue");
        const char *revoke = json_string_value(json_object_get(line, "revoke"));
        pkgstore_digest hash;
        if (!line && last) {
            *torn = 1; /* the append that a crash cut: never answered */
            break;
        }
        if (json_is_object(issue) && json_object_size(line) == 1) {
            char where[40];
            snprintf(where, sizeof where, "line %zu", lineno);
            node_credential *cred = record_credential(issue, path, where, err, err_size);
            if (!cred || push_item(st, cred) < 0) {
                if (cred)
                    snprintf(err, err_size, "out of memory");
                credential_release(cred);
                json_decref(line);
                return -1;
            }
        } else if (revoke && json_object_size(line) == 1 &&
                   pkgstore_digest_parse(&hash, revoke) == 0) {
            if (push_revoked(st, &hash) < 0) {
                snprintf(err, err_size, "out of memory");
                json_decref(line);
                return -1;
            }
        } else {
            snprintf(err, err_size, "%s: line %zu: %s", path, lineno,
                     line ? "neither {\"issue\":{...}} nor {\"revoke\":\"sha256:...\"}"
                          : jerr.text);
            json_decref(line);
            return -1;
        }
        json_decref(line);
        p = end + 1;
    }
    g_creds.lines = lineno - 1 - (*torn ? 1 : 0);
    return 0;
}

int credentials_load(const char *path, size_t *count_out, char *err, size_t err_size)
{
    *count_out = 0;
    snprintf(g_creds.path, sizeof g_creds.path, "%s", path);
    g_creds.lines = 0;
    int state = tokens_file_private(path, err, err_size);
    if (state == 1)
        return 0; /* created on the first issue */
    if (state < 0)
        return -1;
    g_creds.exists = 1;
    size_t len = 0;
    char *text = NULL;
    if (read_whole_file(&text, &len, path, SIZE_MAX - 2) < 0) {
        snprintf(err, err_size, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    load_state st = {0};
    int torn = 0, version = 1, error;
    /* the first line says which version */
    const char *nl = memchr(text, '\n', len);
    json_t *header = json_loadb(text, nl ? (size_t)(nl - text) : len, 0, NULL);
    if (json_is_object(header) && json_object_size(header) == 1 &&
        json_integer_value(json_object_get(header, "version")) == 2)
        version = 2;
    json_decref(header);
    error = version == 2 ? load_v2(&st, text, len, path, &torn, err, err_size)
                         : load_v1(&st, text, len, path, err, err_size);
    /* a whole last line whose newline a crash cut off is kept, but the
     * next append must not join it: the file is written whole again */
    int unterminated = len > 0 && text[len - 1] != '\n';
    free(text);
    if (error == 0 && st.nrevoked) { /* drop what a later line revoked */
        qsort(st.revoked, st.nrevoked, sizeof *st.revoked, cmp_digest);
        size_t kept = 0;
        for (size_t i = 0; i < st.count; i++) {
            if (bsearch(&st.items[i]->hash, st.revoked, st.nrevoked, sizeof *st.revoked,
                        cmp_digest))
                credential_release(st.items[i]);
            else
                st.items[kept++] = st.items[i];
        }
        st.count = kept;
    }
    free(st.revoked);
    if (error == 0 && st.count)
        qsort(st.items, st.count, sizeof *st.items, cmp_item);
    for (size_t i = 1; error == 0 && i < st.count; i++) {
        if (cmp_hash(&st.items[i - 1]->hash, &st.items[i]->hash) == 0) {
            snprintf(err, err_size, "%s: credential %s issued twice", path, st.items[i]->id);
            error = -1;
        }
    }
    node_credential **by_node = NULL;
    if (error == 0 && !(by_node = malloc((st.count ? st.count : 1) * sizeof *by_node))) {
        snprintf(err, err_size, "out of memory");
        error = -1;
    }
    if (error == 0 && st.count) {
        memcpy(by_node, st.items, st.count * sizeof *by_node);
        qsort(by_node, st.count, sizeof *by_node, cmp_listed);
    }
    if (error == 0 && (version == 1 || torn || unterminated || g_creds.lines > 2 * st.count + JOURNAL_SLACK)) {
        if (torn)
            log_msg(LOG_WARN, "node credentials: the last line was cut short (a crash while "
                              "it was written; never confirmed); it is dropped", "file=%s", path);
        error = snapshot(by_node, st.count, err, err_size);
    }
    if (error < 0) {
        for (size_t i = 0; i < st.count; i++)
            credential_release(st.items[i]);
        free(st.items);
        free(by_node);
        return -1;
    }
    pthread_rwlock_wrlock(&g_creds.lock);
    g_creds.items = st.items;
    g_creds.count = st.count;
    g_creds.by_node = by_node;
    pthread_rwlock_unlock(&g_creds.lock);
    *count_out = st.count;
    return 0;
}

void credentials_unload(void)
{
    pthread_rwlock_wrlock(&g_creds.lock);
    for (size_t i = 0; i < g_creds.count; i++)
        credential_release(g_creds.items[i]);
    free(g_creds.items);
    free(g_creds.by_node);
    g_creds.items = NULL;
    g_creds.by_node = NULL;
    g_creds.count = 0;
    pthread_rwlock_unlock(&g_creds.lock);
}

/* ---------------------------------------------------------------- requests */

node_credential *credentials_check(const char *token, size_t len)
{
    pkgstore_digest presented;
    node_credential *found = NULL;
    if (!token || len == 0 || pkgstore_digest_buffer(&presented, token, len) < 0)
        return NULL;
    pthread_rwlock_rdlock(&g_creds.lock);
    /* Searched by hash: what a timing difference could tell is where the
     * SHA-256 of the presented token falls among the hashes, which says
     * nothing about any token. */
    size_t low = 0, high = g_creds.count;
    while (low < high && !found) {
        size_t mid = low + (high - low) / 2;
        int order = cmp_hash(&presented, &g_creds.items[mid]->hash);
        if (order == 0) {
            found = g_creds.items[mid];
            atomic_fetch_add(&found->refs, 1);
        } else if (order < 0) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    pthread_rwlock_unlock(&g_creds.lock);
    return found;
}

node_credential *credentials_for_node(const char *node)
{
    node_credential *found = NULL;
    if (!node || !*node)
        return NULL;
    pthread_rwlock_rdlock(&g_creds.lock);
    /* the last of node's run in by_node is its newest */
    size_t low = 0, high = g_creds.count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (strcmp(g_creds.by_node[mid]->node, node) <= 0)
            low = mid + 1;
        else
            high = mid;
    }
    if (low > 0 && strcmp(g_creds.by_node[low - 1]->node, node) == 0)
        found = g_creds.by_node[low - 1];
    if (found)
        atomic_fetch_add(&found->refs, 1);
    pthread_rwlock_unlock(&g_creds.lock);
    return found;
}

const char *credentials_node(const node_credential *cred)
{
    return cred->node;
}

const char *credentials_id(const node_credential *cred)
{
    return cred->id;
}

void credentials_identity(fleet_identity *out, const node_credential *cred)
{
    out->node_id = cred->node;
    out->labels = cred->pinned;
    out->nlabels = cred->npinned;
    out->self_keys = cred->self_keys;
    out->nself_keys = cred->nself;
    out->self_any = cred->self_any;
}

/* Listings go by node, then age, then id. */
static int cmp_listed(const void *a, const void *b)
{
    const node_credential *x = *(node_credential *const *)a, *y = *(node_credential *const *)b;
    int order = strcmp(x->node, y->node);
    if (order == 0)
        order = (x->created > y->created) - (x->created < y->created);
    if (order == 0) /* issued within the same second: the later issue is newer */
        order = (x->seq > y->seq) - (x->seq < y->seq);
    return order ? order : strcmp(x->id, y->id);
}

json_t *credentials_list(void)
{
    json_t *list = json_array();
    pthread_rwlock_rdlock(&g_creds.lock);
    for (size_t i = 0; list && i < g_creds.count; i++) { /* by_node is the listing's order */
        if (json_array_append_new(list, credential_record(g_creds.by_node[i], 0)) < 0) {
            json_decref(list);
            list = NULL;
        }
    }
    pthread_rwlock_unlock(&g_creds.lock);
    return list ? json_pack("{s:o}", "credentials", list) : NULL;
}

int credentials_issue(json_t **record_out, char *token_out, size_t token_size, const char *node,
                      json_t *labels, json_t *self_labels, char *err, size_t err_size)
{
    unsigned char random_bytes[32];
    static const char hex[] = "0123456789abcdef";
    char token[80] = "psn_";
    pkgstore_digest hash;

    *record_out = NULL;
    if (getrandom(random_bytes, sizeof random_bytes, 0) != (ssize_t)sizeof random_bytes) {
        snprintf(err, err_size, "getrandom: %s", strerror(errno));
        return PKGSTORE_EIO;
    }
    for (size_t i = 0; i < sizeof random_bytes; i++) {
        token[4 + 2 * i] = hex[random_bytes[i] >> 4];
        token[4 + 2 * i + 1] = hex[random_bytes[i] & 15];
    }
    token[4 + 2 * sizeof random_bytes] = '\0';
    explicit_bzero(random_bytes, sizeof random_bytes);
    if (pkgstore_digest_buffer(&hash, token, strlen(token)) < 0) {
        snprintf(err, err_size, "sha256: %s", pkgstore_error_detail());
        return PKGSTORE_EIO;
    }
    node_credential *cred =
        credential_from(node, labels, self_labels, (int64_t)time(NULL), &hash, err, err_size);
    if (!cred)
        return PKGSTORE_EINVALID;

    pthread_mutex_lock(&g_creds.write_lock);
    node_credential **grown = malloc((g_creds.count + 1) * sizeof *grown);
    node_credential **grown_by_node = malloc((g_creds.count + 1) * sizeof *grown_by_node);
    int error = 0;
    if (!grown || !grown_by_node) {
        snprintf(err, err_size, "out of memory");
        error = PKGSTORE_ENOMEM;
    } else {
        size_t at = 0; /* keep the order by hash */
        while (at < g_creds.count && cmp_hash(&g_creds.items[at]->hash, &cred->hash) < 0)
            at++;
        if (g_creds.count) /* items is NULL in an empty set */
            memcpy(grown, g_creds.items, at * sizeof *grown);
        grown[at] = cred;
        if (g_creds.count)
            memcpy(grown + at + 1, g_creds.items + at, (g_creds.count - at) * sizeof *grown);
        at = by_node_position(cred); /* and the order by node */
        if (g_creds.count)
            memcpy(grown_by_node, g_creds.by_node, at * sizeof *grown_by_node);
        grown_by_node[at] = cred;
        if (g_creds.count)
            memcpy(grown_by_node + at + 1, g_creds.by_node + at,
                   (g_creds.count - at) * sizeof *grown_by_node);
        if (record_change(json_pack("{s:o}", "issue", credential_record(cred, 1)),
                          grown_by_node, g_creds.count + 1, err, err_size) < 0)
            error = PKGSTORE_EIO;
    }
    if (error == 0) {
        *record_out = credential_record(cred, 0);
        pthread_rwlock_wrlock(&g_creds.lock);
        free(g_creds.items);
        free(g_creds.by_node);
        g_creds.items = grown;
        g_creds.by_node = grown_by_node;
        g_creds.count++;
        pthread_rwlock_unlock(&g_creds.lock);
        maybe_compact(g_creds.by_node, g_creds.count);
        cred = NULL; /* now owned by the set */
        grown = NULL;
        grown_by_node = NULL;
        snprintf(token_out, token_size, "%s", token);
    }
    pthread_mutex_unlock(&g_creds.write_lock);
    free(grown);
    free(grown_by_node);
    credential_release(cred);
    explicit_bzero(token, sizeof token);
    return error;
}

int credentials_revoke(json_t **record_out, const char *id, char *err, size_t err_size)
{
    int error = 0;
    size_t matches = 0, at = 0;

    *record_out = NULL;
    pthread_mutex_lock(&g_creds.write_lock);
    size_t id_len = strlen(id);
    for (size_t i = 0; i < g_creds.count; i++) {
        if (id_len >= 4 && id_len <= CREDENTIAL_ID_LEN &&
            strncmp(g_creds.items[i]->id, id, id_len) == 0) {
            matches++;
            at = i;
        }
    }
    if (matches != 1) {
        snprintf(err, err_size, matches ? "credential %s: ambiguous; give more of its id"
                                        : "credential %s: no such credential", id);
        error = matches ? PKGSTORE_EINVALID : PKGSTORE_ENOTFOUND;
        goto out;
    }
    node_credential **kept = malloc((g_creds.count ? g_creds.count : 1) * sizeof *kept);
    if (!kept) {
        snprintf(err, err_size, "out of memory");
        error = PKGSTORE_ENOMEM;
        goto out;
    }
    size_t n = 0;
    for (size_t i = 0; i < g_creds.count; i++) {
        if (i != at)
            kept[n++] = g_creds.items[i];
    }
    char digest[PKGSTORE_DIGEST_STR_SIZE];
    pkgstore_digest_format(digest, &g_creds.items[at]->hash);
    if (record_change(json_pack("{s:s}", "revoke", digest), kept, n, err, err_size) < 0) {
        free(kept);
        error = PKGSTORE_EIO;
        goto out;
    }
    node_credential *gone = g_creds.items[at];
    *record_out = credential_record(gone, 0);
    pthread_rwlock_wrlock(&g_creds.lock);
    free(g_creds.items);
    g_creds.items = kept;
    by_node_remove(gone);
    g_creds.count = n;
    pthread_rwlock_unlock(&g_creds.lock);
    maybe_compact(g_creds.by_node, g_creds.count);
    credential_release(gone); /* requests in flight keep their reference */
out:
    pthread_mutex_unlock(&g_creds.write_lock);
    return error;
}
