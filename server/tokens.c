/*
 * server/tokens.c - bearer tokens and their roles.
 *
 * A presented token is compared in constant time against every known one:
 * both are zero-padded to TOKEN_MAX_LEN and every byte of every entry is
 * compared, lengths folded in, with no early exit, so neither the content
 * nor the length of a token leaks through timing.
 *
 * Files: --tokens FILE holds "ROLE TOKEN" lines (roles admin, agent,
 * metrics; '#' comments), read by common/tokenfile.c like the tools' token
 * files. Without --tokens, pkgstored uses two files beside
 * the store, <store>.admin-token and, with --allow-shared-agent-token,
 * <store>.agent-token, each holding one token; on first start it creates
 * them (mode 0600).
 *
 * Every token file pkgstored reads must be private to its user: owned by
 * the effective uid, no permission bits for group or others. Otherwise it
 * refuses to start and says which file and how to fix it: a token another
 * user can read is a token another user holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server.h"
#include "../common/tokenfile.h"

#define TOKEN_MIN_LEN 16
#define TOKEN_MAX_LEN 512

typedef struct token_entry {
    uint64_t words[TOKEN_MAX_LEN / 8]; /* the token, zero-padded */
    size_t len;
    enum role role;
} token_entry;

struct token_set {
    token_entry *entries;
    size_t count, cap;
};

static int set_add(token_set *set, const char *token, size_t len, enum role role)
{
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 4;
        token_entry *entries = realloc(set->entries, cap * sizeof *entries);
        if (!entries)
            return -1;
        set->entries = entries;
        set->cap = cap;
    }
    if (len > TOKEN_MAX_LEN)
        return -1;
    memset(set->entries[set->count].words, 0, TOKEN_MAX_LEN);
    memcpy(set->entries[set->count].words, token, len);
    set->entries[set->count].len = len;
    set->entries[set->count].role = role;
    set->count++;
    return 0;
}

static int role_parse(enum role *out, const char *word)
{
    if (strcmp(word, "admin") == 0)
        *out = ROLE_ADMIN;
    else if (strcmp(word, "agent") == 0)
        *out = ROLE_AGENT;
    else if (strcmp(word, "metrics") == 0)
        *out = ROLE_METRICS;
    else
        return -1;
    return 0;
}

static int token_chars_ok(const char *token, size_t len)
{
    if (len < TOKEN_MIN_LEN || len > TOKEN_MAX_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)token[i];
        if (c <= ' ' || c >= 0x7f)
            return 0;
    }
    return 1;
}

typedef struct load_state {
    token_set *set;
    const char *path;
    char *err;
    size_t err_size;
} load_state;

static int load_line(void *payload, int lineno, const char *first, const char *second)
{
    load_state *state = payload;
    enum role role;
    if (role_parse(&role, first) < 0) {
        snprintf(state->err, state->err_size,
                 "%s:%d: unknown role '%.32s' (admin, agent or metrics)", state->path, lineno,
                 first);
        return -1;
    }
    if (!second || !token_chars_ok(second, strlen(second))) {
        snprintf(state->err, state->err_size,
                 "%s:%d: token missing or not %d-%d printable characters", state->path, lineno,
                 TOKEN_MIN_LEN, TOKEN_MAX_LEN);
        return -1;
    }
    if (set_add(state->set, second, strlen(second), role) < 0) {
        snprintf(state->err, state->err_size, "%s: out of memory", state->path);
        return -1;
    }
    return 0;
}

int tokens_file_private(const char *path, char *err, size_t err_size)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        if (errno == ENOENT)
            return 1;
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_size, "%s: not a regular file", path);
        return -1;
    }
    if (st.st_uid != geteuid()) {
        snprintf(err, err_size,
                 "%s: owned by uid %lu, not by pkgstored's user (uid %lu); chown it to that "
                 "user",
                 path, (unsigned long)st.st_uid, (unsigned long)geteuid());
        return -1;
    }
    if (st.st_mode & 077) {
        snprintf(err, err_size,
                 "%s: mode %03o lets other users read or change the tokens; chmod 600 it",
                 path, (unsigned int)(st.st_mode & 0777));
        return -1;
    }
    return 0;
}

int tokens_load_file(token_set **out, const char *path, char *err, size_t err_size)
{
    *out = NULL;
    if (tokens_file_private(path, err, err_size) < 0)
        return -1;
    token_set *set = calloc(1, sizeof *set);
    if (!set) {
        snprintf(err, err_size, "%s: out of memory", path);
        return -1;
    }
    load_state state = {set, path, err, err_size};
    int rc = token_file_each(path, load_line, &state, err, err_size);
    if (rc == 1)
        snprintf(err, err_size, "%s: %s", path, strerror(ENOENT));
    else if (rc == 0 && set->count == 0)
        snprintf(err, err_size, "%s: no tokens", path);
    if (rc != 0 || set->count == 0) {
        tokens_free(set);
        return -1;
    }
    *out = set;
    return 0;
}

/* Read the single token held in path into buf. 0, -1 (error in err) or
 * 1 when the file does not exist. */
static int read_token_file(char *buf, size_t size, const char *path, char *err, size_t err_size)
{
    int rc = tokens_file_private(path, err, err_size);
    if (rc != 0)
        return rc;
    rc = token_file_first(buf, size, path, err, err_size);
    if (rc != 0)
        return rc;
    if (!token_chars_ok(buf, strlen(buf))) {
        snprintf(err, err_size, "%s: no valid token in the file", path);
        return -1;
    }
    return 0;
}

static int create_token_file(const char *path, char *token_out, size_t token_size, char *err,
                             size_t err_size)
{
    unsigned char random_bytes[32];
    if (getrandom(random_bytes, sizeof random_bytes, 0) != (ssize_t)sizeof random_bytes) {
        snprintf(err, err_size, "getrandom: %s", strerror(errno));
        return -1;
    }
    static const char hex[] = "0123456789abcdef";
    char token[65];
    for (size_t i = 0; i < sizeof random_bytes; i++) {
        token[2 * i] = hex[random_bytes[i] >> 4];
        token[2 * i + 1] = hex[random_bytes[i] & 15];
    }
    token[64] = '\0';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[80];
    int len = snprintf(line, sizeof line, "%s\n", token);
    if (write(fd, line, (size_t)len) != len || fsync(fd) < 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    close(fd);
    snprintf(token_out, token_size, "%s", token);
    return 0;
}

int tokens_load_default(token_set **out, const char *store_path, int with_agent, int *created,
                        char *admin_path, char *agent_path, size_t path_size, char *err,
                        size_t err_size)
{
    *out = NULL;
    *created = 0;
    char base[4096];
    snprintf(base, sizeof base, "%s", store_path);
    size_t len = strlen(base);
    while (len > 1 && base[len - 1] == '/')
        base[--len] = '\0';
    snprintf(admin_path, path_size, "%s.admin-token", base);
    snprintf(agent_path, path_size, "%s.agent-token", base);

    char admin[TOKEN_MAX_LEN + 1], agent[TOKEN_MAX_LEN + 1] = "";
    int admin_state = read_token_file(admin, sizeof admin, admin_path, err, err_size);
    if (admin_state < 0)
        return -1;
    int agent_state = 0; /* not read without the shared agent token */
    if (with_agent && (agent_state = read_token_file(agent, sizeof agent, agent_path, err,
                                                     err_size)) < 0)
        return -1;
    if (admin_state == 1) {
        if (create_token_file(admin_path, admin, sizeof admin, err, err_size) < 0)
            return -1;
        *created = 1;
    }
    if (agent_state == 1) {
        if (create_token_file(agent_path, agent, sizeof agent, err, err_size) < 0)
            return -1;
        *created = 1;
    }
    token_set *set = calloc(1, sizeof *set);
    if (!set || set_add(set, admin, strlen(admin), ROLE_ADMIN) < 0 ||
        (with_agent && set_add(set, agent, strlen(agent), ROLE_AGENT) < 0)) {
        tokens_free(set);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    explicit_bzero(admin, sizeof admin); /* the set keeps its own copies */
    explicit_bzero(agent, sizeof agent);
    *out = set;
    return 0;
}

enum role tokens_check(const token_set *set, const char *token, size_t len)
{
    if (!set || !token || len == 0 || len > TOKEN_MAX_LEN)
        return ROLE_NONE;
    uint64_t presented[TOKEN_MAX_LEN / 8] = {0};
    memcpy(presented, token, len);
    enum role role = ROLE_NONE;
    for (size_t i = 0; i < set->count; i++) {
        const token_entry *entry = &set->entries[i];
        uint64_t diff = (uint64_t)(entry->len ^ len);
        for (size_t j = 0; j < TOKEN_MAX_LEN / 8; j++)
            diff |= presented[j] ^ entry->words[j];
        /* equal is 1 when diff == 0, computed without a branch */
        unsigned int equal = (unsigned int)(1u & (((diff | (0 - diff)) >> 63) ^ 1u));
        unsigned int mask = 0u - equal;
        role = (enum role)(((unsigned int)set->entries[i].role & mask) |
                           ((unsigned int)role & ~mask));
    }
    return role;
}

size_t tokens_drop_role(token_set *set, enum role role)
{
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; set && i < set->count; i++) {
        if (set->entries[i].role == role) {
            dropped++;
            continue;
        }
        if (kept != i)
            set->entries[kept] = set->entries[i];
        kept++;
    }
    if (set) {
        explicit_bzero(set->entries + kept, (set->count - kept) * sizeof *set->entries);
        set->count = kept;
    }
    return dropped;
}

size_t tokens_count(const token_set *set)
{
    return set ? set->count : 0;
}

void tokens_free(token_set *set)
{
    if (!set)
        return;
    if (set->entries)
        explicit_bzero(set->entries, set->cap * sizeof *set->entries);
    free(set->entries);
    free(set);
}

/* ---------------------------------------------------------------- start-up */

int tokens_open(const server_config *cfg, char *err, size_t err_size)
{
    char admin_path[4200], agent_path[4200], credentials_path[4200], q1[4300], q2[4300];
    int created = 0, error;
    int shared = cfg->allow_shared_agent_token;

    if (cfg->tokens_path)
        error = tokens_load_file(&g_server.tokens, cfg->tokens_path, err, err_size);
    else
        error = tokens_load_default(&g_server.tokens, cfg->store_path, shared, &created,
                                    admin_path, agent_path, sizeof admin_path, err, err_size);
    if (error < 0)
        return -1;
    if (cfg->tokens_path && !shared) {
        size_t dropped = tokens_drop_role(g_server.tokens, ROLE_AGENT);
        if (dropped) {
            snprintf(err, err_size,
                     "%s: %zu agent line(s): the fleet-wide agent token lets its holder speak "
                     "for any node; give each node its own credential (pkgstore-token issue), "
                     "or pass --allow-shared-agent-token (development only)",
                     cfg->tokens_path, dropped);
            tokens_free(g_server.tokens);
            g_server.tokens = NULL;
            return -1;
        }
    }
    if (cfg->credentials_path) {
        snprintf(credentials_path, sizeof credentials_path, "%s", cfg->credentials_path);
    } else {
        size_t len = strlen(cfg->store_path);
        while (len > 1 && cfg->store_path[len - 1] == '/')
            len--;
        snprintf(credentials_path, sizeof credentials_path, "%.*s.node-credentials", (int)len,
                 cfg->store_path);
    }
    size_t count = 0;
    if (credentials_load(credentials_path, &count, err, err_size) < 0) {
        tokens_free(g_server.tokens);
        g_server.tokens = NULL;
        return -1;
    }
    if (cfg->tokens_path)
        log_msg(LOG_INFO, "using tokens", "tokens_file=%s",
                log_quote(q1, sizeof q1, cfg->tokens_path));
    else if (created)
        log_msg(LOG_INFO, "created tokens (mode 0600)", "admin_token_file=%s agent_token_file=%s",
                log_quote(q1, sizeof q1, admin_path),
                shared ? log_quote(q2, sizeof q2, agent_path) : "none");
    else
        log_msg(LOG_INFO, "using tokens", "admin_token_file=%s agent_token_file=%s",
                log_quote(q1, sizeof q1, admin_path),
                shared ? log_quote(q2, sizeof q2, agent_path) : "none");
    if (!shared && !cfg->tokens_path && access(agent_path, F_OK) == 0)
        log_msg(LOG_WARN,
                "the fleet-wide agent token is ignored: give each node its own credential "
                "(pkgstore-token issue), or pass --allow-shared-agent-token (development only)",
                "agent_token_file=%s", log_quote(q2, sizeof q2, agent_path));
    if (shared)
        log_msg(LOG_WARN,
                "--allow-shared-agent-token: any holder of the agent token may speak for any "
                "node and set any labels; use per-node credentials outside development",
                "%s", "");

    log_msg(LOG_INFO, "node credentials", "file=%s count=%zu",
            log_quote(q1, sizeof q1, credentials_path), count);
    return 0;
}
