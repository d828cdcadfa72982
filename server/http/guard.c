/*
 * server/http/guard.c - deadlines that libmicrohttpd does not enforce.
 *
 * libmicrohttpd 0.9.75 has only an idle timeout, which every byte resets:
 * a client sending one header line a minute, or one body byte a second,
 * holds its connection for ever. The guard tracks every connection from
 * MHD_OPTION_NOTIFY_CONNECTION and gives it
 *   - a deadline for the whole header block: --header-timeout from the
 *     accept (first request) or from the request line (later requests);
 *   - a deadline for the next request line on a kept-alive connection:
 *     --idle-timeout from the end of the previous response;
 *   - a minimum body rate: after --body-timeout the body must have come in
 *     at --min-body-rate bytes per second on average since it began.
 * A watchdog thread checks them and cuts an overdue connection with
 * shutdown(2); libmicrohttpd then sees end-of-file and closes it as it
 * closes any connection the client dropped (no response is sent).
 *
 * Why shutdown() cannot hit a reused descriptor: the watchdog calls it
 * only with guard_lock held and only for a record in the table, and the
 * record leaves the table in the MHD_CONNECTION_NOTIFY_CLOSED callback,
 * under the same lock. libmicrohttpd calls that callback before it closes
 * the socket (daemon.c, MHD_cleanup_connections: notify, epoll removal,
 * then MHD_socket_close_chk_; internal_add_connection's failure path
 * likewise). So while the watchdog holds the lock, every fd in the table
 * is still open and still the connection's. The CLOSED callback checks
 * that the fd is still open; should a future libmicrohttpd close first,
 * the guard logs it and stops cutting rather than risk another fd.
 *
 * Phase changes are written by the connection's worker thread and read by
 * the watchdog through atomics; a race at a transition can only cut a
 * connection that was at its deadline anyway.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../server.h"

enum conn_phase {
    PHASE_NEW = 0,   /* accepted, no request line yet */
    PHASE_KEEPALIVE, /* between two requests */
    PHASE_HEADERS,   /* request line in, header block not complete */
    PHASE_BODY,      /* headers in, body arriving */
    PHASE_RESPONDING /* handler and response: no deadline of ours */
};

struct conn_record {
    conn_record *prev, *next; /* guard_lock */
    int fd;
    int cut;                  /* guard_lock: shutdown() already called */
    char peer[INET6_ADDRSTRLEN];
    _Atomic int phase;
    _Atomic int64_t deadline_ms;   /* NEW, KEEPALIVE, HEADERS */
    _Atomic int64_t body_start_ms; /* BODY */
    _Atomic uint64_t body_bytes;   /* BODY */
    request *current;              /* the connection's worker thread only */
};

static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t guard_wake;
static conn_record *guard_head;
static guard_config guard_cfg;
static int guard_running, guard_stopping;
static atomic_int guard_unsafe; /* libmicrohttpd closed an fd before telling us */
static pthread_t guard_thread;
static atomic_ulong guard_cuts[GUARD_CUT_COUNT];
static atomic_long guard_open;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *const cut_names[GUARD_CUT_COUNT] = {"header_timeout", "idle_timeout",
                                                       "slow_body"};

const char *guard_cut_name(enum guard_cut cut)
{
    return (unsigned int)cut < GUARD_CUT_COUNT ? cut_names[cut] : "?";
}

unsigned long guard_cut_count(enum guard_cut cut)
{
    return (unsigned int)cut < GUARD_CUT_COUNT ? atomic_load(&guard_cuts[cut]) : 0;
}

long guard_open_connections(void)
{
    return atomic_load(&guard_open);
}

static void format_peer(char *out, size_t size, const struct sockaddr *addr)
{
    snprintf(out, size, "?");
    if (!addr)
        return;
    if (addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)addr)->sin_addr, out,
                  (socklen_t)size);
    else if (addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr, out,
                  (socklen_t)size);
}

void guard_notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                             enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_record *rec = calloc(1, sizeof *rec);
        *socket_context = rec;
        if (!rec)
            return; /* untracked: libmicrohttpd's idle timeout still applies */
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        rec->fd = info ? info->connect_fd : -1;
        info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        format_peer(rec->peer, sizeof rec->peer, info ? info->client_addr : NULL);
        atomic_store(&rec->deadline_ms, now_ms() + (int64_t)guard_cfg.header_timeout_s * 1000);
        atomic_store(&rec->phase, PHASE_NEW);
        pthread_mutex_lock(&guard_lock);
        rec->next = guard_head;
        if (guard_head)
            guard_head->prev = rec;
        guard_head = rec;
        pthread_mutex_unlock(&guard_lock);
        atomic_fetch_add(&guard_open, 1);
        return;
    }
    /* MHD_CONNECTION_NOTIFY_CLOSED: called before libmicrohttpd closes the fd */
    conn_record *rec = *socket_context;
    *socket_context = NULL;
    if (!rec)
        return;
    pthread_mutex_lock(&guard_lock);
    if (rec->prev)
        rec->prev->next = rec->next;
    else
        guard_head = rec->next;
    if (rec->next)
        rec->next->prev = rec->prev;
    pthread_mutex_unlock(&guard_lock);
    if (rec->fd >= 0 && fcntl(rec->fd, F_GETFD) < 0 && errno == EBADF &&
        !atomic_exchange(&guard_unsafe, 1))
        log_msg(LOG_ERROR,
                "libmicrohttpd closed a socket before notifying its end; connection deadlines "
                "are no longer enforced",
                "fd=%d", rec->fd);
    atomic_fetch_sub(&guard_open, 1);
    free(rec);
}

conn_record *guard_record(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

void guard_set_request(conn_record *rec, request *req)
{
    if (rec)
        rec->current = req;
}

request *guard_request(struct MHD_Connection *conn)
{
    conn_record *rec = guard_record(conn);
    return rec ? rec->current : NULL;
}

void guard_request_line(conn_record *rec)
{
    if (!rec)
        return;
    /* A first request keeps the deadline counted from the accept; a later
     * one gets its own, counted from its request line. */
    if (atomic_load(&rec->phase) != PHASE_NEW)
        atomic_store(&rec->deadline_ms, now_ms() + (int64_t)guard_cfg.header_timeout_s * 1000);
    atomic_store(&rec->phase, PHASE_HEADERS);
}

void guard_body_begin(conn_record *rec)
{
    if (!rec)
        return;
    atomic_store(&rec->body_bytes, 0);
    atomic_store(&rec->body_start_ms, now_ms());
    atomic_store(&rec->phase, PHASE_BODY);
}

void guard_body_bytes(conn_record *rec, uint64_t total)
{
    if (rec)
        atomic_store(&rec->body_bytes, total);
}

void guard_responding(conn_record *rec)
{
    if (rec)
        atomic_store(&rec->phase, PHASE_RESPONDING);
}

void guard_request_done(conn_record *rec)
{
    if (!rec)
        return;
    rec->current = NULL;
    atomic_store(&rec->deadline_ms, now_ms() + (int64_t)guard_cfg.idle_timeout_s * 1000);
    atomic_store(&rec->phase, PHASE_KEEPALIVE);
}

/* Why rec is overdue at now, or -1. */
static int overdue(const conn_record *rec, int64_t now)
{
    int phase = atomic_load(&rec->phase);
    switch (phase) {
    case PHASE_NEW:
    case PHASE_HEADERS:
        return now > atomic_load(&rec->deadline_ms) ? GUARD_CUT_HEADER : -1;
    case PHASE_KEEPALIVE:
        return now > atomic_load(&rec->deadline_ms) ? GUARD_CUT_IDLE : -1;
    case PHASE_BODY: {
        if (guard_cfg.min_body_rate == 0)
            return -1;
        int64_t elapsed = now - atomic_load(&rec->body_start_ms) -
                          (int64_t)guard_cfg.body_timeout_s * 1000;
        if (elapsed <= 0)
            return -1;
        /* bytes owed: elapsed seconds times the rate, in 128-bit-free form */
        uint64_t owed = (uint64_t)elapsed / 1000 * guard_cfg.min_body_rate +
                        (uint64_t)elapsed % 1000 * guard_cfg.min_body_rate / 1000;
        return atomic_load(&rec->body_bytes) < owed ? GUARD_CUT_SLOW_BODY : -1;
    }
    default:
        return -1;
    }
}

typedef struct cut_event {
    int reason;
    char peer[INET6_ADDRSTRLEN];
    uint64_t body_bytes;
} cut_event;

#define CUTS_PER_TICK 64
#define TICK_MS 250

static void *watchdog_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&guard_lock);
    while (!guard_stopping) {
        cut_event events[CUTS_PER_TICK];
        size_t nevents = 0;
        unsigned long dropped = 0;
        int64_t now = now_ms();
        if (!atomic_load(&guard_unsafe)) {
            for (conn_record *rec = guard_head; rec; rec = rec->next) {
                if (rec->cut || rec->fd < 0)
                    continue;
                int reason = overdue(rec, now);
                if (reason < 0)
                    continue;
                /* the fd is open and the connection's: see the file comment */
                shutdown(rec->fd, SHUT_RDWR);
                rec->cut = 1;
                atomic_fetch_add(&guard_cuts[reason], 1);
                if (nevents < CUTS_PER_TICK) {
                    events[nevents].reason = reason;
                    memcpy(events[nevents].peer, rec->peer, sizeof rec->peer);
                    events[nevents].body_bytes = atomic_load(&rec->body_bytes);
                    nevents++;
                } else {
                    dropped++;
                }
            }
        }
        pthread_mutex_unlock(&guard_lock);
        for (size_t i = 0; i < nevents; i++) {
            if (events[i].reason == GUARD_CUT_SLOW_BODY)
                log_msg(LOG_WARN, "connection cut", "reason=%s peer=%s body_bytes=%" PRIu64,
                        cut_names[events[i].reason], events[i].peer, events[i].body_bytes);
            else
                log_msg(LOG_WARN, "connection cut", "reason=%s peer=%s",
                        cut_names[events[i].reason], events[i].peer);
        }
        if (dropped)
            log_msg(LOG_WARN, "connections cut", "unlogged=%lu", dropped);
        pthread_mutex_lock(&guard_lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        if (!guard_stopping)
            pthread_cond_timedwait(&guard_wake, &guard_lock, &until);
    }
    pthread_mutex_unlock(&guard_lock);
    return NULL;
}

int guard_start(const guard_config *cfg)
{
    guard_cfg = *cfg;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&guard_wake, &attr);
    pthread_condattr_destroy(&attr);
    guard_stopping = 0;
    if (pthread_create(&guard_thread, NULL, watchdog_main, NULL) != 0)
        return -1;
    guard_running = 1;
    return 0;
}

void guard_stop(void)
{
    if (!guard_running)
        return;
    pthread_mutex_lock(&guard_lock);
    guard_stopping = 1;
    pthread_cond_signal(&guard_wake);
    pthread_mutex_unlock(&guard_lock);
    pthread_join(guard_thread, NULL);
    guard_running = 0;
}
