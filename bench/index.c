/*
 * bench/index: point lookups of package records, per CPU second.
 *
 * Fills an index with PACKAGES x VERSIONS x 4 platforms package records
 * (MDB_NOSYNC), then looks up random (name, version, platform) keys for a
 * fixed time, REPEAT times, and prints the medians of:
 *   ps_index_package_get   the library: rwlock, pooled read txn, decode
 *   lmdb txn per get       reference: plain LMDB, mdb_txn_begin/mdb_get/
 *                          mdb_txn_abort per lookup (no decode)
 *   lmdb one txn           reference: plain LMDB, all lookups in one read txn
 * and the library's rate as a ratio of each reference.
 *
 * usage: index [--packages N] [--versions N] [--seconds S] [--repeat N]
 */
#include <pkgstore.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "index.h"

static const char *const platforms[] = {"linux/amd64", "linux/arm64", "linux/arm/v7",
                                        "darwin/arm64"};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "index: %s: %s: %s\n", what, pkgstore_strerror(rc), pkgstore_error_detail());
    exit(2);
}

struct keys {
    char (*name)[32];
    char (*version)[32];
    size_t count;
};

static void make_key(char *name, char *version, const char **platform, unsigned long n,
                     int packages, int versions)
{
    snprintf(name, 32, "package-%04d", (int)(n % (unsigned long)packages));
    snprintf(version, 32, "1.%d.0", (int)((n / (unsigned long)packages) % (unsigned long)versions));
    *platform = platforms[(n / ((unsigned long)packages * (unsigned long)versions)) % 4];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum mode { LIBRARY, TXN_PER_GET, ONE_TXN };

struct raw {
    MDB_env *env;
    MDB_dbi dbi;
};

static double run(enum mode mode, ps_index *index, struct raw *raw, int packages, int versions,
                  double seconds)
{
    unsigned long n = 0, seed = 12345;
    unsigned long total = (unsigned long)packages * (unsigned long)versions * 4;
    pkgstore_package_record rec;
    MDB_txn *txn = NULL;
    double start = cpu_now(), elapsed;
    int rc;

    if (mode == ONE_TXN && (rc = mdb_txn_begin(raw->env, NULL, MDB_RDONLY, &txn)) != 0)
        die("txn", ps_index_error(rc, "begin"));
    do {
        for (int batch = 0; batch < 1000; batch++, n++) {
            char name[32], version[32], key[80];
            const char *platform;
            size_t len;
            MDB_val k, v;

            seed = seed * 6364136223846793005ul + 1442695040888963407ul;
            make_key(name, version, &platform, (seed >> 17) % total, packages, versions);
            if (mode == LIBRARY) {
                if ((rc = ps_index_package_get(&rec, index, name, version, platform)) != 0)
                    die("get", rc);
                continue;
            }
            len = (size_t)snprintf(key, sizeof(key), "%s%c%s%c%s", name, 0, version, 0, platform);
            k.mv_size = len;
            k.mv_data = key;
            if (mode == TXN_PER_GET &&
                (rc = mdb_txn_begin(raw->env, NULL, MDB_RDONLY, &txn)) != 0)
                die("txn", ps_index_error(rc, "begin"));
            if ((rc = mdb_get(txn, raw->dbi, &k, &v)) != 0)
                die("raw get", ps_index_error(rc, "get"));
            if (mode == TXN_PER_GET)
                mdb_txn_abort(txn);
        }
        elapsed = cpu_now() - start;
    } while (elapsed < seconds);
    if (mode == ONE_TXN)
        mdb_txn_abort(txn);
    return (double)n / elapsed;
}

int main(int argc, char **argv)
{
    int packages = 1000, versions = 50, repeat = 5;
    double seconds = 1.0;
    char dir[] = "/tmp/pkgstore-bench-index-XXXXXX";
    ps_index *index = NULL;
    struct raw raw;
    double rates[3][64];
    const char *labels[3] = {"ps_index_package_get", "lmdb txn per get", "lmdb one txn"};
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--packages") == 0 && i + 1 < argc)
            packages = atoi(argv[++i]);
        else if (strcmp(argv[i], "--versions") == 0 && i + 1 < argc)
            versions = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: index [--packages N] [--versions N] [--seconds S] "
                            "[--repeat N]\n");
            return 2;
        }
    }
    if (packages < 1 || versions < 1 || repeat < 1 || repeat > 64 || seconds <= 0) {
        fprintf(stderr, "index: bad arguments\n");
        return 2;
    }
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    if ((rc = ps_index_open(&index, dir, 0, 1, 0)) != 0)
        die(dir, rc);
    for (int p = 0; p < packages; p++) {
        for (int v = 0; v < versions; v++) {
            for (int f = 0; f < 4; f++) {
                pkgstore_package_record rec;
                memset(&rec, 0, sizeof(rec));
                snprintf(rec.name, sizeof(rec.name), "package-%04d", p);
                snprintf(rec.version, sizeof(rec.version), "1.%d.0", v);
                snprintf(rec.platform, sizeof(rec.platform), "%s", platforms[f]);
                snprintf(rec.format, sizeof(rec.format), "tar+zstd");
                snprintf(rec.entrypoint, sizeof(rec.entrypoint), "otelcol-contrib");
                rec.size = 123456;
                if ((rc = ps_index_package_put(index, &rec)) != 0)
                    die("fill", rc);
            }
        }
    }
    /* The raw references use the library's own environment and database
     * handle, so they read the very same pages. */
    raw.env = ps_index_env(index);
    raw.dbi = ps_index_dbi(index, PS_DB_PACKAGES);

    for (int r = 0; r < repeat; r++) {
        rates[LIBRARY][r] = run(LIBRARY, index, &raw, packages, versions, seconds);
        rates[TXN_PER_GET][r] = run(TXN_PER_GET, index, &raw, packages, versions, seconds);
        rates[ONE_TXN][r] = run(ONE_TXN, index, &raw, packages, versions, seconds);
    }
    printf("bench/index: %d packages x %d versions x 4 platforms = %d records, %d rounds of "
           "%.1f CPU s\n",
           packages, versions, packages * versions * 4, repeat, seconds);
    printf("%-24s %16s %10s\n", "lookup", "median/CPU s", "library/x");
    for (int m = 0; m < 3; m++)
        qsort(rates[m], (size_t)repeat, sizeof(double), cmp_double);
    for (int m = 0; m < 3; m++)
        printf("%-24s %16.0f %10.2f\n", labels[m], rates[m][repeat / 2],
               rates[LIBRARY][repeat / 2] / rates[m][repeat / 2]);
    ps_index_free(index);
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
