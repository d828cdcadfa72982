/*
 * bench/trust: what verifying one offer's signatures costs a node
 * (issue 12: under 1 ms), on one core.
 *
 * The offer is a realistic manifest (6 platforms, annotations) signed by 3
 * keys of a root with threshold 2 of 3. Timed, each as the median of ROUNDS
 * rounds of ITERATIONS:
 *
 *   cold  everything from bytes, as a short-lived helper process would:
 *         parse root.json and check its own threshold (2 signatures), parse
 *         the 3 envelopes, verify the manifest bytes (parse, canonical
 *         check, 3 Ed25519 verifications) and the mix-and-match check;
 *   warm  the root already parsed and trusted: the envelopes and the
 *         manifest only;
 *   ed25519  one bare EVP_DigestVerify of 64 bytes, the reference: the
 *         ratios say how many raw verifications each path costs.
 *
 * usage: trust [--rounds N] [--iterations N]
 */
#include <pkgstore.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEYS 3

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "bench/trust: %s: %s (%s)\n", what, pkgstore_strerror(rc),
                pkgstore_error_detail());
        exit(1);
    }
}

static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static char *root_text, *manifest_text, *envelope_text[KEYS];
static size_t root_len, manifest_len, envelope_len[KEYS];
static pkgstore_trust_root *warm_root;
static EVP_PKEY *raw_key;
static unsigned char raw_sig[64], raw_msg[64];

static void verify_offer(const pkgstore_trust_root *trusted_root)
{
    pkgstore_trust_root *root = NULL;
    pkgstore_trust_envelope *envs[KEYS];
    pkgstore_manifest *m = NULL;
    if (!trusted_root) {
        check(pkgstore_trust_root_parse(&root, root_text, root_len), "root parse");
        check(pkgstore_trust_root_verify(root, NULL), "root verify");
        trusted_root = root;
    }
    for (int i = 0; i < KEYS; i++)
        check(pkgstore_trust_envelope_parse(&envs[i], envelope_text[i], envelope_len[i]),
              "envelope parse");
    check(pkgstore_trust_manifest_verify(&m, NULL, trusted_root, manifest_text, manifest_len, envs,
                                         KEYS),
          "manifest verify");
    check(pkgstore_trust_manifest_match(m, "otelcol-contrib", "0.98.0", PKGSTORE_TYPE_PRIMARY,
                                        "linux/arm64"),
          "match");
    pkgstore_manifest_free(m);
    for (int i = 0; i < KEYS; i++)
        pkgstore_trust_envelope_free(envs[i]);
    pkgstore_trust_root_free(root);
}

static void bare_verify(void)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, raw_key) != 1 ||
        EVP_DigestVerify(ctx, raw_sig, 64, raw_msg, sizeof(raw_msg)) != 1) {
        fprintf(stderr, "bench/trust: bare verify failed\n");
        exit(1);
    }
    EVP_MD_CTX_free(ctx);
}

static void setup(void)
{
    pkgstore_trust_key *keys[KEYS];
    pkgstore_trust_root *root = NULL;
    pkgstore_manifest *m = NULL;
    static const char *const platforms[] = {"linux/amd64",   "linux/arm64",  "linux/arm/v7",
                                            "linux/ppc64le", "darwin/arm64", "windows/amd64"};
    check(pkgstore_trust_root_new(&root, 1), "root");
    for (int i = 0; i < KEYS; i++) {
        check(pkgstore_trust_key_generate(&keys[i]), "generate");
        check(pkgstore_trust_root_add_key(root, keys[i], "release key"), "add key");
    }
    check(pkgstore_trust_root_set_threshold(root, 2), "threshold");
    check(pkgstore_trust_root_sign(root, keys[0]), "sign root");
    check(pkgstore_trust_root_sign(root, keys[1]), "sign root");
    check(pkgstore_trust_root_serialize(&root_text, &root_len, root), "serialize root");
    check(pkgstore_trust_root_parse(&warm_root, root_text, root_len), "parse root");

    check(pkgstore_manifest_new(&m, "otelcol-contrib", "0.98.0", PKGSTORE_TYPE_PRIMARY),
          "manifest");
    for (size_t i = 0; i < sizeof(platforms) / sizeof(platforms[0]); i++) {
        pkgstore_artifact a;
        memset(&a, 0, sizeof(a));
        snprintf(a.platform, sizeof(a.platform), "%s", platforms[i]);
        memset(a.digest.bytes, (int)i + 1, sizeof(a.digest.bytes));
        a.size = 120000000 + i;
        strcpy(a.format, "tar+gzip");
        strcpy(a.entrypoint, "otelcol-contrib");
        check(pkgstore_manifest_add_artifact(m, &a) < 0 ? -1 : 0, "artifact");
    }
    check(pkgstore_manifest_annotation_set(
              m, "org.opencontainers.image.source",
              "https://github.com/open-telemetry/opentelemetry-collector-releases"),
          "annotation");
    check(pkgstore_manifest_annotation_set(m, "org.opencontainers.image.revision",
                                           "4f1c7a9be0e54d3c9c8f0b1e2d3c4b5a69788796"),
          "annotation");
    check(pkgstore_manifest_serialize(&manifest_text, &manifest_len, m, 0), "serialize");
    for (int i = 0; i < KEYS; i++)
        check(pkgstore_trust_manifest_sign(&envelope_text[i], &envelope_len[i], keys[i], m),
              "sign manifest");

    raw_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t sig_len = sizeof(raw_sig);
    if (!raw_key || EVP_DigestSignInit(ctx, NULL, NULL, NULL, raw_key) != 1 ||
        EVP_DigestSign(ctx, raw_sig, &sig_len, raw_msg, sizeof(raw_msg)) != 1) {
        fprintf(stderr, "bench/trust: reference key\n");
        exit(1);
    }
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < KEYS; i++)
        pkgstore_trust_key_free(keys[i]);
    pkgstore_trust_root_free(root);
    pkgstore_manifest_free(m);
}

/* Median microseconds per call of fn over rounds of iterations. */
static double time_us(void (*fn)(void), int rounds, int iterations)
{
    double *samples = calloc((size_t)rounds, sizeof(double));
    for (int r = 0; r < rounds; r++) {
        double start = cpu_now();
        for (int i = 0; i < iterations; i++)
            fn();
        samples[r] = (cpu_now() - start) * 1e6 / iterations;
    }
    qsort(samples, (size_t)rounds, sizeof(double), compare);
    double median = samples[rounds / 2];
    free(samples);
    return median;
}

static void cold(void)
{
    verify_offer(NULL);
}

static void warm(void)
{
    verify_offer(warm_root);
}

int main(int argc, char **argv)
{
    int rounds = 9, iterations = 200;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc)
            iterations = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: trust [--rounds N] [--iterations N]\n");
            return 2;
        }
    }
    if (rounds < 1 || iterations < 1) {
        fprintf(stderr, "bench/trust: --rounds and --iterations must be positive\n");
        return 2;
    }
    setup();
    double bare = time_us(bare_verify, rounds, iterations);
    double warm_us = time_us(warm, rounds, iterations);
    double cold_us = time_us(cold, rounds, iterations);
    printf("manifest %zu bytes, root %zu bytes, %d envelopes, threshold 2 of %d\n", manifest_len,
           root_len, KEYS, KEYS);
    printf("ed25519 verify (reference)  %8.1f us\n", bare);
    printf("offer, root already trusted %8.1f us  (%.1fx one verify)\n", warm_us, warm_us / bare);
    printf("offer, root from bytes      %8.1f us  (%.1fx one verify)\n", cold_us, cold_us / bare);
    printf("target: under 1000 us: %s\n", cold_us < 1000.0 ? "met" : "MISSED");
    pkgstore_trust_root_free(warm_root);
    EVP_PKEY_free(raw_key);
    return cold_us < 1000.0 ? 0 : 1;
}
