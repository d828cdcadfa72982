/*
 * Rollout strategies: amounts ("3", "5%"), the validation of a strategy,
 * the batch arithmetic and the rank of a node in a policy's rollout order.
 * Pure functions: the fleet that drives a rollout keeps its state.
 *
 * Percentages are kept in hundredths of a percent, so that "0.5%" of a
 * large fleet means what it says and the arithmetic stays in integers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "policy.h"

int pkgstore_rollout_amount_parse(pkgstore_rollout_amount *out, const char *text)
{
    pkgstore_rollout_amount amount = {0, 0};
    const char *p = text;
    uint64_t whole = 0;
    unsigned int decimals = 0, fraction = 0;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "amount: NULL output");
    memset(out, 0, sizeof(*out));
    if (!text || !*text)
        return ps_error_set(PKGSTORE_EINVALID, "amount: empty (give a count such as 3 or a "
                                               "percentage such as 5%%)");
    if (*p < '0' || *p > '9')
        goto bad;
    while (*p >= '0' && *p <= '9') {
        whole = whole * 10 + (uint64_t)(*p - '0');
        if (whole > PKGSTORE_ROLLOUT_COUNT_MAX)
            return ps_error_set(PKGSTORE_EINVALID, "amount '%.32s': more than %u", text,
                                PKGSTORE_ROLLOUT_COUNT_MAX);
        p++;
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            goto bad;
        while (*p >= '0' && *p <= '9') {
            if (++decimals > 2)
                return ps_error_set(PKGSTORE_EINVALID,
                                    "amount '%.32s': at most two decimals in a percentage", text);
            fraction = fraction * 10 + (unsigned int)(*p - '0');
            p++;
        }
        if (*p != '%')
            return ps_error_set(PKGSTORE_EINVALID,
                                "amount '%.32s': a count of nodes is a whole number", text);
    }
    if (*p == '%') {
        if (p[1] != '\0')
            goto bad;
        if (decimals == 1)
            fraction *= 10;
        uint64_t hundredths = whole * 100 + fraction;
        if (hundredths > 10000)
            return ps_error_set(PKGSTORE_EINVALID, "amount '%.32s': more than 100%%", text);
        amount.value = (uint32_t)hundredths;
        amount.percent = 1;
    } else if (*p == '\0') {
        amount.value = (uint32_t)whole;
    } else {
        goto bad;
    }
    *out = amount;
    return 0;
bad:
    return ps_error_set(PKGSTORE_EINVALID,
                        "amount '%.32s': not a count (such as 3) or a percentage (such as 5%% "
                        "or 0.5%%)",
                        text);
}

void pkgstore_rollout_amount_format(char out[PKGSTORE_ROLLOUT_AMOUNT_STR_SIZE],
                                    const pkgstore_rollout_amount *amount)
{
    if (!amount) {
        snprintf(out, PKGSTORE_ROLLOUT_AMOUNT_STR_SIZE, "0");
        return;
    }
    if (!amount->percent) {
        snprintf(out, PKGSTORE_ROLLOUT_AMOUNT_STR_SIZE, "%u", (unsigned int)amount->value);
        return;
    }
    unsigned int whole = amount->value / 100, fraction = amount->value % 100;
    if (fraction == 0)
        snprintf(out, PKGSTORE_ROLLOUT_AMOUNT_STR_SIZE, "%u%%", whole);
    else if (fraction % 10 == 0)
        snprintf(out, PKGSTORE_ROLLOUT_AMOUNT_STR_SIZE, "%u.%u%%", whole, fraction / 10);
    else
        snprintf(out, PKGSTORE_ROLLOUT_AMOUNT_STR_SIZE, "%u.%02u%%", whole, fraction);
}

static int amount_check(const pkgstore_rollout_amount *amount, const char *field, int allow_zero)
{
    if (amount->percent ? amount->value > 10000 : amount->value > PKGSTORE_ROLLOUT_COUNT_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "%s: out of range", field);
    if (!allow_zero && amount->value == 0)
        return ps_error_set(PKGSTORE_EINVALID, "%s: a batch must admit more than 0 nodes", field);
    return 0;
}

int pkgstore_rollout_strategy_validate(const pkgstore_rollout_strategy *s)
{
    char field[32];
    int error;
    uint32_t last_count = 0, last_percent = 0;

    if (!s)
        return ps_error_set(PKGSTORE_EINVALID, "strategy: NULL");
    if (s->version != PKGSTORE_ROLLOUT_STRATEGY_VERSION)
        return ps_error_set(PKGSTORE_EINVALID, "strategy: version %u is not %d", s->version,
                            PKGSTORE_ROLLOUT_STRATEGY_VERSION);
    if (s->nbatches > PKGSTORE_ROLLOUT_BATCHES_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "batches: %zu batches, at most %d", s->nbatches,
                            PKGSTORE_ROLLOUT_BATCHES_MAX);
    for (size_t i = 0; i < s->nbatches; i++) {
        const pkgstore_rollout_amount *b = &s->batches[i];
        char text[PKGSTORE_ROLLOUT_AMOUNT_STR_SIZE];
        snprintf(field, sizeof(field), "batches[%zu]", i);
        if ((error = amount_check(b, field, 0)) < 0)
            return error;
        pkgstore_rollout_amount_format(text, b);
        /* batches are cumulative: each admits more than the one before
         * of its kind (counts and percentages are compared apart) */
        uint32_t *last = b->percent ? &last_percent : &last_count;
        if (b->value <= *last)
            return ps_error_set(PKGSTORE_EINVALID,
                                "%s: %s is not more than an earlier batch (batches are "
                                "cumulative sizes, e.g. [1, \"5%%\", \"25%%\", \"100%%\"])",
                                field, text);
        *last = b->value;
        if (i + 1 == s->nbatches && !(b->percent && b->value == 10000))
            return ps_error_set(PKGSTORE_EINVALID,
                                "%s: the last batch must be \"100%%\" (every node), not %s", field,
                                text);
    }
    if (s->soak_s > PKGSTORE_ROLLOUT_SECONDS_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "soak_s: %u is more than %u", s->soak_s,
                            PKGSTORE_ROLLOUT_SECONDS_MAX);
    if (s->deadline_s > PKGSTORE_ROLLOUT_SECONDS_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "deadline_s: %u is more than %u", s->deadline_s,
                            PKGSTORE_ROLLOUT_SECONDS_MAX);
    if (s->max_parallel > PKGSTORE_ROLLOUT_COUNT_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "max_parallel: %u is more than %u", s->max_parallel,
                            PKGSTORE_ROLLOUT_COUNT_MAX);
    if (s->has_max_failures && (error = amount_check(&s->max_failures, "max_failures", 1)) < 0)
        return error;
    return 0;
}

size_t pkgstore_rollout_batch_count(const pkgstore_rollout_strategy *s)
{
    return s && s->nbatches ? s->nbatches : 1;
}

static uint64_t amount_of(const pkgstore_rollout_amount *a, uint64_t total)
{
    if (!a->percent)
        return a->value < total ? a->value : total;
    /* ceil(total * value / 10000) without overflow for any uint64 total */
    uint64_t q = total / 10000, r = total % 10000;
    uint64_t size = q * a->value + (r * a->value + 9999) / 10000;
    return size < total ? size : total;
}

uint64_t pkgstore_rollout_batch_size(const pkgstore_rollout_strategy *s, size_t k, uint64_t total)
{
    size_t count = pkgstore_rollout_batch_count(s);
    if (!s || k + 1 >= count)
        return total;
    uint64_t size = 0;
    for (size_t j = 0; j <= k; j++) {
        uint64_t here = amount_of(&s->batches[j], total);
        if (here > size)
            size = here;
    }
    return size;
}

uint64_t pkgstore_rollout_failures_allowed(const pkgstore_rollout_strategy *s, uint64_t batch_size)
{
    if (!s || !s->has_max_failures)
        return UINT64_MAX;
    if (!s->max_failures.percent)
        return s->max_failures.value;
    uint64_t q = batch_size / 10000, r = batch_size % 10000;
    return q * s->max_failures.value + r * s->max_failures.value / 10000;
}

uint64_t pkgstore_rollout_rank(const char *policy, const char *node_id)
{
    uint64_t hash = 14695981039346656037ULL;
    const unsigned char *p;
    for (p = (const unsigned char *)(policy ? policy : ""); *p; p++)
        hash = (hash ^ *p) * 1099511628211ULL;
    hash = (hash ^ 0xffu) * 1099511628211ULL; /* a separator no name holds */
    for (p = (const unsigned char *)(node_id ? node_id : ""); *p; p++)
        hash = (hash ^ *p) * 1099511628211ULL;
    /* splitmix64's finalizer: FNV's low bits mix poorly on their own */
    hash ^= hash >> 30;
    hash *= 0xbf58476d1ce4e5b9ULL;
    hash ^= hash >> 27;
    hash *= 0x94d049bb133111ebULL;
    hash ^= hash >> 31;
    return hash;
}

int pkgstore_policy_set_strategy(pkgstore_policy *policy, const pkgstore_rollout_strategy *strategy)
{
    static const pkgstore_rollout_strategy defaults = PKGSTORE_ROLLOUT_STRATEGY_INIT;
    int error;
    if (!policy || policy->stored)
        return ps_error_set(PKGSTORE_EINVALID, "policy_set_strategy: %s",
                            policy ? "the policy is read-only" : "NULL policy");
    if (!strategy)
        strategy = &defaults;
    if ((error = pkgstore_rollout_strategy_validate(strategy)) < 0)
        return error;
    policy->strategy = *strategy;
    if (ps_policy_strategy_is_default(&policy->strategy) ||
        (policy->strategy.nbatches == 1 && policy->strategy.batches[0].percent))
        policy->strategy.nbatches = 0; /* one batch of 100%: the default spelled out */
    return 0;
}

const pkgstore_rollout_strategy *pkgstore_policy_strategy(const pkgstore_policy *policy)
{
    static const pkgstore_rollout_strategy defaults = PKGSTORE_ROLLOUT_STRATEGY_INIT;
    return policy ? &policy->strategy : &defaults;
}

/* ---------------------------------------------------------------- records */

static json_t *amount_json(const pkgstore_rollout_amount *a)
{
    char text[PKGSTORE_ROLLOUT_AMOUNT_STR_SIZE];
    if (!a->percent)
        return json_integer((json_int_t)a->value);
    pkgstore_rollout_amount_format(text, a);
    return json_string(text);
}

json_t *ps_policy_strategy_to_json(const pkgstore_rollout_strategy *s)
{
    json_t *obj = json_object(), *batches = json_array();
    int failed = !obj || !batches;
    size_t n = s->nbatches;
    pkgstore_rollout_amount all = {10000, 1};
    for (size_t i = 0; !failed && i < (n ? n : 1); i++)
        failed |= json_array_append_new(batches, amount_json(n ? &s->batches[i] : &all)) < 0;
    failed |= json_object_set_new(obj, "batches", batches) < 0;
    batches = NULL;
    failed |= json_object_set_new(obj, "soak_s", json_integer(s->soak_s)) < 0;
    failed |=
        json_object_set_new(obj, "max_failures",
                            s->has_max_failures ? amount_json(&s->max_failures) : json_null()) < 0;
    failed |= json_object_set_new(obj, "deadline_s", json_integer(s->deadline_s)) < 0;
    failed |= json_object_set_new(obj, "max_parallel", json_integer(s->max_parallel)) < 0;
    if (failed) {
        json_decref(obj);
        json_decref(batches);
        return NULL;
    }
    return obj;
}

int ps_policy_amount_from_json(pkgstore_rollout_amount *out, json_t *value)
{
    if (json_is_integer(value)) {
        json_int_t n = json_integer_value(value);
        if (n < 0 || n > (json_int_t)PKGSTORE_ROLLOUT_COUNT_MAX)
            return ps_error_set(PKGSTORE_EINVALID, "%lld is outside 0..%u", (long long)n,
                                PKGSTORE_ROLLOUT_COUNT_MAX);
        out->value = (uint32_t)n;
        out->percent = 0;
        return 0;
    }
    if (json_is_string(value))
        return pkgstore_rollout_amount_parse(out, json_string_value(value));
    return ps_error_set(PKGSTORE_EINVALID, "not a count or a percentage string");
}

static int seconds_from_json(uint32_t *out, json_t *value, const char *field)
{
    if (!json_is_integer(value) || json_integer_value(value) < 0 ||
        json_integer_value(value) > (json_int_t)PKGSTORE_ROLLOUT_COUNT_MAX)
        return ps_error_set(PKGSTORE_EINVALID, "%s: not a non-negative integer", field);
    *out = (uint32_t)json_integer_value(value);
    return 0;
}

int ps_policy_strategy_from_json(pkgstore_rollout_strategy *out, json_t *obj)
{
    pkgstore_rollout_strategy s = PKGSTORE_ROLLOUT_STRATEGY_INIT;
    const char *key;
    json_t *value;
    int error = 0;

    if (!json_is_object(obj))
        return ps_error_set(PKGSTORE_EINVALID, "strategy: not an object");
    json_object_foreach(obj, key, value)
    {
        if (strcmp(key, "batches") == 0) {
            size_t n = json_array_size(value);
            if (!json_is_array(value) || n == 0 || n > PKGSTORE_ROLLOUT_BATCHES_MAX)
                return ps_error_set(PKGSTORE_EINVALID,
                                    "batches: not an array of 1 to %d counts or percentages",
                                    PKGSTORE_ROLLOUT_BATCHES_MAX);
            for (size_t i = 0; i < n; i++) {
                if ((error = ps_policy_amount_from_json(&s.batches[i], json_array_get(value, i))) <
                    0) {
                    ps_error_prefix("batches[%zu]", i);
                    return error;
                }
            }
            s.nbatches = n;
        } else if (strcmp(key, "soak_s") == 0) {
            error = seconds_from_json(&s.soak_s, value, key);
        } else if (strcmp(key, "deadline_s") == 0) {
            error = seconds_from_json(&s.deadline_s, value, key);
        } else if (strcmp(key, "max_parallel") == 0) {
            error = seconds_from_json(&s.max_parallel, value, key);
        } else if (strcmp(key, "max_failures") == 0) {
            if (!json_is_null(value)) {
                if ((error = ps_policy_amount_from_json(&s.max_failures, value)) < 0) {
                    ps_error_prefix("max_failures");
                    return error;
                }
                s.has_max_failures = 1;
            }
        } else {
            return ps_error_set(PKGSTORE_EINVALID, "strategy: %.64s: unknown field", key);
        }
        if (error < 0)
            return error;
    }
    /* one batch of 100% is the default spelled out */
    if (s.nbatches == 1 && s.batches[0].percent && s.batches[0].value == 10000)
        s.nbatches = 0;
    if ((error = pkgstore_rollout_strategy_validate(&s)) < 0)
        return error;
    *out = s;
    return 0;
}

int ps_policy_strategy_is_default(const pkgstore_rollout_strategy *s)
{
    static const pkgstore_rollout_strategy defaults = PKGSTORE_ROLLOUT_STRATEGY_INIT;
    return s->nbatches == 0 && s->soak_s == 0 && !s->has_max_failures && s->deadline_s == 0 &&
           s->max_parallel == 0 && defaults.nbatches == 0;
}

int pkgstore_rollout_strategy_parse(pkgstore_rollout_strategy *out, const char *json, size_t len)
{
    static const pkgstore_rollout_strategy defaults = PKGSTORE_ROLLOUT_STRATEGY_INIT;
    json_error_t jerr;
    json_t *root;
    int error;
    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "strategy: NULL output");
    *out = defaults;
    if (!json)
        return ps_error_set(PKGSTORE_EINVALID, "strategy: NULL text");
    if (!(root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr)))
        return ps_error_set(PKGSTORE_EINVALID, "strategy: line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
    error = ps_policy_strategy_from_json(out, root);
    json_decref(root);
    if (error < 0)
        *out = defaults;
    return error;
}

int pkgstore_rollout_strategy_format(char **out, const pkgstore_rollout_strategy *strategy)
{
    int error;
    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "strategy: NULL output");
    *out = NULL;
    if ((error = pkgstore_rollout_strategy_validate(strategy)) < 0)
        return error;
    json_t *obj = ps_policy_strategy_to_json(strategy);
    *out = obj ? json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(obj);
    if (!*out)
        return ps_error_set(PKGSTORE_ENOMEM, "strategy: out of memory");
    return 0;
}
