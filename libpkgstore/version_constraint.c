/*
 * version_constraint: compiled version constraints.
 *
 * A constraint compiles to alternatives ("||") of terms that must all hold.
 * Every comparator, range and wildcard desugars to one interval term
 * [lo, hi] with open/closed/absent ends, or, for "!=", a negated interval.
 * Matching is then a few pkgstore_version_compare() calls per term, with no
 * allocation. Synthesized upper bounds use the "-0" pre-release (the lowest
 * possible one), so "<2.0.0-0" excludes 2.0.0's pre-releases as well.
 */
#include "pkgstore/version.h"
#include "version.h"
#include "error.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A partial version such as "1.2", "1.x" or "*": v holds the numbers given
 * (missing ones 0) and n counts them, up to the first wildcard (0..3). */
typedef struct partial {
    int n;
    pkgstore_semver v;
} partial;

static int cerror(parser *p, size_t pos, const char *reason)
{
    return ps_version_syntax_error("constraint", p->str, p->len, pos, reason);
}

static bool is_wildcard(char c)
{
    return c == 'x' || c == 'X' || c == '*';
}

static int parse_partial(partial *out, parser *p)
{
    static const char *const names[3] = {"major", "minor", "patch"};
    uint64_t *fields[3];
    int error;
    memset(out, 0, sizeof(*out));
    fields[0] = &out->v.major;
    fields[1] = &out->v.minor;
    fields[2] = &out->v.patch;
    if (p->pos < p->len && (p->str[p->pos] == 'v' || p->str[p->pos] == 'V'))
        p->pos++;
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
        if (p->pos >= p->len || !ps_version_is_digit(p->str[p->pos])) {
            char reason[64];
            snprintf(reason, sizeof(reason), "expected the %s number or a wildcard", names[i]);
            return cerror(p, p->pos, reason);
        }
        if ((error = ps_version_parse_number(fields[i], "constraint", p->str, p->len, &p->pos, names[i])) < 0)
            return error;
        out->n = i + 1;
    }
    if (out->n == 3 && p->pos < p->len && (p->str[p->pos] == '-' || p->str[p->pos] == '+')) {
        if (p->str[p->pos] == '-') {
            p->pos++;
            if ((error = ps_version_parse_identifiers(out->v.prerelease, PKGSTORE_SEMVER_PRERELEASE_MAX,
                                           "constraint", p->str, p->len, &p->pos, true)) < 0)
                return error;
        }
        if (p->pos < p->len && p->str[p->pos] == '+') {
            /* Build metadata is accepted and ignored, as in precedence. */
            p->pos++;
            if ((error = ps_version_parse_identifiers(out->v.build, PKGSTORE_SEMVER_BUILD_MAX, "constraint",
                                           p->str, p->len, &p->pos, false)) < 0)
                return error;
            out->v.build[0] = '\0';
        }
    } else if (out->n > 0 && out->n < 3 && p->pos < p->len &&
               (p->str[p->pos] == '-' || p->str[p->pos] == '+')) {
        return cerror(p, p->pos, "a pre-release or build needs a full MAJOR.MINOR.PATCH");
    }
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
            skip_spaces(p);
            if (p->pos == p->len || (p->pos + 1 < p->len && p->str[p->pos] == '|' &&
                                     p->str[p->pos + 1] == '|')) {
                if (p->term_count == first_term)
                    return cerror(p, p->pos, "expected a comparator");
                break;
            }
            if (p->str[p->pos] == '|')
                return cerror(p, p->pos, "expected \"||\"");
            oper = parse_op(p);
            skip_spaces(p);
            if ((error = parse_partial(&pv, p)) < 0)
                return error;
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
            int cmp = ps_version_compare(v, &t->lo);
            if (cmp < 0 || (cmp == 0 && (t->flags & TERM_LO_OPEN)))
                inside = false;
        }
        if (inside && (t->flags & TERM_HI)) {
            int cmp = ps_version_compare(v, &t->hi);
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
