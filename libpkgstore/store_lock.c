/*
 * store_lock: the store lock. Writers (the link and record steps of an
 * ingest, registry changes, zstd copies) hold it shared; gc, fsck repair
 * and blob deletes hold it exclusively. Between processes it is a flock()
 * on <store>/lock, so `flock -x <store>/lock` keeps every writer out.
 *
 * Three rules make it safe to take in a request path:
 *   - Nothing blocks inside the kernel: every flock() is LOCK_NB, retried
 *     with a short backoff until the handle's timeout (set with
 *     pkgstore_store_set_lock_timeout()) runs out, which gives
 *     PKGSTORE_ELOCKED. lock_mutex is never held across a call that can
 *     block, so one thread waiting for the lock never stalls another.
 *   - Writers do not starve an exclusive locker. Before it waits, an
 *     exclusive locker takes an OFD write lock on <store>/lock.intent (and
 *     keeps it until it unlocks); a new shared holder in any process first
 *     asks (F_OFD_GETLK) whether someone holds it, and waits while someone
 *     does. Inside a process, a thread waiting for exclusive stops new
 *     shared holders of the same handle the same way.
 *   - Holds nest per thread: a thread that holds the lock may take it
 *     again (shared inside exclusive too) without waiting, which is what
 *     lets a registry change add its manifest blob.
 *
 * A BATCH handle keeps the lock shared from its first commit to the sync
 * that records the batch (batch_hold): blobs waiting for their record are
 * still under the lock, so gc, repair and withdraw never judge them. It
 * yields: a commit that sees an exclusive locker waiting syncs the batch
 * first, and an exclusive request on the handle itself syncs it too.
 */
#include "store_impl.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_NS 250000L    /* 0.25 ms */
#define BACKOFF_MAX_NS 16000000L  /* 16 ms */
#define NS_PER_SEC 1000000000L

struct deadline {
    int unlimited;
    struct timespec at; /* CLOCK_MONOTONIC */
};

static void deadline_init(struct deadline *d, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, &d->at);
    d->unlimited = timeout_ms < 0;
    if (timeout_ms > 0) {
        d->at.tv_sec += timeout_ms / 1000;
        d->at.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (d->at.tv_nsec >= NS_PER_SEC) {
            d->at.tv_sec++;
            d->at.tv_nsec -= NS_PER_SEC;
        }
    }
}

static int timespec_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static int deadline_passed(const struct deadline *d)
{
    struct timespec now;
    if (d->unlimited)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return !timespec_before(&now, &d->at);
}

/* now + ns, but no later than the deadline */
static struct timespec wake_time(const struct deadline *d, long ns)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_nsec += ns;
    while (t.tv_nsec >= NS_PER_SEC) {
        t.tv_sec++;
        t.tv_nsec -= NS_PER_SEC;
    }
    if (!d->unlimited && timespec_before(&d->at, &t))
        t = d->at;
    return t;
}

/* Sleep for the backoff (then double it), never past the deadline. */
static void backoff_sleep(long *backoff_ns, const struct deadline *d)
{
    struct timespec until = wake_time(d, *backoff_ns);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
        ;
    if (*backoff_ns < BACKOFF_MAX_NS)
        *backoff_ns *= 2;
}

/* Wait on lock_cond (lock_mutex held) for a broadcast, at most poll_ns (0:
 * only until the deadline). Returns 0, or PKGSTORE_ELOCKED once the
 * deadline has passed. */
static int wait_cond(pkgstore_store *store, const struct deadline *d, long poll_ns)
{
    if (deadline_passed(d))
        return PKGSTORE_ELOCKED;
    if (poll_ns == 0 && d->unlimited) {
        pthread_cond_wait(&store->lock_cond, &store->lock_mutex);
    } else {
        struct timespec until = poll_ns ? wake_time(d, poll_ns) : d->at;
        pthread_cond_clockwait(&store->lock_cond, &store->lock_mutex, CLOCK_MONOTONIC, &until);
    }
    return 0;
}

/* ------------------------------------------------------------------ intent */

static int intent_op(pkgstore_store *store, int cmd, short type)
{
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    if (fcntl(store->intent_fd, cmd, &fl) < 0)
        return -1;
    return cmd == F_OFD_GETLK ? fl.l_type != F_UNLCK : 0;
}

/* 1 when another handle (in any process) waits for or holds the lock
 * exclusively, as announced on lock.intent. */
static int other_wants_exclusive(pkgstore_store *store)
{
    if (store->intent_fd < 0)
        return 0;
    return intent_op(store, F_OFD_GETLK, F_WRLCK) == 1;
}

/* Take the intent lock: 1 taken, 0 someone else has it, or a negative
 * code. A handle that cannot write the intent file (a read-only store of
 * another user) goes without: it still gets the lock, only later. */
static int intent_try(pkgstore_store *store)
{
    if (store->intent_fd < 0)
        return 1;
    if (intent_op(store, F_OFD_SETLK, F_WRLCK) == 0)
        return 1;
    if (errno == EAGAIN || errno == EACCES)
        return 0;
    if (errno == EBADF)
        return 1; /* opened read-only */
    return ps_error_errno(errno, "%s/lock.intent: fcntl", store->path) == PKGSTORE_ENOMEM
               ? PKGSTORE_ENOMEM
               : PKGSTORE_EIO;
}

static void intent_release(pkgstore_store *store)
{
    if (store->intent_fd >= 0 && store->intent_held)
        (void)intent_op(store, F_OFD_SETLK, F_UNLCK);
    store->intent_held = 0;
}

/* ------------------------------------------------------------------ flock */

/* One non-blocking flock(): 1 taken, 0 busy, or a negative code. */
static int flock_try(pkgstore_store *store, int operation)
{
    if (store->lock_fd < 0)
        return 1; /* a read-only store without a lock file has no writers */
    for (;;) {
        if (flock(store->lock_fd, operation | LOCK_NB) == 0)
            return 1;
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            return 0;
        return ps_error_errno(errno, "%s/lock: flock", store->path) == PKGSTORE_ENOMEM
                   ? PKGSTORE_ENOMEM
                   : PKGSTORE_EIO;
    }
}

static void flock_release(pkgstore_store *store)
{
    if (store->lock_fd >= 0)
        (void)flock(store->lock_fd, LOCK_UN);
    store->flock_state = PS_FLOCK_NONE;
}

static int timeout_error(pkgstore_store *store, int exclusive)
{
    if (exclusive)
        return ps_error_set(PKGSTORE_ELOCKED,
                            "%s/lock: still in use by writers after %d ms (store lock timeout)",
                            store->path, store->lock_timeout_ms);
    return ps_error_set(PKGSTORE_ELOCKED,
                        "%s/lock: held or awaited exclusively (gc, repair or a delete) after "
                        "%d ms (store lock timeout)",
                        store->path, store->lock_timeout_ms < 0 ? 0 : store->lock_timeout_ms);
}

/* ------------------------------------------------------------------ holders */

static ps_lock_holder *find_holder(pkgstore_store *store, pthread_t self)
{
    for (size_t i = 0; i < store->holders_len; i++)
        if (pthread_equal(store->holders[i].thread, self))
            return &store->holders[i];
    return NULL;
}

static int add_holder(pkgstore_store *store, pthread_t self)
{
    if (store->holders_len == store->holders_cap) {
        size_t cap = store->holders_cap ? store->holders_cap * 2 : 8;
        ps_lock_holder *grown = realloc(store->holders, cap * sizeof(*grown));
        if (grown == NULL)
            return ps_error_set(PKGSTORE_ENOMEM, "store lock: out of memory");
        store->holders = grown;
        store->holders_cap = cap;
    }
    store->holders[store->holders_len].thread = self;
    store->holders[store->holders_len].depth = 1;
    store->holders_len++;
    return 0;
}

/* The last shared holder is gone: let the flock go (unless a batch keeps it). */
static void release_if_unheld(pkgstore_store *store)
{
    if (store->holders_len == 0 && !store->batch_hold && store->flock_state == PS_FLOCK_SHARED &&
        !store->acquiring)
        flock_release(store);
}

/* Sync the handle's pending batch (which ends its batch hold). Called with
 * lock_mutex held; releases it meanwhile. */
static int flush_batch(pkgstore_store *store)
{
    int error;
    pthread_mutex_unlock(&store->lock_mutex);
    error = pkgstore_store_sync(store);
    pthread_mutex_lock(&store->lock_mutex);
    return error;
}

/* ------------------------------------------------------------------ lock */

static int lock_shared(pkgstore_store *store, pthread_t self, const struct deadline *d)
{
    int error;
    for (;;) {
        if (store->exclusive_depth == 0 && store->exclusive_waiters == 0 && !store->acquiring &&
            !store->exclusive_acquiring) {
            if (store->flock_state == PS_FLOCK_SHARED) {
                /* this handle has it: join, unless another process waits */
                if (!other_wants_exclusive(store))
                    return add_holder(store, self);
                if (store->batch_hold) {
                    if ((error = flush_batch(store)) < 0)
                        return error;
                    if (!store->batch_hold)
                        continue;
                }
            } else if (store->flock_state == PS_FLOCK_NONE) {
                long backoff = BACKOFF_MIN_NS;
                store->acquiring = 1;
                pthread_mutex_unlock(&store->lock_mutex);
                for (;;) {
                    error = other_wants_exclusive(store) ? 0 : flock_try(store, LOCK_SH);
                    if (error != 0 || deadline_passed(d))
                        break;
                    backoff_sleep(&backoff, d);
                }
                pthread_mutex_lock(&store->lock_mutex);
                store->acquiring = 0;
                pthread_cond_broadcast(&store->lock_cond);
                if (error < 0)
                    return error;
                if (error == 0)
                    return timeout_error(store, 0);
                store->flock_state = PS_FLOCK_SHARED;
                return add_holder(store, self);
            }
        }
        /* poll: another process's intent goes away without a broadcast */
        if (wait_cond(store, d, BACKOFF_MAX_NS) < 0)
            return timeout_error(store, 0);
    }
}

static int lock_exclusive(pkgstore_store *store, pthread_t self, const struct deadline *d)
{
    long backoff = BACKOFF_MIN_NS;
    int error = 0, got;

    /* one thread of a handle at a time works towards exclusive: the intent
     * lock belongs to the handle, not to the thread */
    while (store->exclusive_depth > 0 || store->exclusive_acquiring) {
        if (wait_cond(store, d, 0) < 0)
            return timeout_error(store, 1);
    }
    store->exclusive_acquiring = 1;
    store->exclusive_waiters++;

    /* announce it to other processes, then wait for this handle's holders */
    pthread_mutex_unlock(&store->lock_mutex);
    while ((got = intent_try(store)) == 0 && !deadline_passed(d))
        backoff_sleep(&backoff, d);
    pthread_mutex_lock(&store->lock_mutex);
    if (got < 0) {
        error = got;
        goto fail;
    }
    if (got == 0) {
        error = timeout_error(store, 1);
        goto fail;
    }
    store->intent_held = store->intent_fd >= 0;
    for (;;) {
        if (store->holders_len == 0 && !store->acquiring) {
            if (!store->batch_hold)
                break;
            if ((error = flush_batch(store)) < 0)
                goto fail;
            continue;
        }
        if (wait_cond(store, d, 0) < 0) {
            error = timeout_error(store, 1);
            goto fail;
        }
    }
    /* nothing of this handle holds it now; other processes drain */
    store->acquiring = 1;
    pthread_mutex_unlock(&store->lock_mutex);
    backoff = BACKOFF_MIN_NS;
    while ((got = flock_try(store, LOCK_EX)) == 0 && !deadline_passed(d))
        backoff_sleep(&backoff, d);
    pthread_mutex_lock(&store->lock_mutex);
    store->acquiring = 0;
    if (got <= 0) {
        error = got < 0 ? got : timeout_error(store, 1);
        goto fail;
    }
    store->flock_state = PS_FLOCK_EXCLUSIVE;
    store->exclusive_owner = self;
    store->exclusive_depth = 1;
    store->exclusive_acquiring = 0;
    store->exclusive_waiters--;
    pthread_cond_broadcast(&store->lock_cond);
    return 0;

fail:
    intent_release(store);
    store->exclusive_acquiring = 0;
    store->exclusive_waiters--;
    pthread_cond_broadcast(&store->lock_cond);
    return error;
}

int ps_store_lock(pkgstore_store *store, int exclusive, int nonblock)
{
    pthread_t self = pthread_self();
    struct deadline d;
    ps_lock_holder *holder;
    int error = 0;

    if (store == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "store lock: NULL store");
    pthread_mutex_lock(&store->lock_mutex);
    deadline_init(&d, nonblock ? 0 : store->lock_timeout_ms);
    if (store->exclusive_depth > 0 && pthread_equal(store->exclusive_owner, self)) {
        store->exclusive_depth++; /* the exclusive holder may take it again, either way */
        goto out;
    }
    if ((holder = find_holder(store, self)) != NULL) {
        if (exclusive) {
            error = ps_error_set(PKGSTORE_EINVALID,
                                 "%s/lock: this thread holds the store lock shared and asks "
                                 "for it exclusively (that would wait for itself)",
                                 store->path);
            goto out;
        }
        holder->depth++;
        goto out;
    }
    error = exclusive ? lock_exclusive(store, self, &d) : lock_shared(store, self, &d);
out:
    pthread_mutex_unlock(&store->lock_mutex);
    return error;
}

void ps_store_unlock(pkgstore_store *store)
{
    pthread_t self = pthread_self();
    ps_lock_holder *holder;

    if (store == NULL)
        return;
    pthread_mutex_lock(&store->lock_mutex);
    if (store->exclusive_depth > 0 && pthread_equal(store->exclusive_owner, self)) {
        if (--store->exclusive_depth == 0) {
            flock_release(store);
            intent_release(store);
            pthread_cond_broadcast(&store->lock_cond);
        }
    } else if ((holder = find_holder(store, self)) != NULL) {
        if (--holder->depth == 0) {
            *holder = store->holders[--store->holders_len];
            release_if_unheld(store);
            pthread_cond_broadcast(&store->lock_cond);
        }
    }
    pthread_mutex_unlock(&store->lock_mutex);
}

int ps_store_lock_held(pkgstore_store *store)
{
    pthread_t self = pthread_self();
    int held;
    pthread_mutex_lock(&store->lock_mutex);
    held = (store->exclusive_depth > 0 && pthread_equal(store->exclusive_owner, self)) ||
           find_holder(store, self) != NULL;
    pthread_mutex_unlock(&store->lock_mutex);
    return held;
}

/* ------------------------------------------------------------------ batch */

int ps_store_lock_hold_for_batch(pkgstore_store *store)
{
    int waiting;
    pthread_mutex_lock(&store->lock_mutex);
    if (store->flock_state == PS_FLOCK_SHARED)
        store->batch_hold = 1;
    /* a thread of this handle: now. Another process: the next commit's
     * lock sees its intent (one syscall per blob less) */
    waiting = store->exclusive_waiters > 0;
    pthread_mutex_unlock(&store->lock_mutex);
    return waiting;
}

void ps_store_lock_release_batch(pkgstore_store *store)
{
    pthread_mutex_lock(&store->lock_mutex);
    if (store->batch_hold) {
        store->batch_hold = 0;
        release_if_unheld(store);
        pthread_cond_broadcast(&store->lock_cond);
    }
    pthread_mutex_unlock(&store->lock_mutex);
}

/* ------------------------------------------------------------------ setup */

int ps_store_lock_open(pkgstore_store *store)
{
    int flags = (store->opts.read_only ? O_RDONLY : O_RDWR | O_CREAT) | O_CLOEXEC;
    store->lock_timeout_ms = -1;
    store->lock_fd = openat(store->root_fd, "lock", flags, 0644);
    if (store->lock_fd < 0 && !(store->opts.read_only && errno == ENOENT))
        return ps_error_errno(errno, "%s/lock: open", store->path);
    /* read-only handles may still queue for exclusive (fsck confirming
     * orphans) when the file lets them write; else they go without */
    store->intent_fd = openat(store->root_fd, "lock.intent", O_RDWR | O_CLOEXEC |
                              (store->opts.read_only ? 0 : O_CREAT), 0644);
    if (store->intent_fd < 0 && store->opts.read_only)
        store->intent_fd = openat(store->root_fd, "lock.intent", O_RDONLY | O_CLOEXEC);
    if (store->intent_fd < 0 && !store->opts.read_only)
        return ps_error_errno(errno, "%s/lock.intent: open", store->path);
    return 0;
}

void ps_store_lock_close(pkgstore_store *store)
{
    if (store->intent_fd >= 0)
        close(store->intent_fd);
    if (store->lock_fd >= 0)
        close(store->lock_fd);
    store->intent_fd = store->lock_fd = -1;
    free(store->holders);
    store->holders = NULL;
    store->holders_len = store->holders_cap = 0;
}

PKGSTORE_API int pkgstore_store_set_lock_timeout(pkgstore_store *store, int timeout_ms)
{
    if (store == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "store lock timeout: NULL store");
    pthread_mutex_lock(&store->lock_mutex);
    store->lock_timeout_ms = timeout_ms < 0 ? -1 : timeout_ms;
    pthread_mutex_unlock(&store->lock_mutex);
    return 0;
}
