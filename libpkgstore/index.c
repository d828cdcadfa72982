/*
 * index: the LMDB environment under <store>/index/ in which every module
 * keeps its records (the blob and package records are index_records.c).
 * This file hides what LMDB leaves to its caller:
 * map growth (MDB_MAP_FULL is retried in a bigger map, MDB_MAP_RESIZED
 * adopts the size another process chose), one environment per process,
 * batched walks and error translation. The key and value layouts are
 * documented in docs/index-format.md.
 *
 * Map resizing requires that no transaction of this process is live, so
 * every transaction holds resize_lock shared and a resize takes it
 * exclusively. Transactions must therefore never nest on one thread.
 */
#include "index.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "error.h"

#define DEFAULT_MAP_SIZE ((uint64_t)256 << 20)
#define MIN_MAP_SIZE ((uint64_t)32 << 10)
#define MAX_MAP_SIZE ((uint64_t)1 << 40) /* 1 TiB: beyond it MAP_FULL is ENOSPC */
#define MAX_READERS 1024
#define MAX_DBS 32
#define INDEX_FORMAT 1u
#define FOREACH_BATCH 256
#define READ_POOL 64


struct ps_index {
    MDB_env *env;
    MDB_dbi dbis[PS_DB_COUNT];
    int read_only;
    pthread_rwlock_t resize_lock; /* shared: a live txn; exclusive: resizing */
    uint64_t map_size;            /* the size we mapped; changes under the exclusive lock */
    /* Reset read transactions kept for reuse: renewing one skips the
     * allocation and the reader-table lock of a fresh begin. */
    pthread_mutex_t pool_mutex;
    MDB_txn *pool[READ_POOL];
    size_t pooled;
    /* sharing between handles of one process (see ps_index_open) */
    dev_t dev;
    ino_t ino;
    pid_t pid;
    int no_sync;
    unsigned int refs;
    ps_index *next;
};

static const char *const db_names[PS_DB_COUNT] = {
    [PS_DB_META] = "meta",           [PS_DB_BLOBS] = "blobs", [PS_DB_PACKAGES] = "packages",
    [PS_DB_MANIFESTS] = "manifests", [PS_DB_PINS] = "pins",   [PS_DB_POLICIES] = "policies",
    [PS_DB_NODES] = "nodes", [PS_DB_SIGNATURES] = "signatures",
};

/* The MDB code last translated on this thread: ps_index_write() looks here
 * to see whether fn failed because the map was full. */
static _Thread_local int last_mdb_rc;

/* Transactions of this thread now running. A nested one could deadlock: a
 * resize (exclusive lock) would wait for the outer transaction's shared
 * lock held by the very same thread. So nesting is refused outright. */
static _Thread_local int txn_depth;

static int refuse_nested(void)
{
    return ps_error_set(PKGSTORE_EINTERNAL,
                        "index: transaction started inside another one on this thread");
}

/* ---------------------------------------------------------------- errors */

int ps_index_error(int mdb_rc, const char *fmt, ...)
{
    char context[512];
    int code;
    va_list ap;

    last_mdb_rc = mdb_rc;
    va_start(ap, fmt);
    vsnprintf(context, sizeof(context), fmt, ap);
    va_end(ap);

    switch (mdb_rc) {
    case MDB_NOTFOUND:
        code = PKGSTORE_ENOTFOUND;
        break;
    case MDB_KEYEXIST:
        code = PKGSTORE_EEXISTS;
        break;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        code = PKGSTORE_ENOSPC;
        break;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
        code = PKGSTORE_ECORRUPT;
        break;
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE:
        code = PKGSTORE_EFORMAT;
        break;
    case MDB_READERS_FULL:
        code = PKGSTORE_ELIMIT;
        break;
    case MDB_BAD_VALSIZE:
        code = PKGSTORE_EINVALID;
        break;
    default:
        code = mdb_rc > 0 ? ps_error_code_from_errno(mdb_rc) : PKGSTORE_EIO;
        break;
    }
    /* (mdb_strerror() of an errno value is strerror(), shared between threads) */
    char text[256];
    return ps_error_set(code, "lmdb: %s: %s",
                        mdb_rc > 0 ? ps_error_errno_text(mdb_rc, text, sizeof(text))
                                   : mdb_strerror(mdb_rc),
                        context);
}

/* A full disk, told apart from an I/O error. LMDB reports a short write
 * (which is what a write that runs out of space returns when it wrote
 * anything at all) as EIO. When the write that failed was LMDB's and the
 * index's filesystem is now (nearly) out of blocks for us, the cause is the
 * space: say PKGSTORE_ENOSPC, quoting LMDB. error is returned otherwise. */
#define FULL_DISK_SLACK (1u << 20) /* bytes free that still count as full */

static int full_disk(ps_index *index, int error)
{
    struct statvfs vfs;
    const char *dir = NULL;
    char lmdb_detail[600];

    if (error >= 0 || last_mdb_rc != EIO || index == NULL ||
        mdb_env_get_path(index->env, &dir) != 0 || dir == NULL || statvfs(dir, &vfs) != 0)
        return error;
    /* root may use the blocks reserved for it */
    uint64_t blocks = geteuid() == 0 ? (uint64_t)vfs.f_bfree : (uint64_t)vfs.f_bavail;
    uint64_t bytes = blocks * (uint64_t)vfs.f_frsize;
    if (bytes >= FULL_DISK_SLACK)
        return error;
    snprintf(lmdb_detail, sizeof(lmdb_detail), "%s", pkgstore_error_detail());
    return ps_error_set(PKGSTORE_ENOSPC,
                        "%s: no space left on device (%" PRIu64 " bytes free; %s: a short write)",
                        dir, bytes, lmdb_detail);
}

/* ---------------------------------------------------------------- open */

static int open_databases_once(ps_index *index)
{
    MDB_txn *txn = NULL;
    unsigned int txn_flags = index->read_only ? MDB_RDONLY : 0;
    unsigned int dbi_flags = index->read_only ? 0 : MDB_CREATE;
    MDB_val key = {6, (void *)"format"}, val;
    int rc;

    if ((rc = mdb_txn_begin(index->env, NULL, txn_flags, &txn)) != 0)
        return ps_index_error(rc, "begin transaction to open the databases");
    for (int db = 0; db < PS_DB_COUNT; db++) {
        if ((rc = mdb_dbi_open(txn, db_names[db], dbi_flags, &index->dbis[db])) != 0) {
            mdb_txn_abort(txn);
            if (rc == MDB_NOTFOUND)
                return ps_error_set(PKGSTORE_EFORMAT,
                                    "index: database '%s' is missing (open the store "
                                    "read-write once to create it)",
                                    db_names[db]);
            return ps_index_error(rc, "open database '%s'", db_names[db]);
        }
    }

    /* The layout version of the whole index lives in meta under "format". */
    rc = mdb_get(txn, index->dbis[PS_DB_META], &key, &val);
    if (rc == 0) {
        uint32_t format;
        if (val.mv_size != 4) {
            mdb_txn_abort(txn);
            return ps_error_set(PKGSTORE_EFORMAT, "index: malformed format record");
        }
        memcpy(&format, val.mv_data, 4);
        if (format != INDEX_FORMAT) {
            mdb_txn_abort(txn);
            return ps_error_set(PKGSTORE_EFORMAT, "index: unknown format %" PRIu32
                                " (this library knows %u)", format, INDEX_FORMAT);
        }
    } else if (rc == MDB_NOTFOUND && !index->read_only) {
        uint32_t format = INDEX_FORMAT;
        val.mv_size = 4;
        val.mv_data = &format;
        if ((rc = mdb_put(txn, index->dbis[PS_DB_META], &key, &val, 0)) != 0) {
            mdb_txn_abort(txn);
            return ps_index_error(rc, "write the index format");
        }
    } else if (rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return ps_index_error(rc, "read the index format");
    }
    /* Committing (even a read-only txn) makes the dbi handles env-wide. */
    if ((rc = mdb_txn_commit(txn)) != 0)
        return ps_index_error(rc, "open the databases");
    return 0;
}

/* No other thread has the handle yet, so the map can be resized freely:
 * adopt a size another process grew the map to, or grow it ourselves. */
static int open_databases(ps_index *index)
{
    for (int attempt = 0;; attempt++) {
        MDB_envinfo info;
        int error, rc;

        last_mdb_rc = 0;
        if ((error = open_databases_once(index)) == 0 || attempt == 40)
            return error;
        if (last_mdb_rc == MDB_MAP_RESIZED)
            rc = mdb_env_set_mapsize(index->env, 0);
        else if (last_mdb_rc == MDB_MAP_FULL && !index->read_only &&
                 index->map_size < MAX_MAP_SIZE)
            rc = mdb_env_set_mapsize(index->env, (size_t)index->map_size * 2);
        else
            return error;
        if (rc != 0)
            return ps_index_error(rc, "resize map");
        mdb_env_info(index->env, &info);
        index->map_size = info.me_mapsize;
        pkgstore_error_clear();
    }
}

static void close_env(ps_index *index);

static int open_env(ps_index **out, const char *dir, int read_only, int no_sync, uint64_t map_size)
{
    ps_index *index = NULL;
    unsigned int flags = MDB_NOTLS;
    MDB_envinfo info;
    char data_path[4096];
    struct stat st;
    int rc, error = 0, dead = 0, exists;

    if (out == NULL || dir == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "index: NULL argument");
    *out = NULL;
    if (map_size == 0)
        map_size = DEFAULT_MAP_SIZE;
    if (map_size < MIN_MAP_SIZE)
        map_size = MIN_MAP_SIZE;
    if (map_size > SIZE_MAX / 2)
        return ps_error_set(PKGSTORE_EINVALID, "index: map size %" PRIu64 " too large", map_size);

    if (!read_only && mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ps_error_errno(errno, "%s: mkdir", dir);

    if ((index = calloc(1, sizeof(*index))) == NULL)
        return ps_error_set(PKGSTORE_ENOMEM, "index: out of memory");
    index->read_only = read_only;
    if (pthread_rwlock_init(&index->resize_lock, NULL) != 0) {
        free(index);
        return ps_error_set(PKGSTORE_ENOMEM, "index: pthread_rwlock_init failed");
    }
    if (pthread_mutex_init(&index->pool_mutex, NULL) != 0) {
        pthread_rwlock_destroy(&index->resize_lock);
        free(index);
        return ps_error_set(PKGSTORE_ENOMEM, "index: pthread_mutex_init failed");
    }

    if ((rc = mdb_env_create(&index->env)) != 0) {
        index->env = NULL;
        error = ps_index_error(rc, "%s: create environment", dir);
        goto out;
    }
    mdb_env_set_maxdbs(index->env, MAX_DBS);
    mdb_env_set_maxreaders(index->env, MAX_READERS);
    /* An existing environment keeps the size recorded in its file (another
     * process may have grown it), raised below to what was asked for; a
     * new one starts at the size asked for. */
    snprintf(data_path, sizeof(data_path), "%s/data.mdb", dir);
    exists = stat(data_path, &st) == 0 && st.st_size > 0;
    mdb_env_set_mapsize(index->env, exists ? 0 : (size_t)map_size);
    if (read_only)
        flags |= MDB_RDONLY;
    if (no_sync)
        flags |= MDB_NOSYNC;
    if ((rc = mdb_env_open(index->env, dir, flags, 0644)) != 0) {
        error = ps_index_error(rc, "%s: open environment", dir);
        if (rc == ENOENT)
            error = ps_error_set(PKGSTORE_ENOTFOUND, "lmdb: %s: no index here", dir);
        goto out;
    }
    mdb_env_info(index->env, &info);
    if (info.me_mapsize < map_size && !read_only) {
        if ((rc = mdb_env_set_mapsize(index->env, (size_t)map_size)) != 0) {
            error = ps_index_error(rc, "%s: set map size %" PRIu64, dir, map_size);
            goto out;
        }
        mdb_env_info(index->env, &info);
    }
    index->map_size = info.me_mapsize;

    /* Readers left by killed processes would pin old pages forever and fill
     * the reader table; a read-only open may lack the right to clean. */
    if ((rc = mdb_reader_check(index->env, &dead)) != 0 && !read_only) {
        error = ps_index_error(rc, "%s: reader check", dir);
        goto out;
    }

    if ((error = open_databases(index)) < 0) {
        ps_error_prefix("%s", dir);
        goto out;
    }
    *out = index;
    index = NULL; /* now owned by the caller */
out:
    close_env(index);
    return error;
}

static void close_env(ps_index *index)
{
    if (index == NULL)
        return;
    for (size_t i = 0; i < index->pooled; i++)
        mdb_txn_abort(index->pool[i]);
    if (index->env != NULL)
        mdb_env_close(index->env);
    pthread_mutex_destroy(&index->pool_mutex);
    pthread_rwlock_destroy(&index->resize_lock);
    free(index);
}

/* LMDB must not open one environment twice in a process: closing either
 * drops the process's POSIX locks on lock.mdb for both, and the next
 * process to open it would then reset a reader table still in use. So
 * handles on one data.mdb (same device and inode, same process) share one
 * environment, counted. */
static pthread_mutex_t open_envs_mutex = PTHREAD_MUTEX_INITIALIZER;
static ps_index *open_envs;

static ps_index *find_open_env(const char *dir)
{
    char data_path[4096];
    struct stat st;

    snprintf(data_path, sizeof(data_path), "%s/data.mdb", dir);
    if (stat(data_path, &st) != 0)
        return NULL;
    for (ps_index *index = open_envs; index != NULL; index = index->next)
        if (index->dev == st.st_dev && index->ino == st.st_ino && index->pid == getpid())
            return index;
    return NULL;
}

int ps_index_open(ps_index **out, const char *dir, int read_only, int no_sync, uint64_t map_size)
{
    char data_path[4096];
    struct stat st;
    ps_index *index;
    int error = 0;

    if (out == NULL || dir == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "index: NULL argument");
    *out = NULL;
    pthread_mutex_lock(&open_envs_mutex);
    if ((index = find_open_env(dir)) != NULL) {
        if (index->read_only && !read_only) {
            error = ps_error_set(PKGSTORE_ELOCKED,
                                 "index: %s is already open read-only in this process", dir);
            goto out;
        }
        /* durability wins: one handle asking for syncs gets them for all */
        if (!no_sync && index->no_sync && mdb_env_set_flags(index->env, MDB_NOSYNC, 0) == 0)
            index->no_sync = 0;
        index->refs++;
        *out = index;
        goto out;
    }
    if ((error = open_env(&index, dir, read_only, no_sync, map_size)) < 0)
        goto out;
    snprintf(data_path, sizeof(data_path), "%s/data.mdb", dir);
    if (stat(data_path, &st) != 0) {
        error = ps_error_errno(errno, "%s: stat", data_path);
        close_env(index);
        goto out;
    }
    index->dev = st.st_dev;
    index->ino = st.st_ino;
    index->pid = getpid();
    index->no_sync = no_sync;
    index->refs = 1;
    index->next = open_envs;
    open_envs = index;
    *out = index;
out:
    pthread_mutex_unlock(&open_envs_mutex);
    return error;
}

void ps_index_free(ps_index *index)
{
    if (index == NULL)
        return;
    pthread_mutex_lock(&open_envs_mutex);
    if (--index->refs > 0) {
        pthread_mutex_unlock(&open_envs_mutex);
        return;
    }
    for (ps_index **link = &open_envs; *link != NULL; link = &(*link)->next) {
        if (*link == index) {
            *link = index->next;
            break;
        }
    }
    pthread_mutex_unlock(&open_envs_mutex);
    close_env(index);
}

MDB_env *ps_index_env(ps_index *index)
{
    return index->env;
}

const char *ps_index_db_name(enum ps_index_db db)
{
    return (int)db >= 0 && db < PS_DB_COUNT ? db_names[db] : "?";
}

MDB_dbi ps_index_dbi(ps_index *index, enum ps_index_db db)
{
    return index->dbis[db];
}

int ps_index_writable(ps_index *index)
{
    return index != NULL && !index->read_only;
}

uint64_t ps_index_map_size(ps_index *index)
{
    uint64_t size;
    pthread_rwlock_rdlock(&index->resize_lock);
    size = index->map_size;
    pthread_rwlock_unlock(&index->resize_lock);
    return size;
}

/* ---------------------------------------------------------------- map size */

/* Called with no transaction live on this thread. grow: double the map
 * unless another thread already changed it since we saw seen_size; else
 * adopt the size another process wrote (MDB_MAP_RESIZED). */
static int resize_map(ps_index *index, int grow, uint64_t seen_size)
{
    MDB_envinfo info;
    int rc, error = 0;

    pthread_rwlock_wrlock(&index->resize_lock);
    if (index->map_size != seen_size)
        goto out; /* someone else resized meanwhile: just retry */
    if (grow) {
        uint64_t new_size = index->map_size * 2;
        if (index->map_size >= MAX_MAP_SIZE || new_size > SIZE_MAX / 2) {
            error = ps_error_set(PKGSTORE_ENOSPC,
                                 "lmdb: MDB_MAP_FULL: map of %" PRIu64 " bytes at its limit",
                                 index->map_size);
            goto out;
        }
        rc = mdb_env_set_mapsize(index->env, (size_t)new_size);
    } else {
        rc = mdb_env_set_mapsize(index->env, 0);
    }
    if (rc != 0) {
        error = ps_index_error(rc, "resize map from %" PRIu64 " bytes", index->map_size);
        if (error == PKGSTORE_ENOMEM || grow)
            error = ps_error_set(PKGSTORE_ENOSPC, "lmdb: cannot grow the map beyond %" PRIu64
                                 " bytes: %s", index->map_size, mdb_strerror(rc));
        goto out;
    }
    mdb_env_info(index->env, &info);
    index->map_size = info.me_mapsize;
out:
    pthread_rwlock_unlock(&index->resize_lock);
    return error;
}

/* ---------------------------------------------------------------- transactions */

int ps_index_write(ps_index *index, ps_index_txn_fn fn, void *payload)
{
    if (index == NULL || fn == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "index: NULL argument");
    if (index->read_only)
        return ps_error_set(PKGSTORE_EDENIED, "index: opened read-only");
    if (txn_depth > 0)
        return refuse_nested();

    for (;;) {
        MDB_txn *txn = NULL;
        uint64_t seen_size;
        int rc, error, grow;

        pthread_rwlock_rdlock(&index->resize_lock);
        seen_size = index->map_size;
        rc = mdb_txn_begin(index->env, NULL, 0, &txn);
        if (rc == MDB_MAP_RESIZED) {
            pthread_rwlock_unlock(&index->resize_lock);
            if ((error = resize_map(index, 0, seen_size)) < 0)
                return error;
            continue;
        }
        if (rc != 0) {
            pthread_rwlock_unlock(&index->resize_lock);
            return ps_index_error(rc, "begin write transaction");
        }

        last_mdb_rc = 0;
        txn_depth++;
        error = fn(txn, index, payload);
        txn_depth--;
        grow = 0;
        if (error < 0) {
            grow = last_mdb_rc == MDB_MAP_FULL;
            mdb_txn_abort(txn);
        } else if ((rc = mdb_txn_commit(txn)) != 0) {
            grow = rc == MDB_MAP_FULL;
            /* A put that hit MAP_FULL but was ignored by fn leaves the txn
             * in error: commit reports it as MDB_BAD_TXN. */
            if (rc == MDB_BAD_TXN && last_mdb_rc == MDB_MAP_FULL)
                grow = 1;
            error = ps_index_error(rc, "commit");
        }
        pthread_rwlock_unlock(&index->resize_lock);

        if (!grow)
            return full_disk(index, error);
        if ((error = resize_map(index, 1, seen_size)) < 0)
            return error;
        pkgstore_error_clear();
    }
}

int ps_index_read(ps_index *index, ps_index_txn_fn fn, void *payload)
{
    if (index == NULL || fn == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "index: NULL argument");
    if (txn_depth > 0)
        return refuse_nested();

    for (;;) {
        MDB_txn *txn = NULL;
        uint64_t seen_size;
        int rc, error;

        pthread_rwlock_rdlock(&index->resize_lock);
        seen_size = index->map_size;
        pthread_mutex_lock(&index->pool_mutex);
        if (index->pooled > 0)
            txn = index->pool[--index->pooled];
        pthread_mutex_unlock(&index->pool_mutex);
        if (txn != NULL && mdb_txn_renew(txn) != 0) {
            mdb_txn_abort(txn); /* start afresh: the begin below reports why */
            txn = NULL;
        }
        rc = txn != NULL ? 0 : mdb_txn_begin(index->env, NULL, MDB_RDONLY, &txn);
        if (rc == MDB_MAP_RESIZED) {
            pthread_rwlock_unlock(&index->resize_lock);
            if ((error = resize_map(index, 0, seen_size)) < 0)
                return error;
            continue;
        }
        if (rc != 0) {
            pthread_rwlock_unlock(&index->resize_lock);
            return ps_index_error(rc, "begin read transaction");
        }
        txn_depth++;
        error = fn(txn, index, payload);
        txn_depth--;
        mdb_txn_reset(txn);
        pthread_mutex_lock(&index->pool_mutex);
        if (index->pooled < READ_POOL) {
            index->pool[index->pooled++] = txn;
            txn = NULL; /* now owned by the pool */
        }
        pthread_mutex_unlock(&index->pool_mutex);
        if (txn != NULL)
            mdb_txn_abort(txn);
        pthread_rwlock_unlock(&index->resize_lock);
        return error;
    }
}

/* ---------------------------------------------------------------- raw walk */

struct batch {
    enum ps_index_db db;
    const void *prefix;
    size_t prefix_len;
    /* resume point: the last key handed out (exclusive) */
    unsigned char *resume;
    size_t resume_len;
    int started;
    /* collected records: [u32 klen][u32 vlen][key][val] ... */
    unsigned char *buf;
    size_t used, cap;
    size_t count;
    int done;
};

static int batch_append(struct batch *batch, const MDB_val *key, const MDB_val *val)
{
    size_t need = 8 + key->mv_size + val->mv_size;
    uint32_t klen = (uint32_t)key->mv_size, vlen = (uint32_t)val->mv_size;

    if (batch->used + need > batch->cap) {
        size_t cap = batch->cap ? batch->cap : 16384;
        unsigned char *grown;
        while (cap < batch->used + need)
            cap *= 2;
        if ((grown = realloc(batch->buf, cap)) == NULL)
            return ps_error_set(PKGSTORE_ENOMEM, "index: out of memory");
        batch->buf = grown;
        batch->cap = cap;
    }
    memcpy(batch->buf + batch->used, &klen, 4);
    memcpy(batch->buf + batch->used + 4, &vlen, 4);
    memcpy(batch->buf + batch->used + 8, key->mv_data, key->mv_size);
    memcpy(batch->buf + batch->used + 8 + key->mv_size, val->mv_data, val->mv_size);
    batch->used += need;
    batch->count++;
    return 0;
}

static int collect_batch(MDB_txn *txn, ps_index *index, void *payload)
{
    struct batch *batch = payload;
    MDB_cursor *cursor = NULL;
    MDB_val key, val;
    int rc, error = 0;

    batch->used = 0;
    batch->count = 0;
    if ((rc = mdb_cursor_open(txn, index->dbis[batch->db], &cursor)) != 0)
        return ps_index_error(rc, "open cursor on %s", db_names[batch->db]);

    if (batch->started) {
        key.mv_size = batch->resume_len;
        key.mv_data = batch->resume;
        rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
        if (rc == 0 && key.mv_size == batch->resume_len &&
            memcmp(key.mv_data, batch->resume, key.mv_size) == 0)
            rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
    } else if (batch->prefix_len > 0) {
        key.mv_size = batch->prefix_len;
        key.mv_data = (void *)batch->prefix;
        rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
    } else {
        rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST);
    }

    while (rc == 0 && batch->count < FOREACH_BATCH) {
        if (batch->prefix_len > 0 &&
            (key.mv_size < batch->prefix_len ||
             memcmp(key.mv_data, batch->prefix, batch->prefix_len) != 0)) {
            rc = MDB_NOTFOUND;
            break;
        }
        if ((error = batch_append(batch, &key, &val)) < 0)
            goto out;
        rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND)
        batch->done = 1;
    else if (rc != 0)
        error = ps_index_error(rc, "walk %s", db_names[batch->db]);
out:
    mdb_cursor_close(cursor);
    return error;
}

int ps_index_foreach(ps_index *index, enum ps_index_db db, const void *prefix, size_t prefix_len,
                     ps_index_raw_cb cb, void *payload)
{
    struct batch batch;
    int error = 0;

    if (index == NULL || cb == NULL || (int)db < 0 || db >= PS_DB_COUNT ||
        (prefix == NULL && prefix_len > 0))
        return ps_error_set(PKGSTORE_EINVALID, "index: bad argument to foreach");
    memset(&batch, 0, sizeof(batch));
    batch.db = db;
    batch.prefix = prefix;
    batch.prefix_len = prefix_len;

    while (!batch.done) {
        size_t offset = 0, last_key_off = 0;
        uint32_t last_klen = 0;

        if ((error = ps_index_read(index, collect_batch, &batch)) < 0)
            goto out;
        for (size_t i = 0; i < batch.count; i++) {
            uint32_t klen, vlen;
            memcpy(&klen, batch.buf + offset, 4);
            memcpy(&vlen, batch.buf + offset + 4, 4);
            if ((error = cb(batch.buf + offset + 8, klen, batch.buf + offset + 8 + klen, vlen,
                            payload)) != 0)
                goto out;
            last_key_off = offset + 8;
            last_klen = klen;
            offset += 8 + (size_t)klen + vlen;
        }
        if (batch.count > 0) {
            unsigned char *resume = realloc(batch.resume, last_klen ? last_klen : 1);
            if (resume == NULL) {
                error = ps_error_set(PKGSTORE_ENOMEM, "index: out of memory");
                goto out;
            }
            memcpy(resume, batch.buf + last_key_off, last_klen);
            batch.resume = resume;
            batch.resume_len = last_klen;
            batch.started = 1;
        }
    }
out:
    free(batch.buf);
    free(batch.resume);
    return error;
}

/* (Added for the registry's cache check; see index.h.) mdb_env_info() reads
 * the meta pages through the map, so it runs under the resize lock like a
 * transaction would. */
uint64_t ps_index_last_txnid(ps_index *index)
{
    MDB_envinfo info;
    int rc;
    if (index == NULL)
        return 0;
    pthread_rwlock_rdlock(&index->resize_lock);
    rc = mdb_env_info(index->env, &info);
    pthread_rwlock_unlock(&index->resize_lock);
    return rc == 0 ? (uint64_t)info.me_last_txnid : 0;
}
