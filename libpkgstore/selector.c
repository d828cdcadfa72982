/*
 * Label selectors: parse, canonical form, match; and label validation.
 *
 * The grammar (docs/policies.md) is a comma-separated AND of requirements:
 * "key=value", "key==value", "key!=value", "key in (a,b)",
 * "key notin (a,b)", "key" and "!key". Keys and values follow Kubernetes'
 * label syntax so that selectors written for Kubernetes read the same here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "pkgstore/common.h"
#include "pkgstore/policy.h"

enum req_op { OP_EXISTS, OP_NOT_EXISTS, OP_EQ, OP_NE, OP_IN, OP_NOTIN };

struct requirement {
    char *key;
    enum req_op op;
    char **values; /* sorted, unique; one for EQ/NE, none for EXISTS */
    size_t nvalues;
};

struct pkgstore_selector {
    struct requirement *reqs;
    size_t nreqs;
    char *canonical;
};

/* ---------------------------------------------------------------- labels */

static int is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_name_char(char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '-';
}

/* A label name or value of len bytes (len > 0): [A-Za-z0-9._-], alnum at
 * both ends. what names it in the detail. */
static int check_name(const char *str, size_t len, const char *what, size_t max)
{
    if (len > max)
        return ps_error_set(PKGSTORE_EINVALID, "%s: longer than %zu characters", what, max);
    for (size_t i = 0; i < len; i++) {
        if (!is_name_char(str[i]))
            return ps_error_set(PKGSTORE_EINVALID, "%s: position %zu: invalid character 0x%02x",
                                what, i + 1, (unsigned char)str[i]);
    }
    if (!is_alnum(str[0]) || !is_alnum(str[len - 1]))
        return ps_error_set(PKGSTORE_EINVALID, "%s: must start and end with a letter or digit",
                            what);
    return 0;
}

static int check_dns_prefix(const char *str, size_t len)
{
    if (len == 0)
        return ps_error_set(PKGSTORE_EINVALID, "label key: empty prefix before '/'");
    if (len > 253)
        return ps_error_set(PKGSTORE_EINVALID, "label key: prefix longer than 253 characters");
    for (size_t i = 0; i < len; i++) {
        char c = str[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return ps_error_set(PKGSTORE_EINVALID,
                                "label key: position %zu: invalid character 0x%02x in prefix",
                                i + 1, (unsigned char)c);
    }
    if (!is_alnum(str[0]) || !is_alnum(str[len - 1]))
        return ps_error_set(PKGSTORE_EINVALID,
                            "label key: prefix must start and end with a letter or digit");
    return 0;
}

static int check_key(const char *key, size_t len)
{
    const char *slash = memchr(key, '/', len);
    int error;

    if (len == 0)
        return ps_error_set(PKGSTORE_EINVALID, "label key: empty");
    if (slash) {
        size_t plen = (size_t)(slash - key);
        if (memchr(slash + 1, '/', len - plen - 1))
            return ps_error_set(PKGSTORE_EINVALID, "label key: more than one '/'");
        if ((error = check_dns_prefix(key, plen)) < 0)
            return error;
        if (plen + 1 == len)
            return ps_error_set(PKGSTORE_EINVALID, "label key: empty name after '/'");
        return check_name(slash + 1, len - plen - 1, "label key", 63);
    }
    return check_name(key, len, "label key", 63);
}

int pkgstore_label_key_validate(const char *key)
{
    if (!key)
        return ps_error_set(PKGSTORE_EINVALID, "label key: NULL");
    return check_key(key, strlen(key));
}

int pkgstore_label_value_validate(const char *value)
{
    size_t len;

    if (!value)
        return ps_error_set(PKGSTORE_EINVALID, "label value: NULL");
    len = strlen(value);
    if (len == 0)
        return 0;
    return check_name(value, len, "label value", PKGSTORE_LABEL_VALUE_MAX);
}

/* ---------------------------------------------------------------- parsing */

struct parser {
    const char *text;
    size_t pos;
};

static int parse_error(const struct parser *p, size_t pos, const char *fmt, ...) PS_PRINTF(3, 4);
static int parse_error(const struct parser *p, size_t pos, const char *fmt, ...)
{
    char what[256];
    va_list ap;

    (void)p;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return ps_error_set(PKGSTORE_EINVALID, "selector: position %zu: %s", pos + 1, what);
}

static void skip_ws(struct parser *p)
{
    while (p->text[p->pos] == ' ' || p->text[p->pos] == '\t' || p->text[p->pos] == '\n' ||
           p->text[p->pos] == '\r')
        p->pos++;
}

static int is_key_char(char c)
{
    return is_name_char(c) || c == '/';
}

/* What is at pos, for error messages. */
static const char *describe(const struct parser *p, size_t pos, char *buf, size_t size)
{
    unsigned char c = (unsigned char)p->text[pos];
    if (c == '\0')
        return "end of selector";
    if (c >= 0x21 && c < 0x7f)
        snprintf(buf, size, "'%c'", c);
    else
        snprintf(buf, size, "byte 0x%02x", c);
    return buf;
}

static int scan_key(char **out, struct parser *p)
{
    size_t start = p->pos;
    char buf[16];
    int error;

    while (is_key_char(p->text[p->pos]))
        p->pos++;
    if (p->pos == start)
        return parse_error(p, start, "expected a label key, found %s",
                           describe(p, start, buf, sizeof(buf)));
    if ((error = check_key(p->text + start, p->pos - start)) < 0) {
        ps_error_prefix("selector: position %zu", start + 1);
        return error;
    }
    if (!(*out = strndup(p->text + start, p->pos - start)))
        return ps_error_set(PKGSTORE_ENOMEM, "selector: out of memory");
    return 0;
}

/* A value token; empty allowed only if allow_empty. */
static int scan_value(char **out, struct parser *p, int allow_empty)
{
    size_t start = p->pos;
    char buf[16];
    int error;

    while (is_name_char(p->text[p->pos]))
        p->pos++;
    if (p->pos == start) {
        if (!allow_empty || (p->text[p->pos] != '\0' && p->text[p->pos] != ',' &&
                             p->text[p->pos] != ' ' && p->text[p->pos] != '\t'))
            return parse_error(p, start, "expected a label value, found %s",
                               describe(p, start, buf, sizeof(buf)));
    } else if ((error = check_name(p->text + start, p->pos - start, "label value",
                                   PKGSTORE_LABEL_VALUE_MAX)) < 0) {
        ps_error_prefix("selector: position %zu", start + 1);
        return error;
    }
    if (!(*out = strndup(p->text + start, p->pos - start)))
        return ps_error_set(PKGSTORE_ENOMEM, "selector: out of memory");
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void requirement_clear(struct requirement *req)
{
    free(req->key);
    for (size_t i = 0; i < req->nvalues; i++)
        free(req->values[i]);
    free(req->values);
    memset(req, 0, sizeof(*req));
}

static int push_value(struct requirement *req, char *value)
{
    char **grown = realloc(req->values, (req->nvalues + 1) * sizeof(*grown));
    if (!grown) {
        free(value);
        return ps_error_set(PKGSTORE_ENOMEM, "selector: out of memory");
    }
    req->values = grown;
    req->values[req->nvalues++] = value;
    return 0;
}

/* "(a, b, c)": sorted and deduplicated into req. */
static int scan_set(struct requirement *req, struct parser *p)
{
    char buf[16];
    char *value = NULL;
    int error;

    if (p->text[p->pos] != '(')
        return parse_error(p, p->pos, "expected '(' after '%s', found %s",
                           req->op == OP_IN ? "in" : "notin",
                           describe(p, p->pos, buf, sizeof(buf)));
    p->pos++;
    for (;;) {
        skip_ws(p);
        if ((error = scan_value(&value, p, 0)) < 0)
            return error;
        if ((error = push_value(req, value)) < 0)
            return error;
        value = NULL;
        skip_ws(p);
        if (p->text[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->text[p->pos] == ')') {
            p->pos++;
            break;
        }
        return parse_error(p, p->pos, "expected ',' or ')' in a set, found %s",
                           describe(p, p->pos, buf, sizeof(buf)));
    }
    qsort(req->values, req->nvalues, sizeof(*req->values), cmp_str);
    size_t kept = 0;
    for (size_t i = 0; i < req->nvalues; i++) {
        if (kept > 0 && strcmp(req->values[kept - 1], req->values[i]) == 0)
            free(req->values[i]);
        else
            req->values[kept++] = req->values[i];
    }
    req->nvalues = kept;
    return 0;
}

/* A word operator ("in", "notin") at pos, followed by whitespace or '('. */
static int at_word(const struct parser *p, const char *word)
{
    size_t len = strlen(word);
    if (strncmp(p->text + p->pos, word, len) != 0)
        return 0;
    char next = p->text[p->pos + len];
    return next == '(' || next == ' ' || next == '\t' || next == '\n' || next == '\r';
}

static int parse_requirement(struct requirement *req, struct parser *p)
{
    char buf[16];
    int error;

    memset(req, 0, sizeof(*req));
    if (p->text[p->pos] == '!') {
        p->pos++;
        skip_ws(p);
        req->op = OP_NOT_EXISTS;
        return scan_key(&req->key, p);
    }
    if ((error = scan_key(&req->key, p)) < 0)
        return error;
    skip_ws(p);
    const char *rest = p->text + p->pos;
    if (rest[0] == '\0' || rest[0] == ',') {
        req->op = OP_EXISTS;
        return 0;
    }
    if (rest[0] == '=' || (rest[0] == '!' && rest[1] == '=')) {
        char *value = NULL;
        req->op = rest[0] == '=' ? OP_EQ : OP_NE;
        p->pos += (rest[0] == '=' && rest[1] == '=') || rest[0] == '!' ? 2 : 1;
        skip_ws(p);
        if ((error = scan_value(&value, p, 1)) < 0)
            return error;
        return push_value(req, value);
    }
    if (at_word(p, "in") || at_word(p, "notin")) {
        req->op = rest[0] == 'i' ? OP_IN : OP_NOTIN;
        p->pos += req->op == OP_IN ? 2 : 5;
        skip_ws(p);
        return scan_set(req, p);
    }
    return parse_error(p, p->pos, "expected '=', '!=', 'in', 'notin', ',' or the end, found %s",
                       describe(p, p->pos, buf, sizeof(buf)));
}

static int cmp_requirement(const void *a, const void *b)
{
    const struct requirement *ra = a, *rb = b;
    int c = strcmp(ra->key, rb->key);
    if (c != 0)
        return c;
    if (ra->op != rb->op)
        return (int)ra->op - (int)rb->op;
    for (size_t i = 0; i < ra->nvalues && i < rb->nvalues; i++) {
        if ((c = strcmp(ra->values[i], rb->values[i])) != 0)
            return c;
    }
    return ra->nvalues < rb->nvalues ? -1 : ra->nvalues > rb->nvalues ? 1 : 0;
}

/* Append to a growing buffer (sized generously by the caller). */
static void append(char *buf, size_t *len, const char *str)
{
    size_t n = strlen(str);
    memcpy(buf + *len, str, n);
    *len += n;
    buf[*len] = '\0';
}

static int build_canonical(pkgstore_selector *sel)
{
    size_t cap = 1, len = 0;
    for (size_t i = 0; i < sel->nreqs; i++) {
        cap += strlen(sel->reqs[i].key) + 16;
        for (size_t j = 0; j < sel->reqs[i].nvalues; j++)
            cap += strlen(sel->reqs[i].values[j]) + 1;
    }
    if (!(sel->canonical = malloc(cap)))
        return ps_error_set(PKGSTORE_ENOMEM, "selector: out of memory");
    sel->canonical[0] = '\0';
    for (size_t i = 0; i < sel->nreqs; i++) {
        const struct requirement *req = &sel->reqs[i];
        if (i > 0)
            append(sel->canonical, &len, ",");
        if (req->op == OP_NOT_EXISTS)
            append(sel->canonical, &len, "!");
        append(sel->canonical, &len, req->key);
        switch (req->op) {
        case OP_EXISTS:
        case OP_NOT_EXISTS:
            break;
        case OP_EQ:
        case OP_NE:
            append(sel->canonical, &len, req->op == OP_EQ ? "=" : "!=");
            append(sel->canonical, &len, req->values[0]);
            break;
        case OP_IN:
        case OP_NOTIN:
            append(sel->canonical, &len, req->op == OP_IN ? " in (" : " notin (");
            for (size_t j = 0; j < req->nvalues; j++) {
                if (j > 0)
                    append(sel->canonical, &len, ",");
                append(sel->canonical, &len, req->values[j]);
            }
            append(sel->canonical, &len, ")");
            break;
        }
    }
    return 0;
}

int pkgstore_selector_parse(pkgstore_selector **out, const char *text)
{
    struct parser parser = {text, 0};
    struct requirement req;
    pkgstore_selector *sel = NULL;
    char buf[16];
    int error = 0;

    if (!out)
        return ps_error_set(PKGSTORE_EINVALID, "selector: NULL output");
    *out = NULL;
    if (!text)
        return ps_error_set(PKGSTORE_EINVALID, "selector: NULL");
    if (strlen(text) > PKGSTORE_SELECTOR_MAX)
        return ps_error_set(PKGSTORE_ELIMIT, "selector: longer than %d bytes",
                            PKGSTORE_SELECTOR_MAX);
    if (!(sel = calloc(1, sizeof(*sel))))
        return ps_error_set(PKGSTORE_ENOMEM, "selector: out of memory");

    skip_ws(&parser);
    while (text[parser.pos] != '\0') {
        if ((error = parse_requirement(&req, &parser)) < 0) {
            requirement_clear(&req);
            goto out;
        }
        struct requirement *grown = realloc(sel->reqs, (sel->nreqs + 1) * sizeof(*grown));
        if (!grown) {
            requirement_clear(&req);
            error = ps_error_set(PKGSTORE_ENOMEM, "selector: out of memory");
            goto out;
        }
        sel->reqs = grown;
        sel->reqs[sel->nreqs++] = req; /* now owned by sel */
        skip_ws(&parser);
        if (text[parser.pos] == ',') {
            parser.pos++;
            skip_ws(&parser);
            if (text[parser.pos] == '\0' || text[parser.pos] == ',') {
                error = parse_error(&parser, parser.pos, "expected a requirement, found %s",
                                    describe(&parser, parser.pos, buf, sizeof(buf)));
                goto out;
            }
        } else if (text[parser.pos] != '\0') {
            error = parse_error(&parser, parser.pos, "expected ',' or the end, found %s",
                                describe(&parser, parser.pos, buf, sizeof(buf)));
            goto out;
        }
    }

    if (sel->nreqs > 1) {
        qsort(sel->reqs, sel->nreqs, sizeof(*sel->reqs), cmp_requirement);
        size_t kept = 1;
        for (size_t i = 1; i < sel->nreqs; i++) {
            if (cmp_requirement(&sel->reqs[kept - 1], &sel->reqs[i]) == 0)
                requirement_clear(&sel->reqs[i]);
            else
                sel->reqs[kept++] = sel->reqs[i];
        }
        sel->nreqs = kept;
    }
    if ((error = build_canonical(sel)) < 0)
        goto out;
    *out = sel;
    sel = NULL; /* now owned by the caller */
out:
    pkgstore_selector_free(sel);
    return error;
}

void pkgstore_selector_free(pkgstore_selector *selector)
{
    if (!selector)
        return;
    for (size_t i = 0; i < selector->nreqs; i++)
        requirement_clear(&selector->reqs[i]);
    free(selector->reqs);
    free(selector->canonical);
    free(selector);
}

const char *pkgstore_selector_string(const pkgstore_selector *selector)
{
    return selector && selector->canonical ? selector->canonical : "";
}

static const char *label_lookup(const pkgstore_label *labels, size_t count, const char *key)
{
    for (size_t i = 0; i < count; i++) {
        if (labels[i].key && strcmp(labels[i].key, key) == 0)
            return labels[i].value ? labels[i].value : "";
    }
    return NULL;
}

static int value_in(const struct requirement *req, const char *value)
{
    return bsearch(&value, req->values, req->nvalues, sizeof(*req->values), cmp_str) != NULL;
}

int pkgstore_selector_matches(const pkgstore_selector *selector, const pkgstore_label *labels,
                              size_t count)
{
    if (!selector)
        return 0;
    for (size_t i = 0; i < selector->nreqs; i++) {
        const struct requirement *req = &selector->reqs[i];
        const char *value = label_lookup(labels, count, req->key);
        int ok = 0;
        switch (req->op) {
        case OP_EXISTS:
            ok = value != NULL;
            break;
        case OP_NOT_EXISTS:
            ok = value == NULL;
            break;
        case OP_EQ:
            ok = value != NULL && strcmp(value, req->values[0]) == 0;
            break;
        case OP_NE:
            ok = value == NULL || strcmp(value, req->values[0]) != 0;
            break;
        case OP_IN:
            ok = value != NULL && value_in(req, value);
            break;
        case OP_NOTIN:
            ok = value == NULL || !value_in(req, value);
            break;
        }
        if (!ok)
            return 0;
    }
    return 1;
}
