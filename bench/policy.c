/*
 * bench/policy: the fleet's heartbeat path and views (server/fleet/ over
 * the library's policy evaluation), on one core, without HTTP.
 *
 * Sets up a store with VERSIONS versions of one package and POLICIES
 * policies (label selectors over ring/env/zone, distinct priorities), then:
 *
 *   1. posts a realistic heartbeat for each of NODES distinct node ids,
 *      ROUNDS times, and quotes the median heartbeats per CPU second of a
 *      round. The reference is what any JSON handler must do with the same
 *      bodies at the least: parse them and serialize a reply with jansson
 *      (json_loadb + json_dumps of the parsed body). The ratio says what
 *      policy evaluation, node recording and offer building add on top;
 *   2. grows the fleet to MEMORY_NODES distinct nodes and reports the heap
 *      in use per node (mallinfo2) and the process RSS, first for nodes of
 *      shared label sets (rings), then for nodes that each carry a unique
 *      "host" label (no report is shared);
 *   3. times a rollout view over the whole fleet (one policy with a page of
 *      its nodes), the /metrics pass (count_foreach), a full flush, and a
 *      close and reopen that loads every node back.
 *
 * usage: policy [--nodes N] [--memory-nodes N] [--policies N] [--rounds N]
 */
#include <pkgstore.h>
#include <pkgstore/registry.h>

#include "../server/fleet/fleet.h"

#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "policy: %s: %s: %s\n", what, pkgstore_strerror(rc), pkgstore_error_detail());
    exit(2);
}

static void die_fleet(const char *what, const fleet_error *err)
{
    fprintf(stderr, "policy: %s: %s\n", what, err->message);
    exit(2);
}

static long rss_kb(void)
{
    char line[256];
    long kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atol(line + 6);
    }
    fclose(f);
    return kb;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *values, int n)
{
    qsort(values, (size_t)n, sizeof(*values), cmp_double);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

/* A heartbeat as pkgstore-agent sends it; unique adds a label of its own
 * ("host"), so that no two nodes share a report. */
static int body_for(char *buf, size_t size, int node, int policies, int unique)
{
    static const char *const platforms[] = {"linux/amd64", "linux/arm64", "linux/x86_64"};
    char host[48] = "";
    if (unique)
        snprintf(host, sizeof(host), "\"host\":\"edge-host-%06d\",", node);
    return snprintf(buf, size,
                    "{\"node_id\":\"edge-%06d\",\"labels\":{%s\"env\":\"%s\",\"ring\":\"r%d\","
                    "\"zone\":\"eu-west-%d\"},\"platform\":\"%s\",\"agent_version\":\"0.1.0\","
                    "\"packages\":[{\"name\":\"otelcol-contrib\",\"type\":\"primary\","
                    "\"version\":\"0.89.0\",\"digest\":\"sha256:0123456789abcdef0123456789abcdef"
                    "0123456789abcdef0123456789abcdef\",\"state\":\"Running\"}],"
                    /* what an agent with trust.root adds: fleet-wide the same */
                    "\"trust\":{\"root_version\":2,\"revocations\":3,"
                    "\"newest_signed\":\"2026-12-01T09:00:00Z\"}}",
                    node, host, node % 3 ? "prod" : "dev", node % (policies + 5), node % 3,
                    platforms[node % 3]);
}

int main(int argc, char **argv)
{
    int nodes = 10000, memory_nodes = 100000, npolicies = 20, rounds = 5;
    char dir[] = "/tmp/pkgstore-bench-policy.XXXXXX", body[1024], cmd[128];
    pkgstore_store_options sopts = PKGSTORE_STORE_OPTIONS_INIT;
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    fleet *db = NULL;
    fleet_options fopts;
    fleet_error ferr;
    char fleet_dir[64];
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc)
            nodes = atoi(argv[++i]);
        else if (strcmp(argv[i], "--memory-nodes") == 0 && i + 1 < argc)
            memory_nodes = atoi(argv[++i]);
        else if (strcmp(argv[i], "--policies") == 0 && i + 1 < argc)
            npolicies = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: policy [--nodes N] [--memory-nodes N] [--policies N] "
                            "[--rounds N]\n");
            return 2;
        }
    }
    if (nodes < 1 || memory_nodes < nodes || npolicies < 1 || rounds < 1 || rounds > 99) {
        fprintf(stderr, "policy: bad arguments\n");
        return 2;
    }
    if (!mkdtemp(dir)) {
        perror("policy: mkdtemp");
        return 2;
    }
    sopts.durability = PKGSTORE_DURABILITY_NONE;
    if ((rc = pkgstore_store_open(&store, dir, &sopts)) < 0)
        die("store", rc);
    if ((rc = pkgstore_registry_open(&reg, store)) < 0)
        die("registry", rc);
    for (int v = 0; v < npolicies; v++) {
        static const char *const platforms[] = {"linux/amd64", "linux/arm64"};
        char version[32], bytes[64];
        for (int p = 0; p < 2; p++) {
            pkgstore_artifact artifact;
            pkgstore_registry_add_options opts = PKGSTORE_REGISTRY_ADD_OPTIONS_INIT;
            memset(&artifact, 0, sizeof(artifact));
            snprintf(version, sizeof(version), "0.%d.0", 90 + v);
            snprintf(bytes, sizeof(bytes), "collector %s %s", version, platforms[p]);
            if ((rc = pkgstore_store_add_buffer(&artifact.digest, store, bytes, strlen(bytes))) < 0)
                die("add blob", rc);
            snprintf(artifact.platform, sizeof(artifact.platform), "%s", platforms[p]);
            opts.force = 1;
            if ((rc = pkgstore_registry_add(NULL, NULL, reg, "otelcol-contrib", version, &artifact,
                                            &opts)) < 0)
                die("add package", rc);
        }
    }
    snprintf(fleet_dir, sizeof(fleet_dir), "%s/fleet", dir);
    fleet_options_init(&fopts);
    fopts.dir = fleet_dir;
    fopts.no_fsync = 1;
    fopts.no_flusher = 1;
    fopts.new_nodes_per_s = 0; /* unlimited: one credential adds the whole fleet */
    fopts.max_nodes = (size_t)memory_nodes * 2;
    if (fleet_open(&db, reg, &fopts, &ferr) < 0)
        die_fleet("open", &ferr);
    for (int p = 0; p < npolicies; p++) {
        char name[32], selector[96], version[32];
        pkgstore_policy *policy = NULL;
        snprintf(name, sizeof(name), "ring-%02d", p);
        snprintf(selector, sizeof(selector), "ring=r%d,env in (dev,prod),zone", p);
        snprintf(version, sizeof(version), "0.%d.0", 90 + p);
        if ((rc = pkgstore_policy_new(&policy, name, "otelcol-contrib", version)) < 0 ||
            (rc = pkgstore_policy_set_selector(policy, selector)) < 0 ||
            (rc = pkgstore_policy_set_priority(policy, p % 5)) < 0 ||
            (rc = pkgstore_policy_put(NULL, reg, policy)) < 0)
            die("put policy", rc);
        pkgstore_policy_free(policy);
    }
    fleet_policies_changed(db);

    /* 1. heartbeats vs the jansson floor */
    char **bodies = calloc((size_t)nodes, sizeof(*bodies));
    size_t *lens = calloc((size_t)nodes, sizeof(*lens));
    double hb_rates[99], ref_rates[99];
    for (int n = 0; n < nodes; n++) {
        lens[n] = (size_t)body_for(body, sizeof(body), n, npolicies, 0);
        bodies[n] = strdup(body);
    }
    size_t offers = 0;
    for (int r = 0; r < rounds; r++) {
        double start = cpu_now();
        for (int n = 0; n < nodes; n++) {
            char *response = NULL;
            size_t len = 0;
            if (fleet_heartbeat(&response, &len, db, bodies[n], lens[n], 1, NULL, &ferr) < 0)
                die_fleet("heartbeat", &ferr);
            offers += strstr(response, "\"offers\":[{") != NULL;
            free(response);
        }
        hb_rates[r] = nodes / (cpu_now() - start);
        start = cpu_now();
        for (int n = 0; n < nodes; n++) {
            json_t *root = json_loadb(bodies[n], lens[n], JSON_REJECT_DUPLICATES, NULL);
            char *text = json_dumps(root, JSON_COMPACT);
            free(text);
            json_decref(root);
        }
        ref_rates[r] = nodes / (cpu_now() - start);
    }
    double hb = median(hb_rates, rounds), ref = median(ref_rates, rounds);
    printf("heartbeats: %d nodes x %d policies, %d rounds: median %.0f heartbeats/CPU-s "
           "(%.1f us each), %zu of %zu replies carried an offer\n",
           nodes, npolicies, rounds, hb, 1e6 / hb, offers, (size_t)nodes * (size_t)rounds);
    printf("reference:  jansson parse + serialize of the same bodies: median %.0f/CPU-s\n", ref);
    printf("ratio:      heartbeat / jansson floor = %.2f\n", hb / ref);

    /* 2. memory per node: shared reports, then unique ones */
    fleet_stats stats;
    for (int unique = 0; unique <= 1; unique++) {
        int first = unique ? memory_nodes : nodes, last = unique ? 2 * memory_nodes - nodes
                                                                  : memory_nodes;
        if (fleet_flush(db, &ferr) < 0)
            die_fleet("flush", &ferr);
        malloc_trim(0);
        struct mallinfo2 before = mallinfo2();
        long rss_before = rss_kb();
        for (int n = first; n < last; n++) {
            char *response = NULL;
            size_t rlen = 0;
            int len = body_for(body, sizeof(body), n, npolicies, unique);
            if (fleet_heartbeat(&response, &rlen, db, body, (size_t)len, 1, NULL, &ferr) < 0)
                die_fleet("heartbeat", &ferr);
            free(response);
        }
        malloc_trim(0);
        struct mallinfo2 after = mallinfo2();
        double per_node = last > first ? (double)(after.uordblks - before.uordblks) /
                                             (double)(last - first)
                                       : 0.0;
        fleet_stats_get(db, &stats);
        printf("memory:     +%d nodes with %s reports: heap %.0f bytes per node (goal <= 512), "
               "RSS +%ld MB; fleet %zu nodes, %zu distinct reports, RSS %ld MB\n",
               last - first, unique ? "unique" : "shared", per_node,
               (rss_kb() - rss_before) / 1024, stats.nodes, stats.profiles, rss_kb() / 1024);
    }

    /* 2b. a rollout's statuses: each node of shared reports goes through
     * an upgrade as pkgstore-fleetsim reports it (six statuses, the last
     * with a message); the heap they add per node (history rings, interned
     * keys and messages), then what the flush adds to the fleet's LMDB
     * file (the records with their history), which pkgstored maps: its
     * pages count in the RSS as file pages */
    {
        static const char *const steps[] = {"Downloading", "Verifying",  "Validating",
                                            "Swapping",    "Monitoring", "Upgraded"};
        char mdb_path[96];
        struct stat st;
        snprintf(mdb_path, sizeof(mdb_path), "%s/data.mdb", fleet_dir);
        if (fleet_flush(db, &ferr) < 0)
            die_fleet("flush", &ferr);
        off_t mdb_before = stat(mdb_path, &st) == 0 ? st.st_size : 0;
        malloc_trim(0);
        struct mallinfo2 before = mallinfo2();
        long rss_before = rss_kb();
        for (size_t k = 0; k < sizeof(steps) / sizeof(*steps); k++) {
            for (int n = 0; n < memory_nodes; n++) {
                char *response = NULL;
                size_t rlen = 0;
                int len = body_for(body, sizeof(body), n, npolicies, 0);
                /* the package reports the offer and its status (the body
                 * ends with the trust object: insert before "}],") */
                char *pkg_end = strstr(body, "}],");
                char tail[512];
                snprintf(tail, sizeof(tail), "%s", pkg_end);
                len = (int)(pkg_end - body) +
                      snprintf(pkg_end, sizeof(body) - (size_t)(pkg_end - body),
                               ",\"offer\":{\"version\":\"0.99.0\"},\"status\":\"%s\"%s%s", steps[k],
                               k == 5 ? ",\"message\":\"upgraded (fleetsim)\"" : "", tail);
                if (fleet_heartbeat(&response, &rlen, db, body, (size_t)len, 1, NULL, &ferr) < 0)
                    die_fleet("heartbeat", &ferr);
                free(response);
            }
        }
        malloc_trim(0);
        struct mallinfo2 after = mallinfo2();
        long rss_mid = rss_kb();
        if (fleet_flush(db, &ferr) < 0)
            die_fleet("flush", &ferr);
        off_t mdb_after = stat(mdb_path, &st) == 0 ? st.st_size : 0;
        malloc_trim(0);
        struct mallinfo2 flushed = mallinfo2();
        printf("rollout:    %d nodes report 6 statuses each: heap +%.0f bytes per node, RSS +%.0f "
               "bytes per node; the flush grows the fleet's LMDB file by %.0f bytes per node "
               "(%.1f MB now) and the heap by %.1f MB (LMDB keeps the pages a write "
               "transaction dirtied for the next)\n",
               memory_nodes, (double)(after.uordblks - before.uordblks) / memory_nodes,
               (double)(rss_mid - rss_before) * 1024 / memory_nodes,
               (double)(mdb_after - mdb_before) / memory_nodes, (double)mdb_after / (1 << 20),
               ((double)flushed.uordblks - (double)after.uordblks) / (1 << 20));
    }

    /* 3. views, flush, reopen */
    double view_cpu[99], metrics_cpu[99], tick_cpu[99];
    for (int r = 0; r < rounds; r++) {
        json_t *status = NULL;
        fleet_query page = {0};
        page.limit = 100;
        double start = cpu_now();
        if (fleet_policy_status(&status, db, "ring-03", &page, &ferr) < 0)
            die_fleet("policy view", &ferr);
        view_cpu[r] = cpu_now() - start;
        json_decref(status);
        start = cpu_now();
        if (fleet_policies_status(&status, db, &ferr) < 0)
            die_fleet("counts", &ferr);
        metrics_cpu[r] = cpu_now() - start;
        json_decref(status);
        start = cpu_now();
        if (fleet_rollout_tick(db, (int64_t)time(NULL), &ferr) < 0)
            die_fleet("rollout tick", &ferr);
        tick_cpu[r] = cpu_now() - start;
    }
    fleet_stats_get(db, &stats);
    printf("views:      rollout view with a page of nodes over %zu nodes: median %.1f ms CPU; "
           "counts of every policy: %.1f ms CPU; a rollout driver round: %.1f ms CPU\n",
           stats.nodes, median(view_cpu, rounds) * 1e3, median(metrics_cpu, rounds) * 1e3,
           median(tick_cpu, rounds) * 1e3);

    /* half the nodes change: the flush rewrites them */
    for (int n = 0; n < memory_nodes; n += 2) {
        char *response = NULL;
        size_t rlen = 0;
        /* the same node without labels and packages: a real change */
        int len = snprintf(body, sizeof(body),
                           "{\"node_id\":\"edge-%06d\",\"platform\":\"linux/amd64\"}", n);
        if (fleet_heartbeat(&response, &rlen, db, body, (size_t)len, 1, NULL, &ferr) < 0)
            die_fleet("heartbeat", &ferr);
        free(response);
    }
    double start = wall_now();
    if (fleet_flush(db, &ferr) < 0)
        die_fleet("flush", &ferr);
    double flushed = wall_now() - start;
    start = wall_now();
    if (fleet_close(db, &ferr) < 0)
        die_fleet("close", &ferr);
    db = NULL;
    double closed = wall_now() - start;
    start = wall_now();
    if (fleet_open(&db, reg, &fopts, &ferr) < 0)
        die_fleet("reopen", &ferr);
    fleet_stats_get(db, &stats);
    printf("persist:    flush of %d changed nodes %.0f ms, close %.0f ms, reopen loading %zu "
           "nodes %.0f ms (wall)\n",
           (memory_nodes + 1) / 2, flushed * 1e3, closed * 1e3, stats.nodes,
           (wall_now() - start) * 1e3);

    fleet_close(db, &ferr);
    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    for (int n = 0; n < nodes; n++)
        free(bodies[n]);
    free(bodies);
    free(lens);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
