/*
 * bench/resolve: pkgstore_registry_resolve() throughput on one core.
 *
 * Builds (or reuses) a store holding PACKAGES packages x VERSIONS versions x
 * 4 platforms, then resolves random (name, constraint, node platform)
 * triples for a fixed time, REPEAT times, and prints the median rate. The
 * reference is the same resolution done without the registry's cache:
 * walking the package records of the name in the index
 * (pkgstore_index_package_foreach) and picking the best by hand, the way a
 * cache-less implementation would.
 *
 * Rates are per CPU second of the resolving thread (CLOCK_THREAD_CPUTIME_ID).
 *
 * usage: resolve [--dir DIR] [--packages N] [--versions N] [--seconds S]
 *                [--repeat N] [--target RATE]
 * Exit status 1 when the median is below --target (default 500000/s).
 */
#include <pkgstore.h>
#include <pkgstore/index.h>
#include <pkgstore/platform.h>
#include <pkgstore/registry.h>
#include <pkgstore/store.h>
#include <pkgstore/version.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const artifact_platforms[] = {"linux/amd64", "linux/arm64", "linux/arm/v7",
                                                 "darwin/arm64"};
static const char *const node_platforms[] = {"linux/amd64", "linux/arm64", "linux/armv7l",
                                             "darwin/arm64", "linux/x86_64", "linux/arm/v6"};
static const char *const constraints[] = {"", "^1", ">=1.10.0 <1.40.0", "~1.25", "*", "<1.5.0",
                                          "1.x || 2.x", ">=1.45.0"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Rates are per CPU second of this thread: the machine may be shared, and
 * the target is "on one core". */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "resolve: %s: %s: %s\n", what, pkgstore_strerror(rc), pkgstore_error_detail());
    exit(2);
}

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void build(pkgstore_store *store, pkgstore_registry *reg, int packages, int versions)
{
    pkgstore_artifact artifacts[COUNT(artifact_platforms)];
    char name[32], version[32], content[64];
    int rc;

    for (size_t p = 0; p < COUNT(artifact_platforms); p++) {
        memset(&artifacts[p], 0, sizeof(artifacts[p]));
        snprintf(content, sizeof(content), "collector binary for %s", artifact_platforms[p]);
        if ((rc = pkgstore_store_add_buffer(&artifacts[p].digest, store, content,
                                            strlen(content))) < 0)
            die("add blob", rc);
        strcpy(artifacts[p].platform, artifact_platforms[p]);
        artifacts[p].size = strlen(content);
        strcpy(artifacts[p].format, "binary");
        strcpy(artifacts[p].entrypoint, "otelcol");
    }
    double start = now();
    for (int n = 0; n < packages; n++) {
        snprintf(name, sizeof(name), "pkg-%04d", n);
        for (int v = 0; v < versions; v++) {
            pkgstore_manifest *m = NULL;
            snprintf(version, sizeof(version), "1.%d.%d", v, n % 3);
            if ((rc = pkgstore_manifest_new(&m, name, version, PKGSTORE_TYPE_PRIMARY)) < 0)
                die("manifest", rc);
            for (size_t p = 0; p < COUNT(artifact_platforms); p++)
                if ((rc = pkgstore_manifest_add_artifact(m, &artifacts[p])) < 0)
                    die("manifest artifact", rc);
            if ((rc = pkgstore_registry_put(NULL, reg, m, 1)) < 0)
                die("registry put", rc);
            pkgstore_manifest_free(m);
        }
        if (n % 100 == 99)
            fprintf(stderr, "resolve: built %d/%d packages (%.1f s)\n", n + 1, packages,
                    now() - start);
    }
}

/* The reference: resolve from the package records, no cache. */
typedef struct ref_walk {
    pkgstore_version_constraint *constraint;
    const pkgstore_platform *node;
    pkgstore_semver best_version;
    int best_rank;
    int found;
    char best_platform[PKGSTORE_PLATFORM_MAX + 1];
} ref_walk;

static int ref_cb(const pkgstore_package_record *record, void *payload)
{
    ref_walk *walk = payload;
    pkgstore_semver version;
    pkgstore_platform platform;
    if (pkgstore_version_parse(&version, pkgstore_package_record_version(record)) < 0 ||
        pkgstore_platform_parse(&platform, pkgstore_package_record_platform(record)) < 0)
        return 0;
    if (walk->constraint && !pkgstore_version_constraint_match(walk->constraint, &version))
        return 0;
    int rank = pkgstore_platform_rank(walk->node, &platform);
    if (rank == PKGSTORE_PLATFORM_RANK_NONE)
        return 0;
    int cmp = walk->found ? pkgstore_version_compare(&version, &walk->best_version) : 1;
    if (cmp > 0 || (cmp == 0 && rank < walk->best_rank)) {
        walk->best_version = version;
        walk->best_rank = rank;
        walk->found = 1;
        strcpy(walk->best_platform, pkgstore_package_record_platform(record));
    }
    return 0;
}

static int ref_resolve(pkgstore_store *store, const char *name, const char *constraint,
                       const char *node_platform)
{
    pkgstore_platform node;
    ref_walk walk;
    memset(&walk, 0, sizeof(walk));
    if (pkgstore_platform_parse(&node, node_platform) < 0)
        return -1;
    walk.node = &node;
    if (constraint[0] && pkgstore_version_constraint_parse(&walk.constraint, constraint) < 0)
        return -1;
    int rc = pkgstore_index_package_foreach(store, name, ref_cb, &walk);
    pkgstore_version_constraint_free(walk.constraint);
    return rc < 0 ? rc : walk.found;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int packages = 1000, versions = 50, repeat = 5;
    double seconds = 1.0, target = 500000;
    /* tmpfs when there is one: building 50,000 manifest blobs on a disk
     * file system measures the file system, not resolve() */
    char tmpdir[64];
    snprintf(tmpdir, sizeof(tmpdir), "%s/pkgstore-bench-resolve.XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");

    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: resolve [--dir DIR] [--packages N] [--versions N] [--seconds S] "
                   "[--repeat N] [--target RATE]\n");
            return 0;
        } else if (!value) {
            fprintf(stderr, "resolve: %s: missing value\n", argv[i]);
            return 2;
        } else if (strcmp(argv[i], "--dir") == 0) {
            dir = value;
        } else if (strcmp(argv[i], "--packages") == 0) {
            packages = atoi(value);
        } else if (strcmp(argv[i], "--versions") == 0) {
            versions = atoi(value);
        } else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = atof(value);
        } else if (strcmp(argv[i], "--repeat") == 0) {
            repeat = atoi(value);
        } else if (strcmp(argv[i], "--target") == 0) {
            target = atof(value);
        } else {
            fprintf(stderr, "resolve: %s: unknown option\n", argv[i]);
            return 2;
        }
        i++;
    }
    if (packages < 1 || versions < 1 || repeat < 1 || repeat > 99 || seconds <= 0) {
        fprintf(stderr, "resolve: bad sizes\n");
        return 2;
    }
    int own_dir = dir == NULL;
    if (own_dir && !(dir = mkdtemp(tmpdir))) {
        perror("resolve: mkdtemp");
        return 2;
    }

    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    opts.durability = PKGSTORE_DURABILITY_NONE;
    pkgstore_store *store = NULL;
    pkgstore_registry *reg = NULL;
    int rc;
    if ((rc = pkgstore_store_open(&store, dir, &opts)) < 0)
        die(dir, rc);
    if ((rc = pkgstore_registry_open(&reg, store)) < 0)
        die("registry", rc);

    char first[32];
    snprintf(first, sizeof(first), "pkg-%04d", packages - 1);
    pkgstore_resolution r;
    if (pkgstore_registry_resolve(&r, reg, first, NULL, "linux/amd64") == PKGSTORE_ENOTFOUND) {
        double start = now();
        build(store, reg, packages, versions);
        printf("built %d packages x %d versions x %zu platforms in %.1f s\n", packages, versions,
               COUNT(artifact_platforms), now() - start);
    }

    /* queries, fixed in advance so both sides resolve the same ones */
    enum { QUERIES = 4096 };
    static char names[QUERIES][32];
    static const char *query_constraint[QUERIES], *query_platform[QUERIES];
    for (int q = 0; q < QUERIES; q++) {
        snprintf(names[q], sizeof(names[q]), "pkg-%04d", (int)(rng() % (uint64_t)packages));
        query_constraint[q] = constraints[rng() % COUNT(constraints)];
        query_platform[q] = node_platforms[rng() % COUNT(node_platforms)];
    }

    /* warm the cache: every package once */
    double warm_start = now();
    for (int n = 0; n < packages; n++) {
        char name[32];
        snprintf(name, sizeof(name), "pkg-%04d", n);
        if ((rc = pkgstore_registry_resolve(&r, reg, name, NULL, "linux/amd64")) < 0)
            die(name, rc);
    }
    printf("cache warm-up (%d packages): %.2f s\n", packages, now() - warm_start);

    double rates[99], ref_rates[99];
    unsigned long found = 0;
    for (int round = 0; round < repeat; round++) {
        unsigned long done = 0;
        double start = cpu_now(), elapsed;
        do {
            for (int q = 0; q < 1024; q++, done++) {
                int i = (int)(done % QUERIES);
                rc = pkgstore_registry_resolve(&r, reg, names[i], query_constraint[i],
                                               query_platform[i]);
                if (rc == 0)
                    found++;
                else if (rc != PKGSTORE_ENOTFOUND)
                    die("resolve", rc);
            }
            elapsed = cpu_now() - start;
        } while (elapsed < seconds);
        rates[round] = (double)done / elapsed;

        /* the reference is slow: a tenth of the time is plenty */
        done = 0;
        start = cpu_now();
        do {
            int i = (int)(done % QUERIES);
            if ((rc = ref_resolve(store, names[i], query_constraint[i], query_platform[i])) < 0)
                die("reference resolve", rc);
            done++;
            elapsed = cpu_now() - start;
        } while (elapsed < seconds / 10);
        ref_rates[round] = (double)done / elapsed;
        printf("round %d: registry %.0f/s, reference %.0f/s\n", round + 1, rates[round],
               ref_rates[round]);
    }
    qsort(rates, (size_t)repeat, sizeof(double), cmp_double);
    qsort(ref_rates, (size_t)repeat, sizeof(double), cmp_double);
    double median = rates[repeat / 2], ref_median = ref_rates[repeat / 2];
    printf("resolve: median %.0f resolutions/s (target %.0f), reference (uncached index walk) "
           "%.0f/s, ratio %.1fx; %lu resolved\n",
           median, target, ref_median, median / ref_median, found);

    pkgstore_registry_free(reg);
    pkgstore_store_free(store);
    if (own_dir) {
        char command[128];
        snprintf(command, sizeof(command), "rm -rf '%s'", dir);
        if (system(command) != 0)
            fprintf(stderr, "resolve: could not remove %s\n", dir);
    }
    return median >= target ? 0 : 1;
}
