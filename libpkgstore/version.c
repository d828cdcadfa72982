/*
 * version: Semantic Versioning 2.0.0 values (parse, format, precedence) and
 * compiled constraints.
 *
 * A constraint compiles to alternatives ("||") of terms that must all hold.
 * Every comparator, range and wildcard desugars to one interval term
 * [lo, hi] with open/closed/absent ends, or, for "!=", a negated interval.
 * Matching is then a few pkgstore_version_compare() calls per term, with no
 * allocation. Synthesized upper bounds use the "-0" pre-release (the lowest
 * possible one), so "<2.0.0-0" excludes 2.0.0's pre-releases as well.
 */
#include "pkgstore/version.h"
#include "error.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ values */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ident_char(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

/* Describe the byte at str[pos] for an error message. */
static const char *describe_char(char buf[16], const char *str, size_t len, size_t pos)
{
    unsigned char c;
    if (pos >= len)
        return "end of input";
    c = (unsigned char)str[pos];
    if (c > 0x20 && c < 0x7f) {
        buf[0] = '\'';
        buf[1] = (char)c;
        buf[2] = '\'';
        buf[3] = '\0';
    } else if (c == ' ') {
        strcpy(buf, "a space");
    } else {
        static const char hex[] = "0123456789abcdef";
        strcpy(buf, "byte 0x");
        buf[7] = hex[c >> 4];
        buf[8] = hex[c & 0xf];
        buf[9] = '\0';
    }
    return buf;
}

/* Print str (at most 64 bytes around pos) with the byte at pos (or the end)
 * in brackets: ">=1.2 [<]<1.3". Non-printable bytes become '?'. */
static void excerpt(char *out, size_t out_size, const char *str, size_t len, size_t pos)
{
    size_t start = pos > 40 ? pos - 40 : 0;
    size_t end = len - pos > 24 ? pos + 24 : len;
    size_t o = 0;
    if (start > 0 && o + 3 < out_size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    for (size_t i = start; i <= end && o + 8 < out_size; i++) {
        if (i == pos)
            out[o++] = '[';
        if (i < end) {
            unsigned char c = (unsigned char)str[i];
            out[o++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
        }
        if (i == pos)
            out[o++] = ']';
    }
    if (end < len && o + 4 < out_size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static int syntax_error(const char *what, const char *str, size_t len, size_t pos,
                        const char *reason)
{
    char cbuf[16], ex[160];
    excerpt(ex, sizeof(ex), str, len, pos);
    return ps_error_set(PKGSTORE_EINVALID, "%s: %s at position %zu (%s) in \"%s\"", what, reason, pos,
                        describe_char(cbuf, str, len, pos), ex);
}

/* Parse a decimal number without leading zeros at str[*pos]. */
static int parse_number(uint64_t *out, const char *what, const char *str, size_t len,
                        size_t *pos, const char *field)
{
    size_t start = *pos;
    uint64_t value = 0;
    char reason[64];
    if (start >= len || !is_digit(str[start])) {
        snprintf(reason, sizeof(reason), "expected the %s number", field);
        return syntax_error(what, str, len, start, reason);
    }
    if (str[start] == '0' && start + 1 < len && is_digit(str[start + 1])) {
        snprintf(reason, sizeof(reason), "leading zero in the %s number", field);
        return syntax_error(what, str, len, start, reason);
    }
    while (*pos < len && is_digit(str[*pos])) {
        unsigned digit = (unsigned)(str[*pos] - '0');
        if (value > (UINT64_MAX - digit) / 10) {
            snprintf(reason, sizeof(reason), "the %s number is larger than 18446744073709551615",
                     field);
            return syntax_error(what, str, len, start, reason);
        }
        value = value * 10 + digit;
        (*pos)++;
    }
    *out = value;
    return 0;
}

/*
 * Parse dot-separated identifiers at str[*pos] up to the first byte that is
 * neither an identifier character nor a dot, into out (size max + 1).
 * Pre-release identifiers must not be numeric with a leading zero.
 */
static int parse_identifiers(char *out, size_t max, const char *what, const char *str, size_t len,
                             size_t *pos, bool prerelease)
{
    const char *field = prerelease ? "pre-release" : "build metadata";
    size_t start = *pos;
    char reason[96];
    for (;;) {
        size_t ident = *pos;
        bool numeric = true;
        while (*pos < len && is_ident_char(str[*pos])) {
            if (!is_digit(str[*pos]))
                numeric = false;
            (*pos)++;
        }
        if (*pos == ident) {
            snprintf(reason, sizeof(reason), "empty %s identifier", field);
            return syntax_error(what, str, len, *pos, reason);
        }
        if (prerelease && numeric && str[ident] == '0' && *pos - ident > 1) {
            snprintf(reason, sizeof(reason), "leading zero in a numeric %s identifier", field);
            return syntax_error(what, str, len, ident, reason);
        }
        if (*pos < len && str[*pos] == '.') {
            (*pos)++;
            continue;
        }
        break;
    }
    if (*pos - start > max) {
        return ps_error_set(PKGSTORE_EINVALID, "%s: %s longer than %zu characters", what, field,
                            max);
    }
    memcpy(out, str + start, *pos - start);
    out[*pos - start] = '\0';
    return 0;
}

/* Parse a complete version at str[*pos]; stops at the first byte that cannot
 * continue it (the caller decides whether trailing bytes are an error). */
static int parse_version_at(pkgstore_semver *out, const char *what, const char *str, size_t len,
                            size_t *pos)
{
    int error;
    if (*pos < len && (str[*pos] == 'v' || str[*pos] == 'V'))
        (*pos)++;
    if ((error = parse_number(&out->major, what, str, len, pos, "major")) < 0)
        return error;
    if (*pos >= len || str[*pos] != '.')
        return syntax_error(what, str, len, *pos, "expected '.' after the major number");
    (*pos)++;
    if ((error = parse_number(&out->minor, what, str, len, pos, "minor")) < 0)
        return error;
    if (*pos >= len || str[*pos] != '.')
        return syntax_error(what, str, len, *pos, "expected '.' after the minor number");
    (*pos)++;
    if ((error = parse_number(&out->patch, what, str, len, pos, "patch")) < 0)
        return error;
    if (*pos < len && str[*pos] == '-') {
        (*pos)++;
        if ((error = parse_identifiers(out->prerelease, PKGSTORE_SEMVER_PRERELEASE_MAX, what, str,
                                       len, pos, true)) < 0)
            return error;
    }
    if (*pos < len && str[*pos] == '+') {
        (*pos)++;
        if ((error = parse_identifiers(out->build, PKGSTORE_SEMVER_BUILD_MAX, what, str, len, pos,
                                       false)) < 0)
            return error;
    }
    return 0;
}

PKGSTORE_API int pkgstore_version_parse_n(pkgstore_semver *out, const char *str, size_t len)
{
    size_t pos = 0;
    int error;
    if (out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "version: NULL output");
    memset(out, 0, sizeof(*out));
    if (str == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "version: NULL input");
    if (len == 0)
        return ps_error_set(PKGSTORE_EINVALID, "version: empty string");
    if ((error = parse_version_at(out, "version", str, len, &pos)) < 0)
        goto fail;
    if (pos != len) {
        error = syntax_error("version", str, len, pos,
                             "expected '-', '+' or the end after the version");
        goto fail;
    }
    return 0;
fail:
    memset(out, 0, sizeof(*out));
    return error;
}

PKGSTORE_API int pkgstore_version_parse(pkgstore_semver *out, const char *str)
{
    if (str == NULL) {
        if (out != NULL)
            memset(out, 0, sizeof(*out));
        return ps_error_set(PKGSTORE_EINVALID, "version: NULL input");
    }
    return pkgstore_version_parse_n(out, str, strlen(str));
}

static size_t format_u64(char *out, uint64_t value)
{
    char tmp[24];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    for (i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

PKGSTORE_API size_t pkgstore_version_format(char out[PKGSTORE_SEMVER_STR_SIZE],
                                            const pkgstore_semver *version)
{
    size_t o = 0, n;
    o += format_u64(out + o, version->major);
    out[o++] = '.';
    o += format_u64(out + o, version->minor);
    out[o++] = '.';
    o += format_u64(out + o, version->patch);
    n = strnlen(version->prerelease, PKGSTORE_SEMVER_PRERELEASE_MAX);
    if (n > 0) {
        out[o++] = '-';
        memcpy(out + o, version->prerelease, n);
        o += n;
    }
    n = strnlen(version->build, PKGSTORE_SEMVER_BUILD_MAX);
    if (n > 0) {
        out[o++] = '+';
        memcpy(out + o, version->build, n);
        o += n;
    }
    out[o] = '\0';
    return o;
}

/* Compare dot-separated pre-release identifier lists per SemVer 11.4. */
static int compare_prerelease(const char *a, const char *b)
{
    for (;;) {
        size_t alen = strcspn(a, "."), blen = strcspn(b, ".");
        bool anum = true, bnum = true;
        int cmp;
        for (size_t i = 0; i < alen; i++)
            if (!is_digit(a[i])) {
                anum = false;
                break;
            }
        for (size_t i = 0; i < blen; i++)
            if (!is_digit(b[i])) {
                bnum = false;
                break;
            }
        if (anum && bnum) {
            /* No leading zeros: the longer number is the larger one. */
            if (alen != blen)
                return alen < blen ? -1 : 1;
            cmp = memcmp(a, b, alen);
        } else if (anum != bnum) {
            return anum ? -1 : 1;
        } else {
            cmp = memcmp(a, b, alen < blen ? alen : blen);
            if (cmp == 0 && alen != blen)
                cmp = alen < blen ? -1 : 1;
        }
        if (cmp != 0)
            return cmp < 0 ? -1 : 1;
        a += alen;
        b += blen;
        if (*a == '\0' || *b == '\0')
            return (*a == '\0') == (*b == '\0') ? 0 : (*a == '\0' ? -1 : 1);
        a++;
        b++;
    }
}

PKGSTORE_API int pkgstore_version_compare(const pkgstore_semver *a, const pkgstore_semver *b)
{
    if (a->major != b->major)
        return a->major < b->major ? -1 : 1;
    if (a->minor != b->minor)
        return a->minor < b->minor ? -1 : 1;
    if (a->patch != b->patch)
        return a->patch < b->patch ? -1 : 1;
    if (a->prerelease[0] == '\0' || b->prerelease[0] == '\0') {
        if (a->prerelease[0] == b->prerelease[0])
            return 0;
        return a->prerelease[0] == '\0' ? 1 : -1;
    }
    return compare_prerelease(a->prerelease, b->prerelease);
}

PKGSTORE_API int pkgstore_version_is_prerelease(const pkgstore_semver *version)
{
    return version != NULL && version->prerelease[0] != '\0';
}

/* ------------------------------------------------------------ constraints */

enum {
    TERM_LO = 1 << 0,      /* has a lower bound */
    TERM_LO_OPEN = 1 << 1, /* lower bound excluded (>) */
    TERM_HI = 1 << 2,      /* has an upper bound */
    TERM_HI_OPEN = 1 << 3, /* upper bound excluded (<) */
    TERM_NEGATE = 1 << 4,  /* the version must lie outside the interval */
    TERM_EMPTY = 1 << 5,   /* the interval is empty (">*", overflowed ">") */
    TERM_PRE = 1 << 6,     /* the comparator named a pre-release of pre_of */
};

typedef struct term {
    unsigned flags;
    pkgstore_semver lo;
    pkgstore_semver hi;
    uint64_t pre_major, pre_minor, pre_patch; /* with TERM_PRE */
} term;

struct pkgstore_version_constraint {
    size_t term_count;
    size_t alt_count;
    size_t *alt_end;   /* alt_end[i]: one past the last term of alternative i */
    term *terms;
    char *text;
};

typedef struct parser {
    const char *str;
    size_t len;
    size_t pos;
    term *terms;
    size_t term_count;
    size_t term_cap;
    size_t *alt_end;
    size_t alt_count;
    size_t alt_cap;
} parser;

/* A partial version: parts[] hold the numbers of the given parts; n counts
 * the numbers given before the first wildcard or the end (0..3). */
typedef struct partial {
    int n;
    pkgstore_semver v;
} partial;

static int cerror(parser *p, size_t pos, const char *reason)
{
    return syntax_error("constraint", p->str, p->len, pos, reason);
}

static bool is_wildcard(char c)
{
    return c == 'x' || c == 'X' || c == '*';
}

static int parse_partial(partial *out, parser *p)
{
    static const char *const names[3] = {"major", "minor", "patch"};
    uint64_t *fields[3];
    size_t start;
    int error;
    memset(out, 0, sizeof(*out));
    fields[0] = &out->v.major;
    fields[1] = &out->v.minor;
    fields[2] = &out->v.patch;
    if (p->pos < p->len && (p->str[p->pos] == 'v' || p->str[p->pos] == 'V'))
        p->pos++;
    start = p->pos;
    for (int i = 0; i < 3; i++) {
        if (i > 0) {
            if (p->pos >= p->len || p->str[p->pos] != '.')
                break;
            p->pos++;
        }
        if (p->pos < p->len && is_wildcard(p->str[p->pos])) {
            p->pos++;
            /* Everything after a wildcard must be a wildcard too. */
            while (p->pos < p->len && p->str[p->pos] == '.') {
                p->pos++;
                if (p->pos >= p->len || !is_wildcard(p->str[p->pos]))
                    return cerror(p, p->pos, "only wildcards may follow a wildcard");
                p->pos++;
            }
            return 0;
        }
        if (p->pos >= p->len || !is_digit(p->str[p->pos])) {
            char reason[64];
            snprintf(reason, sizeof(reason), "expected the %s number or a wildcard", names[i]);
            return cerror(p, p->pos, reason);
        }
        if ((error = parse_number(fields[i], "constraint", p->str, p->len, &p->pos, names[i])) < 0)
            return error;
        out->n = i + 1;
    }
    if (out->n == 3 && p->pos < p->len && (p->str[p->pos] == '-' || p->str[p->pos] == '+')) {
        if (p->str[p->pos] == '-') {
            p->pos++;
            if ((error = parse_identifiers(out->v.prerelease, PKGSTORE_SEMVER_PRERELEASE_MAX,
                                           "constraint", p->str, p->len, &p->pos, true)) < 0)
                return error;
        }
        if (p->pos < p->len && p->str[p->pos] == '+') {
            /* Build metadata is accepted and ignored, as in precedence. */
            p->pos++;
            if ((error = parse_identifiers(out->v.build, PKGSTORE_SEMVER_BUILD_MAX, "constraint",
                                           p->str, p->len, &p->pos, false)) < 0)
                return error;
            out->v.build[0] = '\0';
        }
    } else if (out->n > 0 && out->n < 3 && p->pos < p->len &&
               (p->str[p->pos] == '-' || p->str[p->pos] == '+')) {
        return cerror(p, p->pos, "a pre-release or build needs a full MAJOR.MINOR.PATCH");
    }
    (void)start;
    return 0;
}

/* v with the part at index `part` (0 major, 1 minor, 2 patch) incremented,
 * lower parts zeroed and pre-release "0": the lowest version above every
 * version that starts with v's first part+1 numbers. false on overflow. */
static bool bump(pkgstore_semver *out, const pkgstore_semver *v, int part)
{
    uint64_t fields[3] = {v->major, v->minor, v->patch};
    memset(out, 0, sizeof(*out));
    /* Carry into the next higher part when a part is already UINT64_MAX. */
    while (part >= 0 && fields[part] == UINT64_MAX)
        part--;
    if (part < 0)
        return false;
    fields[part]++;
    for (int i = part + 1; i < 3; i++)
        fields[i] = 0;
    out->major = fields[0];
    out->minor = fields[1];
    out->patch = fields[2];
    out->prerelease[0] = '0';
    out->prerelease[1] = '\0';
    return true;
}

static int add_term(parser *p, const term *t)
{
    if (p->term_count == PKGSTORE_VERSION_CONSTRAINT_MAX_TERMS)
        return ps_error_set(PKGSTORE_ELIMIT, "constraint: more than %d comparators",
                            PKGSTORE_VERSION_CONSTRAINT_MAX_TERMS);
    if (p->term_count == p->term_cap) {
        size_t cap = p->term_cap ? p->term_cap * 2 : 4;
        term *terms = realloc(p->terms, cap * sizeof(*terms));
        if (terms == NULL)
            return ps_error_set(PKGSTORE_ENOMEM, "constraint: out of memory");
        p->terms = terms;
        p->term_cap = cap;
    }
    p->terms[p->term_count++] = *t;
    return 0;
}

typedef enum op { OP_NONE, OP_EQ, OP_NE, OP_GT, OP_GE, OP_LT, OP_LE, OP_CARET, OP_TILDE } op;

static op parse_op(parser *p)
{
    const char *s = p->str + p->pos;
    size_t rest = p->len - p->pos;
    if (rest >= 2 && s[0] == '>' && s[1] == '=')
        return p->pos += 2, OP_GE;
    if (rest >= 2 && s[0] == '<' && s[1] == '=')
        return p->pos += 2, OP_LE;
    if (rest >= 2 && s[0] == '!' && s[1] == '=')
        return p->pos += 2, OP_NE;
    if (rest >= 1) {
        switch (s[0]) {
        case '>': return p->pos += 1, OP_GT;
        case '<': return p->pos += 1, OP_LT;
        case '=': return p->pos += 1, OP_EQ;
        case '^': return p->pos += 1, OP_CARET;
        case '~': return p->pos += 1, OP_TILDE;
        default: break;
        }
    }
    return OP_NONE;
}

/* Turn one comparator into a term (see the desugaring table in
 * docs/versions.md). */
static void desugar(term *t, op oper, const partial *pv)
{
    const pkgstore_semver *v = &pv->v;
    int n = pv->n;
    memset(t, 0, sizeof(*t));
    if (v->prerelease[0] != '\0') {
        t->flags |= TERM_PRE;
        t->pre_major = v->major;
        t->pre_minor = v->minor;
        t->pre_patch = v->patch;
    }
    if (n == 0) {
        /* "*": any version, or none for >, <, != */
        if (oper == OP_GT || oper == OP_LT || oper == OP_NE)
            t->flags |= TERM_EMPTY;
        return;
    }
    switch (oper) {
    case OP_NONE:
    case OP_EQ:
    case OP_NE:
        t->lo = *v;
        t->flags |= TERM_LO;
        if (n == 3) {
            t->hi = *v;
            t->flags |= TERM_HI;
        } else if (bump(&t->hi, v, n - 1)) {
            t->flags |= TERM_HI | TERM_HI_OPEN;
        }
        if (oper == OP_NE)
            t->flags |= TERM_NEGATE;
        return;
    case OP_GT:
        if (n == 3) {
            t->lo = *v;
            t->flags |= TERM_LO | TERM_LO_OPEN;
        } else if (bump(&t->lo, v, n - 1)) {
            t->flags |= TERM_LO;
        } else {
            t->flags |= TERM_EMPTY;
        }
        return;
    case OP_GE:
        t->lo = *v;
        t->flags |= TERM_LO;
        return;
    case OP_LT:
        t->hi = *v;
        t->flags |= TERM_HI | TERM_HI_OPEN;
        if (n < 3) {
            t->hi.prerelease[0] = '0';
            t->hi.prerelease[1] = '\0';
        }
        return;
    case OP_LE:
        if (n == 3) {
            t->hi = *v;
            t->flags |= TERM_HI;
        } else if (bump(&t->hi, v, n - 1)) {
            t->flags |= TERM_HI | TERM_HI_OPEN;
        }
        return;
    case OP_TILDE:
        /* ~1.2.3 and ~1.2: up to the next minor; ~1: up to the next major. */
        t->lo = *v;
        t->flags |= TERM_LO;
        if (bump(&t->hi, v, n >= 2 ? 1 : 0))
            t->flags |= TERM_HI | TERM_HI_OPEN;
        return;
    case OP_CARET: {
        /* Up to the next change of the left-most non-zero part that was given. */
        int part;
        t->lo = *v;
        t->flags |= TERM_LO;
        if (v->major != 0 || n == 1)
            part = 0;
        else if (v->minor != 0 || n == 2)
            part = 1;
        else
            part = 2;
        if (bump(&t->hi, v, part))
            t->flags |= TERM_HI | TERM_HI_OPEN;
        return;
    }
    }
}

static void skip_spaces(parser *p)
{
    while (p->pos < p->len && (p->str[p->pos] == ' ' || p->str[p->pos] == '\t'))
        p->pos++;
}

/*
 * After a plain version: " - " and a second version make a hyphen range,
 * "1.2.3 - 2.3.4" = >=1.2.3 <=2.3.4. A partial upper end covers all its
 * versions ("1 - 2.3" = >=1.0.0 <2.4.0-0); "*" at either end is unbounded.
 */
static int parse_hyphen_range(term *t, parser *p, const partial *low)
{
    size_t save = p->pos;
    partial high;
    int error;
    skip_spaces(p);
    if (p->pos == save || p->pos + 1 >= p->len || p->str[p->pos] != '-' ||
        (p->str[p->pos + 1] != ' ' && p->str[p->pos + 1] != '\t')) {
        p->pos = save;
        return 0;
    }
    p->pos++;
    skip_spaces(p);
    if ((error = parse_partial(&high, p)) < 0)
        return error;
    memset(t, 0, sizeof(*t));
    if (low->n > 0) {
        t->lo = low->v;
        t->flags |= TERM_LO;
    }
    if (high.n == 3) {
        t->hi = high.v;
        t->flags |= TERM_HI;
    } else if (high.n > 0 && bump(&t->hi, &high.v, high.n - 1)) {
        t->flags |= TERM_HI | TERM_HI_OPEN;
    }
    if (low->v.prerelease[0] != '\0') {
        t->flags |= TERM_PRE;
        t->pre_major = low->v.major;
        t->pre_minor = low->v.minor;
        t->pre_patch = low->v.patch;
    }
    /* Only one TERM_PRE tuple fits a term: a pre-release on the upper end
     * gets its own always-true term carrying the tuple. */
    if (high.v.prerelease[0] != '\0') {
        term extra;
        memset(&extra, 0, sizeof(extra));
        extra.flags = TERM_PRE;
        extra.pre_major = high.v.major;
        extra.pre_minor = high.v.minor;
        extra.pre_patch = high.v.patch;
        if ((error = add_term(p, &extra)) < 0)
            return error;
    }
    return 0;
}

static int end_alternative(parser *p)
{
    if (p->alt_count == p->alt_cap) {
        size_t cap = p->alt_cap ? p->alt_cap * 2 : 2;
        size_t *ends = realloc(p->alt_end, cap * sizeof(*ends));
        if (ends == NULL)
            return ps_error_set(PKGSTORE_ENOMEM, "constraint: out of memory");
        p->alt_end = ends;
        p->alt_cap = cap;
    }
    p->alt_end[p->alt_count++] = p->term_count;
    return 0;
}

static int parse_constraint(parser *p)
{
    int error;
    skip_spaces(p);
    if (p->pos == p->len)
        return cerror(p, p->pos, "empty constraint");
    for (;;) {
        /* One alternative: comparators until "||" or the end. */
        size_t first_term = p->term_count;
        for (;;) {
            partial pv;
            term t;
            op oper;
            size_t comparator_start;
            skip_spaces(p);
            if (p->pos == p->len || (p->pos + 1 < p->len && p->str[p->pos] == '|' &&
                                     p->str[p->pos + 1] == '|')) {
                if (p->term_count == first_term)
                    return cerror(p, p->pos, "expected a comparator");
                break;
            }
            if (p->str[p->pos] == '|')
                return cerror(p, p->pos, "expected \"||\"");
            comparator_start = p->pos;
            oper = parse_op(p);
            skip_spaces(p);
            if ((error = parse_partial(&pv, p)) < 0)
                return error;
            (void)comparator_start;
            desugar(&t, oper, &pv);
            if (oper == OP_NONE && (error = parse_hyphen_range(&t, p, &pv)) < 0)
                return error;
            if ((error = add_term(p, &t)) < 0)
                return error;
            /* A comparator ends at a space, a comma, "||" or the end. */
            if (p->pos < p->len) {
                char c = p->str[p->pos];
                if (c == ',') {
                    p->pos++;
                    skip_spaces(p);
                    if (p->pos == p->len || p->str[p->pos] == '|' || p->str[p->pos] == ',')
                        return cerror(p, p->pos, "expected a comparator after ','");
                } else if (c != ' ' && c != '\t' && c != '|') {
                    return cerror(p, p->pos, "expected a space, ',', \"||\" or the end");
                } else if (c == '|' && (p->pos + 1 >= p->len || p->str[p->pos + 1] != '|')) {
                    return cerror(p, p->pos, "expected \"||\"");
                }
            }
        }
        if ((error = end_alternative(p)) < 0)
            return error;
        if (p->pos == p->len)
            return 0;
        p->pos += 2; /* "||" */
    }
}

PKGSTORE_API int pkgstore_version_constraint_parse(pkgstore_version_constraint **out,
                                                   const char *str)
{
    parser p;
    pkgstore_version_constraint *c = NULL;
    size_t len;
    int error;
    if (out == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "constraint: NULL output");
    *out = NULL;
    if (str == NULL)
        return ps_error_set(PKGSTORE_EINVALID, "constraint: NULL input");
    len = strnlen(str, PKGSTORE_VERSION_CONSTRAINT_MAX_LEN + 1);
    if (len > PKGSTORE_VERSION_CONSTRAINT_MAX_LEN)
        return ps_error_set(PKGSTORE_ELIMIT, "constraint: longer than %d bytes",
                            PKGSTORE_VERSION_CONSTRAINT_MAX_LEN);
    memset(&p, 0, sizeof(p));
    p.str = str;
    p.len = len;
    if ((error = parse_constraint(&p)) < 0)
        goto out;
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->text = strdup(str)) == NULL) {
        error = ps_error_set(PKGSTORE_ENOMEM, "constraint: out of memory");
        goto out;
    }
    c->terms = p.terms;
    c->term_count = p.term_count;
    p.terms = NULL; /* now owned by c */
    c->alt_end = p.alt_end;
    c->alt_count = p.alt_count;
    p.alt_end = NULL; /* now owned by c */
    *out = c;
    c = NULL;
out:
    pkgstore_version_constraint_free(c);
    free(p.terms);
    free(p.alt_end);
    return error;
}

static bool term_contains(const term *t, const pkgstore_semver *v)
{
    bool inside;
    if (t->flags & TERM_EMPTY) {
        inside = false;
    } else {
        inside = true;
        if (t->flags & TERM_LO) {
            int cmp = pkgstore_version_compare(v, &t->lo);
            if (cmp < 0 || (cmp == 0 && (t->flags & TERM_LO_OPEN)))
                inside = false;
        }
        if (inside && (t->flags & TERM_HI)) {
            int cmp = pkgstore_version_compare(v, &t->hi);
            if (cmp > 0 || (cmp == 0 && (t->flags & TERM_HI_OPEN)))
                inside = false;
        }
    }
    return (t->flags & TERM_NEGATE) ? !inside : inside;
}

static bool alternative_matches(const term *terms, size_t count, const pkgstore_semver *v)
{
    bool prerelease_allowed;
    for (size_t i = 0; i < count; i++)
        if (!term_contains(&terms[i], v))
            return false;
    if (v->prerelease[0] == '\0')
        return true;
    /* npm rule: a pre-release needs a comparator naming a pre-release of
     * the same MAJOR.MINOR.PATCH. */
    prerelease_allowed = false;
    for (size_t i = 0; i < count && !prerelease_allowed; i++)
        prerelease_allowed = (terms[i].flags & TERM_PRE) && terms[i].pre_major == v->major &&
                             terms[i].pre_minor == v->minor && terms[i].pre_patch == v->patch;
    return prerelease_allowed;
}

PKGSTORE_API int pkgstore_version_constraint_match(const pkgstore_version_constraint *constraint,
                                                   const pkgstore_semver *version)
{
    size_t begin = 0;
    if (constraint == NULL || version == NULL)
        return 0;
    for (size_t a = 0; a < constraint->alt_count; a++) {
        size_t end = constraint->alt_end[a];
        if (alternative_matches(constraint->terms + begin, end - begin, version))
            return 1;
        begin = end;
    }
    return 0;
}

PKGSTORE_API const char *pkgstore_version_constraint_string(
    const pkgstore_version_constraint *constraint)
{
    return constraint != NULL ? constraint->text : "";
}

PKGSTORE_API void pkgstore_version_constraint_free(pkgstore_version_constraint *constraint)
{
    if (constraint == NULL)
        return;
    free(constraint->terms);
    free(constraint->alt_end);
    free(constraint->text);
    free(constraint);
}
