/*
 * pkgstore-fleetsim - a simulated fleet of agents against a real pkgstored
 * on 127.0.0.1, to measure the server and to watch a rollout go through it.
 *
 * Each simulated node speaks the agent's protocol (docs/api.md,
 * docs/policies.md; agent/report.c is the model): a heartbeat every
 * interval (with jitter); on an offer for its primary slot the steps
 * Downloading (with a full download, a Range probe or none), Verifying,
 * Validating, Swapping, Monitoring and Upgraded, each reported at once by a
 * heartbeat, or UpgradeFailed / RolledBack with a configured chance per
 * version, after which it treats the digest as bad until the policy's retry
 * generation rises, as the agent does.
 *
 * One thread, one libcurl multi handle, a fixed pool of transfers over a
 * few keep-alive connections (--connections): the nodes are small records
 * in an array, their next moments in a binary heap. It is bounded in count
 * (--nodes, at most FLEETSIM_NODES_MAX) and time (--duration), and it talks
 * to 127.0.0.1 only: the --server URL is checked by libcurl's URL parser,
 * and an offer's url must be a path on that server.
 *
 * At the end it prints latency percentiles per route, request rate, error
 * responses by status, the server's RSS and CPU (--server-pid), and the
 * rollout's timeline; --report FILE writes all of it as JSON with every
 * node's offers and final state.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli.h"
#include "httpclient.h"
#include "../common/tokenfile.h"

#define FLEETSIM_NODES_MAX 1000000u
#define FLEETSIM_DURATION_MAX 86400.0
#define FLEETSIM_CONNECTIONS_MAX 256 /* pkgstored's default per-address cap */
#define LABEL_KEYS_MAX 8
#define LABEL_VALUES_MAX 32
#define PLATFORMS_MAX 16
#define FAILS_MAX 32
#define STRINGS_MAX 65535
#define SAMPLES_MAX (64u * 1024 * 1024) /* per route: 256 MB of samples at most */
#define EXIT_ERRORS 1                   /* the run saw error responses */

/* ---------------------------------------------------------------- strings */

/* Versions, digests, policy names and statuses are interned: a node keeps
 * 16-bit indexes. Index 0 is "" (none). */
static struct {
    char **items;
    size_t count, cap;
} g_strings;

static uint16_t intern(const char *s)
{
    if (!s || !*s)
        return 0;
    for (size_t i = 1; i < g_strings.count; i++)
        if (!strcmp(g_strings.items[i], s))
            return (uint16_t)i;
    if (g_strings.count >= STRINGS_MAX)
        return 0; /* a run that sees 65k distinct versions has other problems */
    if (g_strings.count == g_strings.cap) {
        size_t cap = g_strings.cap ? g_strings.cap * 2 : 64;
        char **items = realloc(g_strings.items, cap * sizeof *items);
        if (!items)
            return 0;
        g_strings.items = items;
        g_strings.cap = cap;
    }
    if (g_strings.count == 0)
        g_strings.items[g_strings.count++] = strdup("");
    char *copy = strdup(s);
    if (!copy)
        return 0;
    g_strings.items[g_strings.count] = copy;
    return (uint16_t)g_strings.count++;
}

static const char *str(uint16_t idx)
{
    return idx && idx < g_strings.count ? g_strings.items[idx] : "";
}

/* ---------------------------------------------------------------- statuses */

enum status {
    ST_NONE,
    ST_OFFERED, /* received, nothing reported yet (the server's Pending) */
    ST_DOWNLOADING,
    ST_VERIFYING,
    ST_VALIDATING,
    ST_SWAPPING,
    ST_MONITORING,
    ST_UPGRADED,
    ST_UPGRADE_FAILED,
    ST_ROLLED_BACK,
    ST_COUNT
};

static const char *const status_names[ST_COUNT] = {
    "",          "Offered",   "Downloading", "Verifying",     "Validating",
    "Swapping", "Monitoring", "Upgraded",    "UpgradeFailed", "RolledBack",
};

enum outcome { OUT_UPGRADED, OUT_UPGRADE_FAILED, OUT_ROLLED_BACK, OUT_DOWNLOAD_FAILED };

/* ---------------------------------------------------------------- options */

typedef struct label_dist {
    char key[64];
    char *values[LABEL_VALUES_MAX];
    double weights[LABEL_VALUES_MAX]; /* cumulative, normalized to 1 */
    int count;
} label_dist;

typedef struct fail_rate {
    char version[128];
    double upgrade_failed, rolled_back;
} fail_rate;

enum download_mode { DL_FULL, DL_RANGE, DL_NONE };

static struct {
    const char *server;
    char base_url[256];
    const char *token_file, *credentials_file, *cacert, *report_path, *id_prefix, *package;
    const char *admin_token_file;
    const char *base_version;
    unsigned nodes, connections, quiet_rounds;
    double duration, interval, jitter, step_time, ramp, progress_every, watch_every;
    uint64_t seed;
    enum download_mode download;
    label_dist labels[LABEL_KEYS_MAX];
    int label_count;
    char *platforms[PLATFORMS_MAX];
    double platform_weights[PLATFORMS_MAX];
    int platform_count;
    fail_rate fails[FAILS_MAX];
    int fail_count;
    char healthy_policy[256]; /* --healthy-first POLICY=N: "" none */
    unsigned healthy_count;
    long server_pid;
    int json, quiet;
} opt = {
    .id_prefix = "sim-",
    .package = "otelcol-contrib",
    .base_version = "0.0.0",
    .nodes = 1000,
    .connections = 8,
    .duration = 60,
    .interval = 30,
    .jitter = 0.1,
    .step_time = 0.5,
    .ramp = -1,
    .progress_every = 10,
    .watch_every = 1,
    .seed = 1,
    .download = DL_FULL,
};

/* ---------------------------------------------------------------- nodes */

typedef struct node {
    uint8_t label[LABEL_KEYS_MAX]; /* value index per label key */
    uint8_t platform;
    uint8_t step;       /* ST_* being reported next while upgrading, else ST_NONE */
    uint8_t outcome;    /* enum outcome of the current upgrade */
    uint8_t busy;       /* a request is in flight */
    uint8_t registered; /* the server has answered 200 once */
    uint8_t quiet_hb;   /* heartbeats since the fleet last changed (--until-quiet) */
    uint16_t version, digest;             /* running */
    uint16_t prev_version, prev_digest;   /* before the swap */
    uint16_t offer_version, offer_digest; /* the offer being acted on, or last acted on */
    uint16_t offer_url, offer_policy;
    uint16_t bad_digest; /* failed on its merits, until a larger retry */
    uint16_t tl_version; /* what the timeline counts this node as */
    uint8_t tl_status, status; /* status: the latest reported (ST_*) */
    uint32_t offer_retry, bad_retry;
    uint32_t quiet_epoch;
    uint64_t offer_size;
    int32_t first_offer; /* index in g_offers, -1: none */
    int32_t last_offer;
    uint32_t heartbeats;
    float end_t; /* when it last reported Upgraded, UpgradeFailed or RolledBack */
} node;

/* Every distinct offer a node received: a new entry when the digest, the
 * policy or the retry generation changes. */
typedef struct offer_entry {
    double t;
    uint32_t count; /* replies that carried it */
    uint32_t retry;
    int32_t next;   /* this node's next entry, -1 */
    uint16_t name, version, digest, policy, type;
} offer_entry;

static node *g_nodes;
/* --healthy-first: nodes whose rank in that policy is below this never fail */
static uint64_t g_healthy_below;
static char **g_tokens; /* per node: its credential, or NULL for the shared token */
static char g_shared_token[520];
static struct {
    offer_entry *items;
    size_t count, cap;
} g_offers;

/* ---------------------------------------------------------------- clock, random */

static double g_t0;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9 - g_t0;
}

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A uniform double in [0,1) from the seed and a few words: the same run
 * draws the same labels, platforms and outcomes. */
static double draw(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t x = splitmix(splitmix(splitmix(opt.seed ^ 0x5eed) ^ a) ^ b) ^ c;
    return (double)(splitmix(x) >> 11) / 9007199254740992.0;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint64_t g_draws; /* for jitter: not part of a node's identity */

static double jittered(double interval)
{
    double u = draw(0x717, g_draws++, 0);
    return interval * (1.0 + opt.jitter * (2 * u - 1));
}

static int pick(const double *cumulative, int count, double u)
{
    for (int i = 0; i < count; i++)
        if (u < cumulative[i])
            return i;
    return count - 1;
}

static void node_id(char *out, size_t size, uint32_t idx)
{
    snprintf(out, size, "%s%06" PRIu32, opt.id_prefix, idx);
}

/* ---------------------------------------------------------------- schedule */

typedef struct event {
    double due;
    uint32_t node;
} event;

static struct {
    event *items;
    size_t count, cap;
} g_heap;

static int heap_push(double due, uint32_t idx)
{
    if (g_heap.count == g_heap.cap) {
        size_t cap = g_heap.cap ? g_heap.cap * 2 : 1024;
        event *items = realloc(g_heap.items, cap * sizeof *items);
        if (!items)
            return -1;
        g_heap.items = items;
        g_heap.cap = cap;
    }
    size_t i = g_heap.count++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (g_heap.items[parent].due <= due)
            break;
        g_heap.items[i] = g_heap.items[parent];
        i = parent;
    }
    g_heap.items[i] = (event){due, idx};
    return 0;
}

static event heap_pop(void)
{
    event top = g_heap.items[0];
    event last = g_heap.items[--g_heap.count];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= g_heap.count)
            break;
        if (child + 1 < g_heap.count && g_heap.items[child + 1].due < g_heap.items[child].due)
            child++;
        if (last.due <= g_heap.items[child].due)
            break;
        g_heap.items[i] = g_heap.items[child];
        i = child;
    }
    if (g_heap.count)
        g_heap.items[i] = last;
    return top;
}

/* ---------------------------------------------------------------- measurements */

enum route { R_HEARTBEAT, R_BLOB, R_POLICIES, R_COUNT };
static const char *const route_names[R_COUNT] = {"POST /v1/agents/heartbeat",
                                                 "GET /v1/blobs/{digest}", "GET /v1/policies"};

typedef struct samples {
    uint32_t *us;
    size_t count, cap;
    uint64_t dropped; /* past SAMPLES_MAX */
    uint32_t max;
} samples;

static struct {
    samples route[R_COUNT];
    samples lag; /* how late a request started against its schedule */
    uint64_t requests, window_requests;
    uint64_t by_status[600];
    uint64_t transport_errors;
    char first_transport_error[CURL_ERROR_SIZE + 64];
    uint64_t protocol_errors; /* a blob that did not hash to the offer, a bad reply */
    char first_protocol_error[256];
    uint64_t refused;         /* 429/503 for new nodes (counted in by_status too) */
    uint64_t bytes;
    double window_start;
} g_stats;

static void sample_add(samples *s, double seconds)
{
    uint32_t us = seconds <= 0 ? 0 : seconds >= 4294.0 ? UINT32_MAX : (uint32_t)(seconds * 1e6);
    if (us > s->max)
        s->max = us;
    if (s->count == s->cap) {
        if (s->cap >= SAMPLES_MAX) {
            s->dropped++;
            return;
        }
        size_t cap = s->cap ? s->cap * 2 : 4096;
        uint32_t *us_items = realloc(s->us, cap * sizeof *us_items);
        if (!us_items) {
            s->dropped++;
            return;
        }
        s->us = us_items;
        s->cap = cap;
    }
    s->us[s->count++] = us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank on the sorted samples, in milliseconds. */
static double percentile_ms(const samples *s, double p)
{
    if (!s->count)
        return 0;
    size_t rank = (size_t)ceil(p * (double)s->count);
    if (rank < 1)
        rank = 1;
    return s->us[rank - 1] / 1000.0;
}

static void protocol_error(const char *fmt, ...)
{
    g_stats.protocol_errors++;
    if (g_stats.first_protocol_error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_stats.first_protocol_error, sizeof g_stats.first_protocol_error, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- timeline */

/* Nodes by (version, status), as the simulator sees them; a row is added
 * each second in which a count moved. */
#define TL_VERSIONS_MAX 64
static struct {
    uint16_t versions[TL_VERSIONS_MAX];
    uint32_t counts[TL_VERSIONS_MAX][ST_COUNT];
    int nversions;
    int dirty;
    json_t *rows;
    json_t *server; /* the policies as GET /v1/policies last showed them (--admin-token-file) */
} g_tl;

static int tl_slot(uint16_t version)
{
    for (int i = 0; i < g_tl.nversions; i++)
        if (g_tl.versions[i] == version)
            return i;
    if (g_tl.nversions == TL_VERSIONS_MAX)
        return -1;
    g_tl.versions[g_tl.nversions] = version;
    return g_tl.nversions++;
}

static void tl_move(node *n, uint16_t version, uint8_t status)
{
    if (n->tl_version == version && n->tl_status == status)
        return;
    if (n->tl_version) {
        int slot = tl_slot(n->tl_version);
        if (slot >= 0)
            g_tl.counts[slot][n->tl_status]--;
    }
    n->tl_version = version;
    n->tl_status = status;
    if (version) {
        int slot = tl_slot(version);
        if (slot >= 0)
            g_tl.counts[slot][status]++;
    }
    g_tl.dirty = 1;
}

static json_t *tl_counts(void)
{
    json_t *versions = json_object();
    for (int i = 0; i < g_tl.nversions; i++) {
        json_t *counts = json_object();
        for (int st = ST_OFFERED; st < ST_COUNT; st++)
            if (g_tl.counts[i][st])
                json_object_set_new(counts, status_names[st], json_integer(g_tl.counts[i][st]));
        json_object_set_new(versions, str(g_tl.versions[i]), counts);
    }
    return versions;
}

static void tl_tick(double t)
{
    if (!g_tl.dirty)
        return;
    g_tl.dirty = 0;
    json_t *row = json_pack("{s:f, s:o}", "t", round(t * 10) / 10, "versions", tl_counts());
    if (row && g_tl.server)
        json_object_set(row, "policies", g_tl.server);
    json_array_append_new(g_tl.rows, row);
}

/* A GET /v1/policies reply: each policy without its timestamps and node
 * page, by name. A change is a timeline row: the server's side of the
 * rollout (its counts and whatever state a rollout strategy shows). */
static void watch_reply(const char *body, size_t len)
{
    json_t *reply = json_loadb(body, len, 0, NULL);
    json_t *list = json_object_get(reply, "policies");
    json_t *view = json_object();
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p) {
        const char *name = json_string_value(json_object_get(p, "name"));
        if (!name)
            continue;
        json_t *copy = json_deep_copy(p);
        json_object_del(copy, "created");
        json_object_del(copy, "updated");
        json_object_del(copy, "name");
        json_t *status = json_object_get(copy, "status");
        json_object_del(status, "nodes");
        json_object_del(status, "next");
        json_object_set_new(view, name, copy);
    }
    if (!json_is_array(list))
        protocol_error("GET /v1/policies: the reply has no policies array");
    else if (!g_tl.server || !json_equal(view, g_tl.server)) {
        json_decref(g_tl.server);
        g_tl.server = json_incref(view);
        g_tl.dirty = 1;
    }
    json_decref(view);
    json_decref(reply);
}

/* ---------------------------------------------------------------- quiet detection */

static uint32_t g_epoch = 1;  /* moves whenever a node starts or ends a step */
static uint32_t g_quiet_nodes; /* nodes with --until-quiet heartbeats in this epoch */
static uint32_t g_upgrading;  /* nodes between an offer and its end */

static void fleet_changed(void)
{
    g_epoch++;
    g_quiet_nodes = 0;
}

static void count_quiet(node *n)
{
    if (!opt.quiet_rounds)
        return;
    if (n->quiet_epoch != g_epoch) {
        n->quiet_epoch = g_epoch;
        n->quiet_hb = 0;
    }
    if (n->quiet_hb < 255 && ++n->quiet_hb == opt.quiet_rounds)
        g_quiet_nodes++;
}

/* ---------------------------------------------------------------- transfers */

typedef struct xfer {
    CURL *easy;
    struct curl_slist *headers;
    uint32_t node;
    enum route route;
    int active;
    double due, started;
    char *request;  /* a heartbeat's body */
    char *body;     /* the response (heartbeats) */
    size_t len, cap;
    uint64_t got;   /* blob bytes */
    pkgstore_digest_ctx *digest;
    char error[CURL_ERROR_SIZE];
} xfer;

static xfer *g_xfers;
static CURLM *g_multi;
static unsigned g_active;
static volatile sig_atomic_t g_stop_signal;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    xfer *x = userdata;
    size_t n = size * nmemb;
    g_stats.bytes += n;
    if (x->route == R_BLOB) {
        x->got += n;
        if (x->digest && pkgstore_digest_ctx_update(x->digest, ptr, n) < 0)
            return 0;
        return n;
    }
    if (x->len + n + 1 > x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 8192;
        while (cap < x->len + n + 1)
            cap *= 2;
        char *body = realloc(x->body, cap);
        if (!body)
            return 0;
        x->body = body;
        x->cap = cap;
    }
    memcpy(x->body + x->len, ptr, n);
    x->len += n;
    x->body[x->len] = '\0';
    return n;
}


/* The heartbeat a node sends now: what agent/report.c sends. */
static char *heartbeat_body(uint32_t idx)
{
    node *n = &g_nodes[idx];
    char id[300];
    node_id(id, sizeof id, idx);
    json_t *labels = json_object();
    for (int k = 0; k < opt.label_count; k++)
        json_object_set_new(labels, opt.labels[k].key,
                            json_string(opt.labels[k].values[n->label[k]]));
    json_t *pkg = json_pack("{s:s, s:s, s:s, s:s}", "name", opt.package, "type", "primary",
                            "version", str(n->version), "state", "Running");
    if (n->digest)
        json_object_set_new(pkg, "digest", json_string(str(n->digest)));
    if (n->offer_digest)
        json_object_set_new(pkg, "offer",
                            json_pack("{s:s, s:s}", "version", str(n->offer_version), "digest",
                                      str(n->offer_digest)));
    if (n->status > ST_OFFERED) {
        json_object_set_new(pkg, "status", json_string(status_names[n->status]));
        const char *msg = n->outcome == OUT_DOWNLOAD_FAILED && n->status == ST_UPGRADE_FAILED
                              ? "download: failed (fleetsim)"
                          : n->status == ST_UPGRADE_FAILED ? "validate: simulated failure (fleetsim)"
                          : n->status == ST_ROLLED_BACK  ? "monitor: simulated crash (fleetsim)"
                          : n->status == ST_UPGRADED     ? "upgraded (fleetsim)"
                                                         : NULL;
        if (msg)
            json_object_set_new(pkg, "message", json_string(msg));
    }
    json_t *body = json_pack("{s:s, s:o, s:s, s:s, s:[o]}", "node_id", id, "labels", labels,
                             "platform", opt.platforms[n->platform], "agent_version",
                             "fleetsim-" PKGSTORE_VERSION_STRING, "packages", pkg);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return text;
}

static char g_admin_token[520];

static int xfer_start(xfer *x, uint32_t idx, enum route route, double due)
{
    node *n = route == R_POLICIES ? NULL : &g_nodes[idx];
    char id[300], header[700];
    node_id(id, sizeof id, idx);
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    x->node = idx;
    x->route = route;
    x->due = due;
    x->len = 0;
    x->got = 0;
    x->error[0] = '\0';
    free(x->request);
    x->request = NULL;
    pkgstore_digest_ctx_free(x->digest);
    x->digest = NULL;

    CURL *e = x->easy;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->error);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    if (opt.cacert)
        curl_easy_setopt(e, CURLOPT_CAINFO, opt.cacert);
    snprintf(header, sizeof header, "Authorization: Bearer %s",
             route == R_POLICIES               ? g_admin_token
             : g_tokens && g_tokens[idx] ? g_tokens[idx]
                                               : g_shared_token);
    x->headers = curl_slist_append(x->headers, header);
    if (n) {
        snprintf(header, sizeof header, "X-Pkgstore-Node: %s", id);
        x->headers = curl_slist_append(x->headers, header);
    }
    x->headers = curl_slist_append(x->headers, "Expect:");

    char url[4096];
    if (route == R_POLICIES) {
        snprintf(url, sizeof url, "%s/v1/policies", opt.base_url);
    } else if (route == R_HEARTBEAT) {
        x->request = heartbeat_body(idx);
        if (!x->request)
            return -1;
        snprintf(url, sizeof url, "%s/v1/agents/heartbeat", opt.base_url);
        x->headers = curl_slist_append(x->headers, "Content-Type: application/json");
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->request);
    } else {
        /* the offer's url: relative to the server (checked when offered) */
        snprintf(url, sizeof url, "%s%s", opt.base_url, str(n->offer_url));
        if (opt.download == DL_RANGE) {
            x->headers = curl_slist_append(x->headers, "Range: bytes=0-1023");
        } else if (pkgstore_digest_ctx_new(&x->digest) < 0) {
            return -1;
        }
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    if (!x->headers || curl_multi_add_handle(g_multi, e) != CURLM_OK)
        return -1;
    x->active = 1;
    x->started = now();
    if (n) { /* the pool's: the policy watch has its own transfer */
        g_active++;
        n->busy = 1;
        sample_add(&g_stats.lag, x->started - due);
    }
    return 0;
}

/* ---------------------------------------------------------------- the protocol */

static void schedule(uint32_t idx, double due)
{
    if (heap_push(due, idx) < 0) {
        cli_error(NULL, "out of memory scheduling node %" PRIu32, idx);
        g_stop_signal = SIGTERM;
    }
}

static void offer_record(node *n, uint16_t name, uint16_t type, uint16_t version, uint16_t digest,
                         uint16_t policy, uint32_t retry, double t)
{
    /* Replies repeat the offer: one entry per distinct offer */
    for (int32_t i = n->first_offer; i >= 0; i = g_offers.items[i].next) {
        offer_entry *e = &g_offers.items[i];
        if (e->digest == digest && e->policy == policy && e->retry == retry && e->name == name) {
            e->count++;
            return;
        }
    }
    if (g_offers.count == g_offers.cap) {
        size_t cap = g_offers.cap ? g_offers.cap * 2 : 4096;
        offer_entry *items = realloc(g_offers.items, cap * sizeof *items);
        if (!items) {
            protocol_error("out of memory recording offers");
            return;
        }
        g_offers.items = items;
        g_offers.cap = cap;
    }
    int32_t at = (int32_t)g_offers.count++;
    g_offers.items[at] = (offer_entry){.t = t, .count = 1, .retry = retry, .next = -1,
                                       .name = name, .version = version, .digest = digest,
                                       .policy = policy, .type = type};
    if (n->last_offer >= 0)
        g_offers.items[n->last_offer].next = at;
    else
        n->first_offer = at;
    n->last_offer = at;
}

static const fail_rate *fail_for(const char *version)
{
    for (int i = 0; i < opt.fail_count; i++)
        if (!strcmp(opt.fails[i].version, version))
            return &opt.fails[i];
    return NULL;
}

/* Decide what an offer's upgrade will come to, the same way every run
 * with this seed: by the node and the digest. */
static uint8_t plan_outcome(uint32_t idx, const char *version, const char *digest)
{
    const fail_rate *f = fail_for(version);
    if (!f)
        return OUT_UPGRADED;
    if (opt.healthy_count) { /* --healthy-first: the first in the order never fail */
        char id[300];
        node_id(id, sizeof id, idx);
        if (pkgstore_rollout_rank(opt.healthy_policy, id) < g_healthy_below)
            return OUT_UPGRADED;
    }
    double u = draw(idx, hash_str(digest), 0xfa11);
    if (u < f->upgrade_failed)
        return OUT_UPGRADE_FAILED;
    if (u < f->upgrade_failed + f->rolled_back)
        return OUT_ROLLED_BACK;
    return OUT_UPGRADED;
}

/* An offer's url must be the server's own: a path (pkgstored offers
 * /v1/blobs/DIGEST), never an absolute or scheme-relative URL. */
static int offer_url_ok(const char *url)
{
    return url && url[0] == '/' && url[1] != '/';
}

/* Read the offers of a 200 reply; maybe start an upgrade. */
static void on_reply(uint32_t idx, const char *body, size_t len, double t)
{
    node *n = &g_nodes[idx];
    json_error_t jerr;
    json_t *reply = json_loadb(body, len, 0, &jerr);
    json_t *offers = reply ? json_object_get(reply, "offers") : NULL;
    if (!json_is_array(offers)) {
        protocol_error("heartbeat reply: %s", reply ? "no offers array" : jerr.text);
        json_decref(reply);
        return;
    }
    size_t i;
    json_t *o;
    json_array_foreach(offers, i, o) {
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *type = json_string_value(json_object_get(o, "type"));
        const char *version = json_string_value(json_object_get(o, "version"));
        const char *digest = json_string_value(json_object_get(o, "digest"));
        const char *policy = json_string_value(json_object_get(o, "policy"));
        const char *url = json_string_value(json_object_get(o, "url"));
        json_int_t retry = json_integer_value(json_object_get(o, "retry"));
        json_int_t size = json_integer_value(json_object_get(o, "size"));
        if (!name || !version || !digest || !url) {
            protocol_error("heartbeat reply: an offer without name, version, digest or url");
            continue;
        }
        uint16_t v = intern(version), d = intern(digest);
        offer_record(n, intern(name), intern(type), v, d, intern(policy), (uint32_t)retry, t);
        if (!type || strcmp(type, "primary"))
            continue; /* addons are recorded, not installed */
        if (n->step != ST_NONE || d == n->digest)
            continue;
        if (d == n->bad_digest && (uint32_t)retry <= n->bad_retry)
            continue; /* remembered as bad until the retry generation rises */
        if (!offer_url_ok(url)) {
            protocol_error("%s: offer url %s is not a path on the server", str(d), url);
            continue;
        }
        n->offer_version = v;
        n->offer_digest = d;
        n->offer_url = intern(url);
        n->offer_policy = intern(policy);
        n->offer_retry = (uint32_t)retry;
        n->offer_size = size > 0 ? (uint64_t)size : 0;
        n->outcome = plan_outcome(idx, version, digest);
        n->step = ST_DOWNLOADING;
        n->status = ST_OFFERED;
        tl_move(n, v, ST_OFFERED);
        g_upgrading++;
        fleet_changed();
    }
    json_decref(reply);
}

/* The step after the one just reported (ST_NONE: the upgrade is over). */
static uint8_t next_step(const node *n, uint8_t reported)
{
    switch (reported) {
    case ST_DOWNLOADING: return ST_VERIFYING;
    case ST_VERIFYING: return ST_VALIDATING;
    case ST_VALIDATING: return n->outcome == OUT_UPGRADE_FAILED ? ST_UPGRADE_FAILED : ST_SWAPPING;
    case ST_SWAPPING: return ST_MONITORING;
    case ST_MONITORING: return n->outcome == OUT_ROLLED_BACK ? ST_ROLLED_BACK : ST_UPGRADED;
    default: return ST_NONE;
    }
}

static void upgrade_end(node *n)
{
    n->step = ST_NONE;
    g_upgrading--;
    fleet_changed();
}

/* Move the node's state to the step it is about to report. */
static void enter_step(node *n, uint8_t step)
{
    n->status = step;
    if (step >= ST_UPGRADED)
        n->end_t = (float)now(); /* reported now: the request starts */
    switch (step) {
    case ST_MONITORING: /* swapped: the new binary runs */
        n->prev_version = n->version;
        n->prev_digest = n->digest;
        n->version = n->offer_version;
        n->digest = n->offer_digest;
        break;
    case ST_ROLLED_BACK:
        n->version = n->prev_version;
        n->digest = n->prev_digest;
        n->bad_digest = n->offer_digest;
        n->bad_retry = n->offer_retry;
        break;
    case ST_UPGRADE_FAILED:
        n->bad_digest = n->offer_digest;
        n->bad_retry = n->offer_retry;
        break;
    default: break;
    }
    tl_move(n, n->offer_version, step);
    fleet_changed();
}

static void finish(xfer *x, CURLcode result)
{
    uint32_t idx = x->node;
    node *n = x->route == R_POLICIES ? NULL : &g_nodes[idx];
    double t = now();
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_off_t total_us = 0;
    curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    curl_multi_remove_handle(g_multi, x->easy);
    x->active = 0;
    if (n) {
        n->busy = 0;
        g_active--;
    }
    g_stats.requests++;
    g_stats.window_requests++;

    double next = -1; /* when the node speaks next */
    if (result != CURLE_OK) {
        g_stats.transport_errors++;
        if (!g_stats.first_transport_error[0])
            snprintf(g_stats.first_transport_error, sizeof g_stats.first_transport_error,
                     "%s: %s", route_names[x->route],
                     x->error[0] ? x->error : curl_easy_strerror(result));
        status = 0;
    } else {
        sample_add(&g_stats.route[x->route], total_us / 1e6);
        g_stats.by_status[status >= 0 && status < 600 ? status : 0]++;
    }

    if (x->route == R_POLICIES) {
        if (status == 200)
            watch_reply(x->body, x->len);
        return;
    }
    if (x->route == R_BLOB) {
        int ok = status == (opt.download == DL_RANGE ? 206 : 200);
        if (ok && opt.download == DL_FULL) {
            pkgstore_digest got;
            char text[PKGSTORE_DIGEST_STR_SIZE];
            if (pkgstore_digest_ctx_final(&got, x->digest) < 0) {
                ok = 0;
            } else {
                pkgstore_digest_format(text, &got);
                if (strcmp(text, str(n->offer_digest)) ||
                    (n->offer_size && x->got != n->offer_size)) {
                    protocol_error("%s: downloaded %" PRIu64 " bytes hashing to %s", str(n->offer_digest),
                                   x->got, text);
                    ok = 0;
                }
            }
        }
        if (!ok && status && status != (opt.download == DL_RANGE ? 206 : 200))
            protocol_error("%s: download answered %ld", str(n->offer_digest), status);
        /* a failed download fails the upgrade, transiently: no bad mark */
        if (!ok) {
            n->status = ST_UPGRADE_FAILED; /* offered again on the next heartbeat */
            n->outcome = OUT_DOWNLOAD_FAILED;
            tl_move(n, n->offer_version, ST_UPGRADE_FAILED);
            upgrade_end(n);
            schedule(idx, t + jittered(opt.interval));
            return;
        }
        n->step = ST_VERIFYING;
        schedule(idx, t + opt.step_time);
        return;
    }

    /* a heartbeat, plain or reporting a step */
    if (status == 200) {
        n->heartbeats++;
        n->registered = 1;
        uint8_t reported = n->step != ST_NONE && n->status == n->step ? n->step : ST_NONE;
        on_reply(idx, x->body, x->len, t); /* every offer is recorded, even mid-upgrade */
        if (reported != ST_NONE) {
            uint8_t step = next_step(n, reported);
            if (reported == ST_DOWNLOADING && opt.download != DL_NONE) {
                n->step = ST_DOWNLOADING; /* the download comes next */
                next = t;
            } else if (step == ST_NONE) {
                upgrade_end(n);
            } else {
                n->step = step;
                next = t + opt.step_time;
            }
        } else if (n->step != ST_NONE) {
            next = t; /* an offer was taken: report Downloading at once */
        } else {
            count_quiet(n);
        }
    } else if (status == 429 || status == 503) {
        /* a new node past --new-nodes-rate or --max-nodes: wait as told */
        g_stats.refused++;
        curl_off_t retry_after = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &retry_after);
        next = t + (retry_after > 0 ? (double)retry_after : 1.0) *
                       (1.0 + draw(idx, (uint64_t)(t * 1e3), 3));
    } else if (n->step != ST_NONE) {
        /* a report that failed: the agent's reports are best effort, the
         * next one carries the latest status */
        uint8_t step = next_step(n, n->step);
        if (step == ST_NONE)
            upgrade_end(n);
        else
            n->step = step, next = t + opt.step_time;
    }
    if (next < 0)
        next = t + jittered(opt.interval);
    schedule(idx, next);
}

/* Start what the node does at its moment. */
static int node_act(xfer *x, uint32_t idx, double due)
{
    node *n = &g_nodes[idx];
    if (n->step == ST_DOWNLOADING && n->status == ST_DOWNLOADING)
        return xfer_start(x, idx, R_BLOB, due); /* reported: now the bytes */
    if (n->step != ST_NONE)
        enter_step(n, n->step);
    return xfer_start(x, idx, R_HEARTBEAT, due);
}

/* ---------------------------------------------------------------- the server's process */

typedef struct proc_sample {
    long rss_kb, hwm_kb;
    double cpu_s;
    int ok;
} proc_sample;

static proc_sample read_proc(long pid)
{
    proc_sample s = {0};
    if (pid <= 0)
        return s;
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return s;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6))
            s.rss_kb = strtol(line + 6, NULL, 10);
        else if (!strncmp(line, "VmHWM:", 6))
            s.hwm_kb = strtol(line + 6, NULL, 10);
    }
    fclose(f);
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return s;
    char buf[2048];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    /* fields after the command's closing parenthesis: state is field 3,
     * utime 14 and stime 15 */
    char *p = strrchr(buf, ')');
    unsigned long long utime = 0, stime = 0;
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                    &stime) == 2) {
        s.cpu_s = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
        s.ok = 1;
    }
    return s;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---------------------------------------------------------------- progress */

static int g_tty;

static void progress(double t, int final)
{
    double window = t - g_stats.window_start;
    double rate = window > 0 ? g_stats.window_requests / window : 0;
    uint64_t errors = g_stats.transport_errors + g_stats.protocol_errors;
    for (int s = 400; s < 600; s++)
        errors += g_stats.by_status[s];
    uint32_t upgraded = 0, failed = 0;
    for (int i = 0; i < g_tl.nversions; i++) {
        upgraded += g_tl.counts[i][ST_UPGRADED];
        failed += g_tl.counts[i][ST_UPGRADE_FAILED] + g_tl.counts[i][ST_ROLLED_BACK];
    }
    char rss[48] = "";
    if (opt.server_pid > 0) {
        proc_sample p = read_proc(opt.server_pid);
        snprintf(rss, sizeof rss, " server_rss=%.1fMB", p.rss_kb / 1024.0);
    }
    fprintf(stderr,
            "%st=%.0fs req/s=%.0f in_flight=%u upgrading=%" PRIu32 " upgraded=%" PRIu32
            " failed=%" PRIu32 " errors=%" PRIu64 " refused=%" PRIu64 "%s%s",
            g_tty ? "\r" : "", t, rate, g_active, g_upgrading, upgraded, failed, errors,
            g_stats.refused, rss, g_tty ? (final ? "\033[K\n" : "\033[K") : "\n");
    fflush(stderr);
    g_stats.window_requests = 0;
    g_stats.window_start = t;
}

/* ---------------------------------------------------------------- report */

static json_t *route_json(samples *s, double elapsed)
{
    qsort(s->us, s->count, sizeof *s->us, cmp_u32);
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:I}", "requests", (json_int_t)s->count, "req_per_s",
                     elapsed > 0 ? s->count / elapsed : 0.0, "p50_ms", percentile_ms(s, 0.50),
                     "p99_ms", percentile_ms(s, 0.99), "max_ms", s->max / 1000.0, "unsampled",
                     (json_int_t)s->dropped);
}

static json_t *summary_json(double elapsed, proc_sample p0, proc_sample p1, double cpu0)
{
    json_t *routes = json_object();
    for (int r = 0; r < R_COUNT; r++)
        if (g_stats.route[r].count)
            json_object_set_new(routes, route_names[r], route_json(&g_stats.route[r], elapsed));
    json_t *by_status = json_object(), *errors = json_object();
    uint64_t error_total = 0;
    for (int s = 0; s < 600; s++) {
        if (!g_stats.by_status[s])
            continue;
        char code[16];
        snprintf(code, sizeof code, "%d", s);
        json_object_set_new(by_status, code, json_integer((json_int_t)g_stats.by_status[s]));
        if (s >= 400) {
            json_object_set_new(errors, code, json_integer((json_int_t)g_stats.by_status[s]));
            error_total += g_stats.by_status[s];
        }
    }
    qsort(g_stats.lag.us, g_stats.lag.count, sizeof *g_stats.lag.us, cmp_u32);
    uint32_t registered = 0;
    for (uint32_t i = 0; i < opt.nodes; i++)
        registered += g_nodes[i].registered;
    json_t *server = json_null();
    if (opt.server_pid > 0 && p1.ok) {
        double cpu = p1.cpu_s - p0.cpu_s;
        /* per node: what the server grew by during the run, over the
         * nodes it got to know (the start-up footprint is not theirs) */
        server = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "pid",
                           (json_int_t)opt.server_pid, "rss_mb", p1.rss_kb / 1024.0,
                           "rss_start_mb", p0.rss_kb / 1024.0, "rss_peak_mb", p1.hwm_kb / 1024.0,
                           "rss_bytes_per_node",
                           registered ? (p1.rss_kb - p0.rss_kb) * 1024.0 / registered : 0.0,
                           "cpu_s", cpu, "cpu_percent", elapsed > 0 ? 100 * cpu / elapsed : 0.0);
    }
    return json_pack(
        "{s:f, s:I, s:I, s:f, s:o, s:o, s:o, s:I, s:s?, s:I, s:s?, s:I, s:I, s:o, s:o, s:{s:f, s:f, s:f}}",
        "elapsed_s", elapsed, "nodes", (json_int_t)opt.nodes, "nodes_registered",
        (json_int_t)registered, "req_per_s", elapsed > 0 ? g_stats.requests / elapsed : 0.0,
        "routes", routes, "responses", by_status, "error_responses", errors,
        "transport_errors", (json_int_t)g_stats.transport_errors, "first_transport_error",
        g_stats.first_transport_error[0] ? g_stats.first_transport_error : NULL,
        "protocol_errors", (json_int_t)g_stats.protocol_errors, "first_protocol_error",
        g_stats.first_protocol_error[0] ? g_stats.first_protocol_error : NULL, "errors",
        (json_int_t)(error_total + g_stats.transport_errors + g_stats.protocol_errors),
        "refused_new_nodes", (json_int_t)g_stats.refused, "server", server, "final",
        tl_counts(), "simulator", "cpu_s", self_cpu() - cpu0, "lag_p99_ms",
        percentile_ms(&g_stats.lag, 0.99), "lag_max_ms", g_stats.lag.max / 1000.0);
}

static void print_summary(FILE *out, json_t *summary)
{
    fprintf(out, "fleetsim: %" JSON_INTEGER_FORMAT " nodes (%" JSON_INTEGER_FORMAT
                 " registered) for %.1f s: %.0f req/s, %" JSON_INTEGER_FORMAT " errors\n",
            json_integer_value(json_object_get(summary, "nodes")),
            json_integer_value(json_object_get(summary, "nodes_registered")),
            json_real_value(json_object_get(summary, "elapsed_s")),
            json_real_value(json_object_get(summary, "req_per_s")),
            json_integer_value(json_object_get(summary, "errors")));
    const char *name;
    json_t *r;
    fprintf(out, "%-28s %10s %9s %9s %9s %9s\n", "route", "requests", "req/s", "p50 ms", "p99 ms",
            "max ms");
    json_object_foreach(json_object_get(summary, "routes"), name, r) {
        fprintf(out, "%-28s %10" JSON_INTEGER_FORMAT " %9.1f %9.2f %9.2f %9.2f\n", name,
                json_integer_value(json_object_get(r, "requests")),
                json_real_value(json_object_get(r, "req_per_s")),
                json_real_value(json_object_get(r, "p50_ms")),
                json_real_value(json_object_get(r, "p99_ms")),
                json_real_value(json_object_get(r, "max_ms")));
    }
    json_t *v;
    fprintf(out, "responses:");
    json_object_foreach(json_object_get(summary, "responses"), name, v)
        fprintf(out, " %s=%" JSON_INTEGER_FORMAT, name, json_integer_value(v));
    fprintf(out, "\nerror responses:");
    if (!json_object_size(json_object_get(summary, "error_responses")))
        fprintf(out, " none");
    json_object_foreach(json_object_get(summary, "error_responses"), name, v)
        fprintf(out, " %s=%" JSON_INTEGER_FORMAT, name, json_integer_value(v));
    fprintf(out, "; transport errors: %" JSON_INTEGER_FORMAT "; protocol errors: %" JSON_INTEGER_FORMAT
                 "\n",
            json_integer_value(json_object_get(summary, "transport_errors")),
            json_integer_value(json_object_get(summary, "protocol_errors")));
    const char *first = json_string_value(json_object_get(summary, "first_transport_error"));
    if (first)
        fprintf(out, "  first transport error: %s\n", first);
    first = json_string_value(json_object_get(summary, "first_protocol_error"));
    if (first)
        fprintf(out, "  first protocol error: %s\n", first);
    json_t *server = json_object_get(summary, "server");
    if (json_is_object(server))
        fprintf(out,
                "server: rss %.1f MB (%.1f MB at start, peak %.1f MB; %.0f bytes per node), "
                "cpu %.1f s (%.0f%%)\n",
                json_real_value(json_object_get(server, "rss_mb")),
                json_real_value(json_object_get(server, "rss_start_mb")),
                json_real_value(json_object_get(server, "rss_peak_mb")),
                json_real_value(json_object_get(server, "rss_bytes_per_node")),
                json_real_value(json_object_get(server, "cpu_s")),
                json_real_value(json_object_get(server, "cpu_percent")));
    json_t *sim = json_object_get(summary, "simulator");
    fprintf(out, "simulator: cpu %.1f s, start lag p99 %.1f ms, max %.1f ms\n",
            json_real_value(json_object_get(sim, "cpu_s")),
            json_real_value(json_object_get(sim, "lag_p99_ms")),
            json_real_value(json_object_get(sim, "lag_max_ms")));
    fprintf(out, "timeline (nodes by version and status, as the nodes reported them):\n");
    size_t rows = json_array_size(g_tl.rows), i;
    json_t *row;
    /* at most 40 rows on screen; the report has them all */
    size_t stride = rows > 40 ? (rows + 39) / 40 : 1;
    json_array_foreach(g_tl.rows, i, row) {
        if (i % stride && i != rows - 1)
            continue;
        fprintf(out, "  t=%6.1fs", json_real_value(json_object_get(row, "t")));
        const char *ver;
        json_t *counts;
        json_object_foreach(json_object_get(row, "versions"), ver, counts) {
            fprintf(out, "  %s:", ver);
            for (int st = ST_OFFERED; st < ST_COUNT; st++) {
                json_int_t c = json_integer_value(json_object_get(counts, status_names[st]));
                if (c)
                    fprintf(out, " %s=%" JSON_INTEGER_FORMAT, status_names[st], c);
            }
        }
        fputc('\n', out);
    }
    if (!rows)
        fprintf(out, "  (no offers)\n");
}

/* The report: the summary, the timeline, then one object per node. Each
 * node is dumped by jansson on its own so the report never holds the
 * fleet in memory at once. */
static int write_report(const char *path, json_t *summary, json_t *config)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        cli_error(path, "%s", strerror(errno));
        return -1;
    }
    json_t *head = json_pack("{s:O, s:O, s:O}", "config", config, "summary", summary, "timeline",
                             g_tl.rows);
    char *text = head ? json_dumps(head, JSON_COMPACT) : NULL;
    json_decref(head);
    int error = !text;
    if (text) {
        /* the head's closing brace is replaced by the nodes member */
        size_t len = strlen(text);
        fwrite(text, 1, len - 1, f);
        fputs(",\"nodes\":[", f);
        free(text);
    }
    for (uint32_t idx = 0; !error && idx < opt.nodes; idx++) {
        node *n = &g_nodes[idx];
        char id[300];
        node_id(id, sizeof id, idx);
        json_t *labels = json_object(), *offers = json_array();
        for (int k = 0; k < opt.label_count; k++)
            json_object_set_new(labels, opt.labels[k].key,
                                json_string(opt.labels[k].values[n->label[k]]));
        for (int32_t i = n->first_offer; i >= 0; i = g_offers.items[i].next) {
            offer_entry *e = &g_offers.items[i];
            json_array_append_new(offers,
                                  json_pack("{s:f, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "t",
                                            round(e->t * 1000) / 1000, "policy", str(e->policy),
                                            "name", str(e->name), "type", str(e->type), "version",
                                            str(e->version), "digest", str(e->digest), "retry",
                                            (json_int_t)e->retry, "replies", (json_int_t)e->count));
        }
        json_t *first = n->first_offer >= 0
                            ? json_pack("{s:f, s:s, s:s}", "t",
                                        round(g_offers.items[n->first_offer].t * 1000) / 1000,
                                        "version", str(g_offers.items[n->first_offer].version),
                                        "policy", str(g_offers.items[n->first_offer].policy))
                            : json_null();
        json_t *obj = json_pack(
            "{s:s, s:o, s:s, s:b, s:I, s:o, s:o, s:{s:s, s:s?, s:s?, s:s?, s:b, s:o}}", "id", id,
            "labels", labels, "platform", opt.platforms[n->platform], "registered",
            n->registered, "heartbeats", (json_int_t)n->heartbeats, "first_offer", first,
            "offers", offers, "final", "version", str(n->version), "digest",
            n->digest ? str(n->digest) : NULL, "status",
            n->status > ST_OFFERED ? status_names[n->status] : NULL, "offer_version",
            n->offer_version ? str(n->offer_version) : NULL, "upgrading", n->step != ST_NONE,
            "t", n->status >= ST_UPGRADED ? json_real(round(n->end_t * 1000) / 1000) : json_null());
        char *node_text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
        json_decref(obj);
        if (!node_text) {
            error = 1;
            break;
        }
        if (idx)
            fputc(',', f);
        fputs(node_text, f);
        free(node_text);
    }
    fputs("]}\n", f);
    if (fclose(f) != 0 || error) {
        cli_error(path, "%s", error ? "out of memory" : strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) < 0) {
        cli_error(path, "%s", strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- options */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pkgstore-fleetsim --server URL [options]\n"
            "\n"
            "Simulate a fleet of agents against pkgstored on 127.0.0.1 and measure it.\n"
            "\n"
            "  --server URL          http(s)://127.0.0.1:PORT (default $PKGSTORE_SERVER);\n"
            "                        any other host is refused\n"
            "  --token-file FILE     the token every node presents: the fleet-wide agent\n"
            "                        token (pkgstored --allow-shared-agent-token) (default\n"
            "                        $PKGSTORE_TOKEN_FILE, then $PKGSTORE_TOKEN)\n"
            "  --credentials FILE    'NODE_ID TOKEN' lines: per-node credentials; the nodes\n"
            "                        listed present theirs, the others the --token-file one\n"
            "  --cacert FILE         PEM CA for an https:// server\n"
            "  --nodes N             simulated nodes (default 1000, at most %u)\n"
            "  --duration S          stop after S seconds (default 60, at most %.0f)\n"
            "  --until-quiet N       stop earlier, once no node has started or ended an\n"
            "                        upgrade step for N heartbeats of every node\n"
            "  --interval S          mean heartbeat interval (default 30)\n"
            "  --jitter F            each interval is S*(1+-F), uniform (default 0.1)\n"
            "  --ramp S              first heartbeats spread over S seconds (default: the\n"
            "                        interval)\n"
            "  --step-time S         time between upgrade steps (default 0.5)\n"
            "  --download MODE       full (GET and hash the blob), range (a 1 KiB Range\n"
            "                        probe) or none (default full)\n"
            "  --fail VERSION=P      a node upgrading to VERSION ends UpgradeFailed with\n"
            "                        chance P (repeatable)\n"
            "  --rollback VERSION=P  ... ends RolledBack with chance P (repeatable)\n"
            "  --healthy-first POLICY=N\n"
            "                        the N nodes first in POLICY's rollout order\n"
            "                        (pkgstore_rollout_rank()) never fail: a first batch\n"
            "                        of N is healthy, the chances apply to the others\n"
            "  --label KEY=V:W,...   a label and the weights of its values (repeatable;\n"
            "                        default env=prod:70,staging:20,dev:10\n"
            "                        region=eu-west:40,us-east:40,ap-south:20\n"
            "                        canary=true:5,false:95)\n"
            "  --platform P:W,...    platforms and weights (default linux/amd64:80,\n"
            "                        linux/arm64:20)\n"
            "  --package NAME        the primary package nodes run (default otelcol-contrib)\n"
            "  --base-version V      the version they run at start (default 0.0.0)\n"
            "  --id-prefix P         node ids are P000000, P000001, ... (default sim-)\n"
            "  --seed N              labels, platforms, outcomes and jitter (default 1)\n"
            "  --connections N       keep-alive connections (default 8, at most %d)\n"
            "  --server-pid PID      report this process's RSS and CPU (/proc)\n"
            "  --admin-token-file F  also read GET /v1/policies every --watch-every S\n"
            "                        (default 1) with this admin token: the server's side\n"
            "                        of the rollout joins the timeline\n"
            "  --report FILE         write everything as JSON, with every node's offers\n"
            "  --progress S          plain progress lines every S s when stderr is not a\n"
            "                        terminal (default 10; 0: none)\n"
            "  --json                print the summary as JSON on stdout\n"
            "  --quiet               no progress\n"
            "  --help, --version\n"
            "\n"
            "Exit status: 0 no error, 1 error responses or transport errors, 2 usage,\n"
            "3 the run could not start.\n",
            FLEETSIM_NODES_MAX, FLEETSIM_DURATION_MAX, FLEETSIM_CONNECTIONS_MAX);
}

static int parse_double(double *out, const char *text, double min, double max, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= min && v <= max))
        return cli_usage("%s: '%s' is not a number in %g..%g", what, text, min, max);
    *out = v;
    return 0;
}

static int parse_unsigned(unsigned *out, const char *text, unsigned min, unsigned max,
                          const char *what)
{
    double v;
    if (parse_double(&v, text, min, max, what))
        return CLI_EXIT_USAGE;
    if (v != floor(v))
        return cli_usage("%s: '%s' is not a whole number", what, text);
    *out = (unsigned)v;
    return 0;
}

/* "A:1,B:2" into names and cumulative weights normalized to 1. */
static int parse_weights(char **names, double *cumulative, int *count, int max, char *text,
                         const char *what)
{
    double total = 0;
    *count = 0;
    for (char *save = NULL, *item = strtok_r(text, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(item, ':');
        double w = 1;
        if (colon) {
            *colon = '\0';
            if (parse_double(&w, colon + 1, 0, 1e9, what))
                return 2;
        }
        if (*count == max)
            return cli_usage("%s: more than %d values", what, max);
        if (!*item)
            return cli_usage("%s: an empty value", what);
        if (!(names[*count] = strdup(item))) {
            cli_error(NULL, "out of memory");
            return CLI_EXIT_ERROR;
        }
        total += w;
        cumulative[(*count)++] = total;
    }
    if (!*count || total <= 0)
        return cli_usage("%s: no value with a positive weight", what);
    for (int i = 0; i < *count; i++)
        cumulative[i] /= total;
    return 0;
}

static int parse_label(char *arg)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof opt.labels[0].key)
        return cli_usage("--label: '%s' is not KEY=VALUE:WEIGHT,...", arg);
    if (opt.label_count == LABEL_KEYS_MAX)
        return cli_usage("--label: more than %d keys", LABEL_KEYS_MAX);
    label_dist *l = &opt.labels[opt.label_count];
    *eq = '\0';
    for (int k = 0; k < opt.label_count; k++)
        if (!strcmp(opt.labels[k].key, arg))
            return cli_usage("--label: %s given twice", arg);
    snprintf(l->key, sizeof l->key, "%s", arg);
    if (parse_weights(l->values, l->weights, &l->count, LABEL_VALUES_MAX, eq + 1, "--label"))
        return 2;
    opt.label_count++;
    return 0;
}

static int parse_fail(char *arg, int rolled_back)
{
    const char *what = rolled_back ? "--rollback" : "--fail";
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof opt.fails[0].version)
        return cli_usage("%s: '%s' is not VERSION=P", what, arg);
    *eq = '\0';
    double p;
    if (parse_double(&p, eq + 1, 0, 1, what))
        return 2;
    fail_rate *f = (fail_rate *)fail_for(arg);
    if (!f) {
        if (opt.fail_count == FAILS_MAX)
            return cli_usage("%s: more than %d versions", what, FAILS_MAX);
        f = &opt.fails[opt.fail_count++];
        snprintf(f->version, sizeof f->version, "%s", arg);
    }
    if (rolled_back)
        f->rolled_back = p;
    else
        f->upgrade_failed = p;
    if (f->rolled_back + f->upgrade_failed > 1)
        return cli_usage("%s: the chances for %s add up to more than 1", what, arg);
    return 0;
}

/* --healthy-first POLICY=N */
static int parse_healthy(char *arg, int unused)
{
    (void)unused;
    char *eq = strrchr(arg, '=');
    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof opt.healthy_policy)
        return cli_usage("--healthy-first: '%s' is not POLICY=N", arg);
    *eq = '\0';
    if (parse_unsigned(&opt.healthy_count, eq + 1, 1, FLEETSIM_NODES_MAX, "--healthy-first"))
        return 2;
    snprintf(opt.healthy_policy, sizeof opt.healthy_policy, "%s", arg);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* --healthy-first: the rank below which the first N nodes are. */
static int healthy_limit(void)
{
    if (opt.healthy_count >= opt.nodes) {
        g_healthy_below = UINT64_MAX; /* every node: above it only UINT64_MAX itself */
        return 0;
    }
    uint64_t *ranks = malloc(sizeof *ranks * opt.nodes);
    if (!ranks)
        return -1;
    for (uint32_t i = 0; i < opt.nodes; i++) {
        char id[300];
        node_id(id, sizeof id, i);
        ranks[i] = pkgstore_rollout_rank(opt.healthy_policy, id);
    }
    qsort(ranks, opt.nodes, sizeof *ranks, cmp_u64);
    g_healthy_below = ranks[opt.healthy_count - 1] + 1; /* one past the N-th lowest */
    free(ranks);
    return 0;
}

/* The server must be http(s)://127.0.0.1[:PORT]: libcurl's URL parser
 * says what the host is. */
static int check_server(const char *server)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
    int rc = 0;
    if (!u || curl_url_set(u, CURLUPART_URL, server, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        rc = cli_usage("--server: '%s' is not a URL", server);
        goto out;
    }
    if (strcmp(scheme, "http") && strcmp(scheme, "https")) {
        rc = cli_usage("--server: %s: only http:// and https:// are spoken", server);
        goto out;
    }
    if (strcmp(host, "127.0.0.1")) {
        rc = cli_usage("--server: %s: the simulator talks to 127.0.0.1 only, not %s", server,
                       host);
        goto out;
    }
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    if (path && strcmp(path, "/")) {
        rc = cli_usage("--server: %s: give the server's root, without a path", server);
        goto out;
    }
    snprintf(opt.base_url, sizeof opt.base_url, "%s://127.0.0.1:%s", scheme, port ? port : "80");
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return rc;
}

typedef struct cred_load {
    uint32_t loaded;
    char err[300];
} cred_load;

/* A credentials line "NODE_ID TOKEN": node ids outside the simulated
 * fleet are skipped. */
static int cred_line(void *payload, int lineno, const char *first, const char *second)
{
    cred_load *load = payload;
    size_t plen = strlen(opt.id_prefix);
    if (!second) {
        snprintf(load->err, sizeof load->err, "line %d: expected 'NODE_ID TOKEN'", lineno);
        return -1;
    }
    if (strncmp(first, opt.id_prefix, plen))
        return 0;
    char *end;
    unsigned long idx = strtoul(first + plen, &end, 10);
    if (*end || end == first + plen || idx >= opt.nodes)
        return 0;
    char id[300];
    node_id(id, sizeof id, (uint32_t)idx);
    if (strcmp(id, first))
        return 0;
    free(g_tokens[idx]);
    g_tokens[idx] = strdup(second);
    load->loaded++;
    return 0;
}

static void on_signal(int sig)
{
    g_stop_signal = sig;
}

/* Parse a writable copy of arg with parse (which keeps copies of what it
 * keeps), then free the copy. */
static int parse_copy(int (*parse)(char *, int), const char *arg, int flag)
{
    char *copy = strdup(arg);
    if (!copy) {
        cli_error(NULL, "out of memory");
        return CLI_EXIT_ERROR;
    }
    int rc = parse(copy, flag);
    free(copy);
    return rc;
}

static int parse_label_flag(char *arg, int unused)
{
    (void)unused;
    return parse_label(arg);
}

static int parse_platforms(char *arg, int unused)
{
    (void)unused;
    return parse_weights(opt.platforms, opt.platform_weights, &opt.platform_count, PLATFORMS_MAX,
                         arg, "--platform");
}

enum {
    O_SERVER = 256, O_TOKEN, O_CREDS, O_CACERT, O_NODES, O_DURATION, O_QUIET_ROUNDS, O_INTERVAL,
    O_JITTER, O_RAMP, O_STEP, O_DOWNLOAD, O_FAIL, O_ROLLBACK, O_LABEL, O_PLATFORM, O_PACKAGE,
    O_BASE, O_PREFIX, O_SEED, O_CONNECTIONS, O_PID, O_REPORT, O_PROGRESS, O_JSON, O_QUIET,
    O_HELP, O_VERSION, O_ADMIN, O_WATCH, O_HEALTHY
};

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"token-file", required_argument, NULL, O_TOKEN},
        {"credentials", required_argument, NULL, O_CREDS},
        {"cacert", required_argument, NULL, O_CACERT},
        {"nodes", required_argument, NULL, O_NODES},
        {"duration", required_argument, NULL, O_DURATION},
        {"until-quiet", required_argument, NULL, O_QUIET_ROUNDS},
        {"interval", required_argument, NULL, O_INTERVAL},
        {"jitter", required_argument, NULL, O_JITTER},
        {"ramp", required_argument, NULL, O_RAMP},
        {"step-time", required_argument, NULL, O_STEP},
        {"download", required_argument, NULL, O_DOWNLOAD},
        {"fail", required_argument, NULL, O_FAIL},
        {"rollback", required_argument, NULL, O_ROLLBACK},
        {"label", required_argument, NULL, O_LABEL},
        {"platform", required_argument, NULL, O_PLATFORM},
        {"package", required_argument, NULL, O_PACKAGE},
        {"base-version", required_argument, NULL, O_BASE},
        {"id-prefix", required_argument, NULL, O_PREFIX},
        {"seed", required_argument, NULL, O_SEED},
        {"healthy-first", required_argument, NULL, O_HEALTHY},
        {"connections", required_argument, NULL, O_CONNECTIONS},
        {"server-pid", required_argument, NULL, O_PID},
        {"report", required_argument, NULL, O_REPORT},
        {"admin-token-file", required_argument, NULL, O_ADMIN},
        {"watch-every", required_argument, NULL, O_WATCH},
        {"progress", required_argument, NULL, O_PROGRESS},
        {"json", no_argument, NULL, O_JSON},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    cli_init(argv[0]);
    opterr = 0;
    opt.server = getenv("PKGSTORE_SERVER");
    int rc = 0, opt_char;
    double v;
    unsigned u;
    while (!rc && (opt_char = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (opt_char) {
        case O_SERVER: opt.server = optarg; break;
        case O_TOKEN: opt.token_file = optarg; break;
        case O_CREDS: opt.credentials_file = optarg; break;
        case O_CACERT: opt.cacert = optarg; break;
        case O_NODES: rc = parse_unsigned(&opt.nodes, optarg, 1, FLEETSIM_NODES_MAX, "--nodes"); break;
        case O_DURATION:
            rc = parse_double(&opt.duration, optarg, 0.1, FLEETSIM_DURATION_MAX, "--duration");
            break;
        case O_QUIET_ROUNDS:
            rc = parse_unsigned(&opt.quiet_rounds, optarg, 1, 100, "--until-quiet");
            break;
        case O_INTERVAL: rc = parse_double(&opt.interval, optarg, 0.01, 86400, "--interval"); break;
        case O_JITTER: rc = parse_double(&opt.jitter, optarg, 0, 0.99, "--jitter"); break;
        case O_RAMP: rc = parse_double(&opt.ramp, optarg, 0, 86400, "--ramp"); break;
        case O_STEP: rc = parse_double(&opt.step_time, optarg, 0, 3600, "--step-time"); break;
        case O_DOWNLOAD:
            if (!strcmp(optarg, "full"))
                opt.download = DL_FULL;
            else if (!strcmp(optarg, "range"))
                opt.download = DL_RANGE;
            else if (!strcmp(optarg, "none"))
                opt.download = DL_NONE;
            else
                rc = cli_usage("--download: '%s' is not full, range or none", optarg);
            break;
        case O_FAIL: rc = parse_copy(parse_fail, optarg, 0); break;
        case O_ROLLBACK: rc = parse_copy(parse_fail, optarg, 1); break;
        case O_HEALTHY: rc = parse_copy(parse_healthy, optarg, 0); break;
        case O_LABEL: rc = parse_copy(parse_label_flag, optarg, 0); break;
        case O_PLATFORM: rc = parse_copy(parse_platforms, optarg, 0); break;
        case O_PACKAGE: opt.package = optarg; break;
        case O_BASE: opt.base_version = optarg; break;
        case O_PREFIX: opt.id_prefix = optarg; break;
        case O_SEED:
            rc = parse_double(&v, optarg, 0, 9007199254740992.0, "--seed");
            opt.seed = (uint64_t)v;
            break;
        case O_CONNECTIONS:
            rc = parse_unsigned(&opt.connections, optarg, 1, FLEETSIM_CONNECTIONS_MAX,
                                "--connections");
            break;
        case O_PID:
            rc = parse_unsigned(&u, optarg, 1, 4194304, "--server-pid");
            opt.server_pid = u;
            break;
        case O_REPORT: opt.report_path = optarg; break;
        case O_ADMIN: opt.admin_token_file = optarg; break;
        case O_WATCH: rc = parse_double(&opt.watch_every, optarg, 0.1, 3600, "--watch-every"); break;
        case O_PROGRESS: rc = parse_double(&opt.progress_every, optarg, 0, 86400, "--progress"); break;
        case O_JSON: opt.json = 1; break;
        case O_QUIET: opt.quiet = 1; break;
        case O_HELP: usage(stdout); return CLI_EXIT_OK;
        case O_VERSION: return cli_version();
        default: return cli_option_error(opt_char, argv);
        }
    }
    if (rc)
        return rc;
    if (optind < argc)
        return cli_usage("unexpected argument '%s'", argv[optind]);
    if (!opt.server || !*opt.server)
        return cli_usage("--server URL is required (or set PKGSTORE_SERVER)");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cli_error(NULL, "libcurl cannot start");
        return CLI_EXIT_ERROR;
    }
    if ((rc = check_server(opt.server)))
        return rc;
    if (strlen(opt.id_prefix) > 200)
        return cli_usage("--id-prefix: longer than 200 characters");
    if (opt.ramp < 0)
        opt.ramp = opt.interval;
    if (!opt.label_count) {
        char defaults[][64] = {"env=prod:70,staging:20,dev:10",
                               "region=eu-west:40,us-east:40,ap-south:20",
                               "canary=true:5,false:95"};
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
            if ((rc = parse_label(defaults[i])))
                return rc;
    }
    if (!opt.platform_count && (rc = parse_copy(parse_platforms, "linux/amd64:80,linux/arm64:20", 0)))
        return rc;
    if (opt.cacert && access(opt.cacert, R_OK) < 0) {
        cli_error(opt.cacert, "cannot read the CA file: %s", strerror(errno));
        return CLI_EXIT_ERROR;
    }

    /* the shared token, unless every node has its own */
    const char *token_file = opt.token_file ? opt.token_file : getenv("PKGSTORE_TOKEN_FILE");
    char err[600];
    if (token_file && *token_file) {
        if (http_read_token(g_shared_token, sizeof g_shared_token, token_file, cli_prog()) < 0)
            return CLI_EXIT_ERROR;
    } else if (getenv("PKGSTORE_TOKEN") && *getenv("PKGSTORE_TOKEN")) {
        snprintf(g_shared_token, sizeof g_shared_token, "%s", getenv("PKGSTORE_TOKEN"));
    }

    if (opt.admin_token_file &&
        http_read_token(g_admin_token, sizeof g_admin_token, opt.admin_token_file, cli_prog()) < 0)
        return CLI_EXIT_ERROR;

    g_nodes = calloc(opt.nodes, sizeof *g_nodes);
    /* one more transfer than the pool: the policy watch's */
    g_xfers = calloc(opt.connections + 1, sizeof *g_xfers);
    g_tl.rows = json_array();
    if (!g_nodes || !g_xfers || !g_tl.rows) {
        cli_error(NULL, "out of memory for %u nodes", opt.nodes);
        return CLI_EXIT_ERROR;
    }
    if (opt.credentials_file) {
        g_tokens = calloc(opt.nodes, sizeof *g_tokens);
        cred_load load = {0};
        int t = g_tokens ? token_file_each(opt.credentials_file, cred_line, &load, err, sizeof err)
                         : -1;
        if (t != 0) {
            cli_error(opt.credentials_file, "%s",
                      t == 1 ? strerror(ENOENT) : load.err[0] ? load.err : err);
            return CLI_EXIT_ERROR;
        }
        if (!load.loaded) {
            cli_error(opt.credentials_file, "no credential for a node id %s000000..%06u",
                      opt.id_prefix, opt.nodes - 1);
            return CLI_EXIT_ERROR;
        }
    }
    if (!g_shared_token[0]) {
        for (uint32_t i = 0; i < opt.nodes; i++)
            if (!g_tokens || !g_tokens[i]) {
                char id[300];
                node_id(id, sizeof id, i);
                cli_error(NULL,
                          "no token for node %s: pass --token-file FILE (the fleet-wide agent "
                          "token) or a --credentials line for it",
                          id);
                return CLI_EXIT_ERROR;
            }
    }

    if (opt.healthy_count && healthy_limit() < 0) {
        cli_error(NULL, "out of memory");
        return CLI_EXIT_ERROR;
    }
    uint16_t base = intern(opt.base_version);
    for (uint32_t i = 0; i < opt.nodes; i++) {
        node *n = &g_nodes[i];
        for (int k = 0; k < opt.label_count; k++)
            n->label[k] = (uint8_t)pick(opt.labels[k].weights, opt.labels[k].count,
                                        draw(i, 0x1abe1, (uint64_t)k));
        n->platform = (uint8_t)pick(opt.platform_weights, opt.platform_count, draw(i, 0x91a7, 0));
        n->version = base;
        n->first_offer = n->last_offer = -1;
    }

    g_multi = curl_multi_init();
    if (!g_multi) {
        cli_error(NULL, "libcurl: cannot create a multi handle");
        return CLI_EXIT_ERROR;
    }
    long conns = (long)opt.connections + (opt.admin_token_file ? 1 : 0);
    curl_multi_setopt(g_multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
    curl_multi_setopt(g_multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns);
    curl_multi_setopt(g_multi, CURLMOPT_MAXCONNECTS, conns);
    for (unsigned i = 0; i <= opt.connections; i++)
        if (!(g_xfers[i].easy = curl_easy_init())) {
            cli_error(NULL, "libcurl: cannot create a handle");
            return CLI_EXIT_ERROR;
        }

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    g_tty = !opt.quiet && isatty(STDERR_FILENO);

    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    g_t0 = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    time_t started_wall = time(NULL);
    double cpu0 = self_cpu();
    proc_sample p0 = read_proc(opt.server_pid);
    if (opt.server_pid > 0 && !p0.ok) {
        cli_error(NULL, "--server-pid %ld: no such process to measure", opt.server_pid);
        return CLI_EXIT_ERROR;
    }
    /* the first heartbeats, spread evenly over the ramp in a shuffled order */
    for (uint32_t i = 0; i < opt.nodes; i++)
        schedule(i, opt.ramp * draw(i, 0x4a3b, 1));

    double next_tick = 1.0, next_progress = opt.progress_every, next_watch = 0;
    xfer *watch = &g_xfers[opt.connections];
    unsigned free_hint = 0;
    int stopping = 0;
    double stopped_at = 0;
    const char *stop_reason = NULL;
    for (;;) {
        double t = now();
        if (!stopping) {
            if (g_stop_signal)
                stop_reason = "signal";
            else if (t >= opt.duration)
                stop_reason = "duration";
            else if (opt.quiet_rounds && g_quiet_nodes >= opt.nodes && !g_upgrading)
                stop_reason = "quiet";
            if (stop_reason)
                stopping = 1, stopped_at = t;
        }
        if (stopping && !g_active && !watch->active)
            break;
        if (stopping && t >= stopped_at + 30)
            break; /* in-flight requests get 30 s past the end, no more */
        /* start whatever is due, as far as the pool allows */
        while (!stopping && g_active < opt.connections && g_heap.count &&
               g_heap.items[0].due <= t) {
            event e = heap_pop();
            if (g_nodes[e.node].busy) /* cannot happen: one event per node */
                continue;
            unsigned k = free_hint;
            while (g_xfers[k].active)
                k = (k + 1) % opt.connections;
            free_hint = (k + 1) % opt.connections;
            if (node_act(&g_xfers[k], e.node, e.due) < 0) {
                cli_error(NULL, "cannot start a request: out of memory");
                g_stop_signal = SIGTERM;
                break;
            }
        }
        if (!stopping && opt.admin_token_file && !watch->active && t >= next_watch) {
            if (xfer_start(watch, UINT32_MAX, R_POLICIES, t) < 0) {
                cli_error(NULL, "cannot start a request: out of memory");
                g_stop_signal = SIGTERM;
            }
            next_watch = t + opt.watch_every;
        }
        int running = 0;
        curl_multi_perform(g_multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(g_multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            xfer *x = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            finish(x, msg->data.result);
        }
        t = now();
        if (t >= next_tick) {
            tl_tick(t);
            next_tick = floor(t) + 1.0;
            if (g_tty)
                progress(t, 0);
        }
        if (!g_tty && !opt.quiet && opt.progress_every > 0 && t >= next_progress) {
            progress(t, 0);
            next_progress = t + opt.progress_every;
        }
        /* sleep until the next due node, the next tick, or network activity */
        double wake = next_tick;
        if (!stopping && g_heap.count && g_active < opt.connections && g_heap.items[0].due < wake)
            wake = g_heap.items[0].due;
        if (!stopping && opt.duration < wake)
            wake = opt.duration;
        if (!stopping && opt.admin_token_file && !watch->active && next_watch < wake)
            wake = next_watch;
        int timeout_ms = (int)ceil((wake - now()) * 1000);
        if (timeout_ms > 0)
            curl_multi_poll(g_multi, NULL, 0, timeout_ms > 1000 ? 1000 : timeout_ms, NULL);
    }
    double elapsed = now();
    tl_tick(elapsed + 1);
    if (g_tty)
        progress(elapsed, 1);
    proc_sample p1 = read_proc(opt.server_pid);

    json_t *summary = summary_json(elapsed, p0, p1, cpu0);
    json_object_set_new(summary, "stopped_by", json_string(stop_reason));
    json_object_set_new(summary, "unfinished_requests", json_integer(g_active));
    char started_text[32];
    cli_format_time(started_text, sizeof started_text, (long long)started_wall);
    json_t *config = json_pack(
        "{s:s, s:s, s:I, s:f, s:f, s:f, s:f, s:s, s:I, s:I, s:s, s:s, s:s}", "started",
        started_text, "server", opt.base_url, "nodes", (json_int_t)opt.nodes, "duration_s",
        opt.duration, "interval_s", opt.interval, "jitter", opt.jitter, "step_time_s",
        opt.step_time, "download",
        opt.download == DL_FULL ? "full" : opt.download == DL_RANGE ? "range" : "none",
        "connections", (json_int_t)opt.connections, "seed", (json_int_t)opt.seed, "package",
        opt.package, "base_version", opt.base_version, "id_prefix", opt.id_prefix);
    json_t *fails = json_object();
    for (int i = 0; i < opt.fail_count; i++)
        json_object_set_new(fails, opt.fails[i].version,
                            json_pack("{s:f, s:f}", "UpgradeFailed", opt.fails[i].upgrade_failed,
                                      "RolledBack", opt.fails[i].rolled_back));
    json_object_set_new(config, "failures", fails);
    if (opt.healthy_count)
        json_object_set_new(config, "healthy_first",
                            json_pack("{s:s, s:I}", "policy", opt.healthy_policy, "nodes",
                                      (json_int_t)opt.healthy_count));

    if (opt.json) {
        json_t *out = json_pack("{s:O, s:O, s:O}", "config", config, "summary", summary,
                                "timeline", g_tl.rows);
        json_dumpf(out, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(out);
    } else {
        print_summary(stdout, summary);
    }
    int exit_code =
        json_integer_value(json_object_get(summary, "errors")) ? EXIT_ERRORS : CLI_EXIT_OK;
    if (opt.report_path && write_report(opt.report_path, summary, config) < 0)
        exit_code = CLI_EXIT_ERROR;
    json_decref(summary);
    json_decref(config);
    for (unsigned i = 0; i <= opt.connections; i++) {
        if (g_xfers[i].active)
            curl_multi_remove_handle(g_multi, g_xfers[i].easy);
        curl_easy_cleanup(g_xfers[i].easy);
        curl_slist_free_all(g_xfers[i].headers);
        free(g_xfers[i].request);
        free(g_xfers[i].body);
        pkgstore_digest_ctx_free(g_xfers[i].digest);
    }
    curl_multi_cleanup(g_multi);
    curl_global_cleanup();
    return exit_code;
}
