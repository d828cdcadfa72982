/*
 * server/api/metrics.c - counters for /metrics (Prometheus text format 0.0.4).
 *
 * Counters are lock-free atomics bumped from the worker threads; the
 * per-policy node gauges are computed from the fleet (server/fleet/) when
 * /metrics is scraped.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../server.h"

#define STATUS_MAX 600

static atomic_uint_fast64_t requests[ROUTE_COUNT][STATUS_MAX];
static atomic_uint_fast64_t bytes_served;
static atomic_uint_fast64_t uploads_ok, uploads_failed, upload_bytes;
static atomic_uint_fast64_t heartbeats;
static atomic_uint_fast64_t node_mismatches;
static atomic_uint_fast64_t client_certificates_refused;
static atomic_uint_fast64_t trust_refused[TRUST_DOC_COUNT][TRUST_REFUSED_COUNT];
static atomic_uint_fast64_t unsigned_refused[UNSIGNED_REFUSED_COUNT];
static time_t started_at;

static const char *const route_labels[ROUTE_COUNT] = {
    [ROUTE_OTHER] = "other",
    [ROUTE_HEALTHZ] = "/healthz",
    [ROUTE_METRICS] = "/metrics",
    [ROUTE_BLOBS] = "/v1/blobs",
    [ROUTE_BLOB] = "/v1/blobs/{digest}",
    [ROUTE_PACKAGES] = "/v1/packages",
    [ROUTE_PACKAGE] = "/v1/packages/{name}",
    [ROUTE_PACKAGE_VERSION] = "/v1/packages/{name}/{version}",
    [ROUTE_POLICIES] = "/v1/policies",
    [ROUTE_POLICY] = "/v1/policies/{name}",
    [ROUTE_POLICY_RETRY] = "/v1/policies/{name}/retry",
    [ROUTE_HEARTBEAT] = "/v1/agents/heartbeat",
    [ROUTE_AGENTS] = "/v1/agents",
    [ROUTE_AGENT] = "/v1/agents/{id}",
    [ROUTE_CREDENTIALS] = "/v1/credentials",
    [ROUTE_CREDENTIAL] = "/v1/credentials/{id}",
    [ROUTE_SIGNATURES] = "/v1/packages/{name}/{version}/signatures",
    [ROUTE_TRUST_ROOT] = "/v1/trust/root",
    [ROUTE_REVOCATIONS] = "/v1/trust/revocations",
    [ROUTE_POLICY_ROLLOUT] = "/v1/policies/{name}/{pause,resume,abort}",
    [ROUTE_AUDIT] = "/v1/audit",
    [ROUTE_ROOT] = "/",
    [ROUTE_UI] = "/ui/{file}",
    [ROUTE_SESSION] = "/v1/session",
    [ROUTE_OPAMP] = "/v1/opamp",
};

const char *route_label(enum route route)
{
    return (route >= 0 && route < ROUTE_COUNT) ? route_labels[route] : "other";
}

void metrics_request(enum route route, unsigned int status)
{
    if (route < 0 || route >= ROUTE_COUNT || status >= STATUS_MAX)
        return;
    if (!started_at)
        started_at = time(NULL);
    atomic_fetch_add_explicit(&requests[route][status], 1, memory_order_relaxed);
}

void metrics_bytes_served(uint64_t bytes)
{
    atomic_fetch_add_explicit(&bytes_served, bytes, memory_order_relaxed);
}

void metrics_upload(int ok, uint64_t bytes)
{
    atomic_fetch_add_explicit(ok ? &uploads_ok : &uploads_failed, 1, memory_order_relaxed);
    if (ok)
        atomic_fetch_add_explicit(&upload_bytes, bytes, memory_order_relaxed);
}

void metrics_heartbeat(void)
{
    atomic_fetch_add_explicit(&heartbeats, 1, memory_order_relaxed);
}

void metrics_node_mismatch(void)
{
    atomic_fetch_add_explicit(&node_mismatches, 1, memory_order_relaxed);
}

void metrics_client_certificate_refused(void)
{
    atomic_fetch_add_explicit(&client_certificates_refused, 1, memory_order_relaxed);
}

static const char *const trust_document_labels[TRUST_DOC_COUNT] = {
    [TRUST_DOC_ROOT] = "root",
    [TRUST_DOC_REVOCATION] = "revocation",
    [TRUST_DOC_SIGNATURE] = "signature",
};

static const char *const trust_refusal_labels[TRUST_REFUSED_COUNT] = {
    [TRUST_REFUSED_MALFORMED] = "malformed", [TRUST_REFUSED_UNTRUSTED] = "untrusted",
    [TRUST_REFUSED_CONFLICT] = "conflict",   [TRUST_REFUSED_NOT_FOUND] = "not_found",
    [TRUST_REFUSED_ERROR] = "error",
};

static const char *const unsigned_refusal_labels[UNSIGNED_REFUSED_COUNT] = {
    [UNSIGNED_REFUSED_POLICY] = "policy",
    [UNSIGNED_REFUSED_UPLOAD] = "upload",
};

enum trust_refusal trust_refusal_of(int error)
{
    switch (error) {
    case PKGSTORE_EINVALID:
    case PKGSTORE_EUNSUPPORTED:
    case PKGSTORE_ELIMIT:
        return TRUST_REFUSED_MALFORMED;
    case PKGSTORE_EDENIED:
        return TRUST_REFUSED_UNTRUSTED;
    case PKGSTORE_ECONFLICT:
    case PKGSTORE_EEXISTS:
        return TRUST_REFUSED_CONFLICT;
    case PKGSTORE_ENOTFOUND:
        return TRUST_REFUSED_NOT_FOUND;
    default:
        return TRUST_REFUSED_ERROR;
    }
}

void metrics_trust_refused(enum trust_document document, enum trust_refusal reason)
{
    if (document < 0 || document >= TRUST_DOC_COUNT || reason < 0 || reason >= TRUST_REFUSED_COUNT)
        return;
    atomic_fetch_add_explicit(&trust_refused[document][reason], 1, memory_order_relaxed);
}

void metrics_unsigned_refused(enum unsigned_refusal what)
{
    if (what < 0 || what >= UNSIGNED_REFUSED_COUNT)
        return;
    atomic_fetch_add_explicit(&unsigned_refused[what], 1, memory_order_relaxed);
}

typedef struct text_buf {
    char *data;
    size_t len, cap;
    int failed;
} text_buf;

static void tb_printf(text_buf *tb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(text_buf *tb, const char *fmt, ...)
{
    if (tb->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tb->data + tb->len, tb->cap - tb->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            tb->failed = 1;
            return;
        }
        if ((size_t)n < tb->cap - tb->len) {
            tb->len += (size_t)n;
            return;
        }
        size_t cap = tb->cap * 2 + (size_t)n + 1;
        char *data = realloc(tb->data, cap);
        if (!data) {
            tb->failed = 1;
            return;
        }
        tb->data = data;
        tb->cap = cap;
    }
}

/* Label values are policy names and status words: escape per the format. */
static const char *label_escape(char *buf, size_t size, const char *s)
{
    size_t o = 0;
    for (; *s && o + 3 < size; s++) {
        if (*s == '\\' || *s == '"') {
            buf[o++] = '\\';
            buf[o++] = *s;
        } else if (*s == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *s;
        }
    }
    buf[o] = '\0';
    return buf;
}

static void emit_node_gauge(void *ctx, const char *policy, const char *status, uint64_t count)
{
    char p[512], s[128];
    tb_printf(ctx, "pkgstored_nodes{policy=\"%s\",status=\"%s\"} %llu\n",
              label_escape(p, sizeof p, policy), label_escape(s, sizeof s, status),
              (unsigned long long)count);
}

/* One line per rollout state: 1 for the policy's state, 0 for the others,
 * so that a query can select a state without knowing the others. */
static void emit_rollout_state(void *ctx, const char *policy, const char *state)
{
    static const char *const states[] = {"running", "soaking", "paused", "done", "aborted"};
    char p[512];
    label_escape(p, sizeof p, policy);
    for (size_t i = 0; i < sizeof states / sizeof *states; i++)
        tb_printf(ctx, "pkgstored_rollout_state{policy=\"%s\",state=\"%s\"} %d\n", p, states[i],
                  strcmp(state, states[i]) == 0);
}

char *metrics_render(size_t *len_out)
{
    text_buf tb = {malloc(16384), 0, 16384, 0};
    if (!tb.data)
        return NULL;
    tb_printf(&tb, "# HELP pkgstored_build_info Build information.\n"
                   "# TYPE pkgstored_build_info gauge\n"
                   "pkgstored_build_info{version=\"%s\"} 1\n",
              pkgstore_library_version());
    tb_printf(&tb, "# HELP pkgstored_requests_total HTTP requests by route and status.\n"
                   "# TYPE pkgstored_requests_total counter\n");
    for (int route = 0; route < ROUTE_COUNT; route++) {
        for (int status = 0; status < STATUS_MAX; status++) {
            uint64_t n = atomic_load_explicit(&requests[route][status], memory_order_relaxed);
            if (n)
                tb_printf(&tb, "pkgstored_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
                          route_labels[route], status, (unsigned long long)n);
        }
    }
    tb_printf(&tb,
              "# HELP pkgstored_served_bytes_total Response body bytes sent.\n"
              "# TYPE pkgstored_served_bytes_total counter\n"
              "pkgstored_served_bytes_total %llu\n"
              "# HELP pkgstored_uploads_total Blob and package uploads by result.\n"
              "# TYPE pkgstored_uploads_total counter\n"
              "pkgstored_uploads_total{result=\"ok\"} %llu\n"
              "pkgstored_uploads_total{result=\"failed\"} %llu\n"
              "# HELP pkgstored_uploaded_bytes_total Bytes of successful uploads.\n"
              "# TYPE pkgstored_uploaded_bytes_total counter\n"
              "pkgstored_uploaded_bytes_total %llu\n"
              "# HELP pkgstored_heartbeats_total Agent heartbeats handled.\n"
              "# TYPE pkgstored_heartbeats_total counter\n"
              "pkgstored_heartbeats_total %llu\n"
              "# HELP pkgstored_node_mismatch_total Requests refused because a node credential "
              "spoke for another node.\n"
              "# TYPE pkgstored_node_mismatch_total counter\n"
              "pkgstored_node_mismatch_total %llu\n"
              "# HELP pkgstored_requests_in_flight Requests being handled.\n"
              "# TYPE pkgstored_requests_in_flight gauge\n"
              "pkgstored_requests_in_flight %ld\n"
              "# HELP pkgstored_console_sessions Web console sessions signed in and not "
              "expired.\n"
              "# TYPE pkgstored_console_sessions gauge\n"
              "pkgstored_console_sessions %u\n",
              (unsigned long long)atomic_load(&bytes_served),
              (unsigned long long)atomic_load(&uploads_ok),
              (unsigned long long)atomic_load(&uploads_failed),
              (unsigned long long)atomic_load(&upload_bytes),
              (unsigned long long)atomic_load(&heartbeats),
              (unsigned long long)atomic_load(&node_mismatches),
              (long)atomic_load(&g_server.in_flight), session_count());
    tb_printf(&tb,
              "# HELP pkgstored_client_certificates_refused_total Requests without a token "
              "whose client certificate did not verify or names a node without a credential.\n"
              "# TYPE pkgstored_client_certificates_refused_total counter\n"
              "pkgstored_client_certificates_refused_total %llu\n",
              (unsigned long long)atomic_load(&client_certificates_refused));
    tb_printf(&tb, "# HELP pkgstored_connections_open Client connections open now.\n"
                   "# TYPE pkgstored_connections_open gauge\n"
                   "pkgstored_connections_open %ld\n"
                   "# HELP pkgstored_connections_cut_total Connections cut for a deadline, by reason.\n"
                   "# TYPE pkgstored_connections_cut_total counter\n",
              guard_open_connections());
    for (int cut = 0; cut < GUARD_CUT_COUNT; cut++)
        tb_printf(&tb, "pkgstored_connections_cut_total{reason=\"%s\"} %lu\n",
                  guard_cut_name((enum guard_cut)cut), guard_cut_count((enum guard_cut)cut));
    tb_printf(&tb, "# HELP pkgstored_trust_refused_total Trust documents refused on PUT, by "
                   "document and reason.\n"
                   "# TYPE pkgstored_trust_refused_total counter\n");
    for (int doc = 0; doc < TRUST_DOC_COUNT; doc++)
        for (int reason = 0; reason < TRUST_REFUSED_COUNT; reason++)
            tb_printf(&tb, "pkgstored_trust_refused_total{document=\"%s\",reason=\"%s\"} %llu\n",
                      trust_document_labels[doc], trust_refusal_labels[reason],
                      (unsigned long long)atomic_load(&trust_refused[doc][reason]));
    tb_printf(&tb, "# HELP pkgstored_unsigned_refused_total Requests refused by "
                   "--require-signatures, by request.\n"
                   "# TYPE pkgstored_unsigned_refused_total counter\n");
    for (int what = 0; what < UNSIGNED_REFUSED_COUNT; what++)
        tb_printf(&tb, "pkgstored_unsigned_refused_total{request=\"%s\"} %llu\n",
                  unsigned_refusal_labels[what],
                  (unsigned long long)atomic_load(&unsigned_refused[what]));
    fleet_stats stats;
    memset(&stats, 0, sizeof stats);
    if (g_server.fleet)
        fleet_stats_get(g_server.fleet, &stats);
    tb_printf(&tb,
              "# HELP pkgstored_nodes_known Nodes that have sent a heartbeat.\n"
              "# TYPE pkgstored_nodes_known gauge\n"
              "pkgstored_nodes_known %zu\n"
              "# HELP pkgstored_node_profiles Distinct node reports held (nodes share them).\n"
              "# TYPE pkgstored_node_profiles gauge\n"
              "pkgstored_node_profiles %zu\n"
              "# HELP pkgstored_nodes_unsaved Nodes changed since their record was last written.\n"
              "# TYPE pkgstored_nodes_unsaved gauge\n"
              "pkgstored_nodes_unsaved %zu\n"
              "# HELP pkgstored_fleet_degraded 1 while node records cannot be written.\n"
              "# TYPE pkgstored_fleet_degraded gauge\n"
              "pkgstored_fleet_degraded %d\n"
              "# HELP pkgstored_fleet_flush_failures_total Write-behind rounds that failed.\n"
              "# TYPE pkgstored_fleet_flush_failures_total counter\n"
              "pkgstored_fleet_flush_failures_total %llu\n"
              "# HELP pkgstored_nodes_expired_total Nodes forgotten after their silence.\n"
              "# TYPE pkgstored_nodes_expired_total counter\n"
              "pkgstored_nodes_expired_total %llu\n"
              "# HELP pkgstored_nodes_refused_total New node ids refused, by reason.\n"
              "# TYPE pkgstored_nodes_refused_total counter\n"
              "pkgstored_nodes_refused_total{reason=\"max_nodes\"} %llu\n"
              "pkgstored_nodes_refused_total{reason=\"rate\"} %llu\n",
              stats.nodes, stats.profiles, stats.unsaved, stats.degraded,
              (unsigned long long)stats.flushes_failed, (unsigned long long)stats.nodes_expired,
              (unsigned long long)stats.nodes_refused, (unsigned long long)stats.nodes_throttled);
    fleet_trust_stats trust;
    if (metrics_trust_stats(&trust) == 0) {
        int64_t age = trust.oldest_newest_signed ? (int64_t)time(NULL) - trust.oldest_newest_signed
                                                 : 0;
        tb_printf(&tb,
                  "# HELP pkgstored_nodes_trust_reporting Nodes that report what they verified "
                  "(trust.root).\n"
                  "# TYPE pkgstored_nodes_trust_reporting gauge\n"
                  "pkgstored_nodes_trust_reporting %llu\n"
                  "# HELP pkgstored_nodes_trust_behind Nodes on an older root or revocation "
                  "generation than the server holds.\n"
                  "# TYPE pkgstored_nodes_trust_behind gauge\n"
                  "pkgstored_nodes_trust_behind{on=\"root\"} %llu\n"
                  "pkgstored_nodes_trust_behind{on=\"revocations\"} %llu\n"
                  "# HELP pkgstored_trust_newest_signed_max_age_seconds The oldest newest-signed "
                  "time a node reports, as an age (0: none reported).\n"
                  "# TYPE pkgstored_trust_newest_signed_max_age_seconds gauge\n"
                  "pkgstored_trust_newest_signed_max_age_seconds %lld\n",
                  (unsigned long long)trust.nodes_reporting,
                  (unsigned long long)trust.behind_root,
                  (unsigned long long)trust.behind_revocations, (long long)(age > 0 ? age : 0));
    }
    tb_printf(&tb, "# HELP pkgstored_nodes Nodes by rollout state per policy.\n"
                   "# TYPE pkgstored_nodes gauge\n");
    metrics_render_nodes(emit_node_gauge, &tb);
    tb_printf(&tb, "# HELP pkgstored_rollout_state The state of each policy's rollout (1 for the "
                   "current one).\n"
                   "# TYPE pkgstored_rollout_state gauge\n");
    if (g_server.fleet)
        fleet_rollout_foreach(g_server.fleet, emit_rollout_state, &tb);
    tb_printf(&tb, "# HELP pkgstored_rollout_auto_pauses_total Rollouts paused by their failure "
                   "threshold since the start.\n"
                   "# TYPE pkgstored_rollout_auto_pauses_total counter\n"
                   "pkgstored_rollout_auto_pauses_total %llu\n",
              (unsigned long long)(g_server.fleet ? fleet_rollout_auto_pauses(g_server.fleet) : 0));
    if (tb.failed) {
        free(tb.data);
        return NULL;
    }
    *len_out = tb.len;
    return tb.data;
}
