/*
 * archive_tree: the path rules and the virtual tree of an archive.
 *
 * Entry paths are normalized and refused when absolute, when they hold a
 * "..", or when too long or too deep. The tree records what each path
 * finally is once the archive is applied in order, and resolves symlinks
 * through it exactly as the kernel would once they are on disk, so that a
 * chain of links that each look harmless cannot climb out together.
 * Hashes extend from prefix to path, so every lookup along a path costs
 * linear time overall; symlink resolution has a work budget per archive.
 */
#include "archive_private.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ paths */

int ps_archive_normalize_path(char *out, size_t out_size, const char *in, const char *what)
{
    size_t n = 0, depth = 0;
    const char *p = in;

    if (!in || !*in)
        return ps_error_set(PKGSTORE_EUNSAFE, "%s: empty path", what);
    if (in[0] == '/')
        return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: absolute path", in);
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return ps_error_set(PKGSTORE_EUNSAFE,
                                "%.512s: '..' component leaves the extraction directory", in);
        if (len > PS_ARCHIVE_MAX_NAME_LEN)
            return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: file name too long", in);
        if (len > 0 && !(len == 1 && p[0] == '.')) {
            if (++depth > PS_ARCHIVE_MAX_DEPTH)
                return ps_error_set(PKGSTORE_ELIMIT, "%.512s: more than %d levels of directories",
                                    in, PS_ARCHIVE_MAX_DEPTH);
            if (n + (n ? 1 : 0) + len >= out_size || n + len + 1 > PS_ARCHIVE_MAX_PATH_LEN)
                return ps_error_set(PKGSTORE_EUNSAFE, "%.512s...: path too long", in);
            if (n)
                out[n++] = '/';
            memcpy(out + n, p, len);
            n += len;
        }
        p += len;
        if (*p == '/')
            p++;
    }
    out[n] = '\0';
    return 0;
}

/* ------------------------------------------------------------ entry map */

uint64_t ps_archive_hash(uint64_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

ps_archive_node *ps_archive_tree_find(const ps_archive_tree *map, const char *path, size_t len,
                                      uint64_t hash)
{
    if (!map->cap)
        return NULL;
    size_t i = (size_t)hash & (map->cap - 1);
    while (map->slots[i].path) {
        const ps_archive_node *n = &map->slots[i];
        if (n->hash == hash && strncmp(n->path, path, len) == 0 && n->path[len] == '\0')
            return &map->slots[i];
        i = (i + 1) & (map->cap - 1);
    }
    return NULL;
}

static int tree_grow(ps_archive_tree *map)
{
    size_t cap = map->cap ? map->cap * 2 : 64;
    ps_archive_node *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    for (size_t j = 0; j < map->cap; j++) {
        if (!map->slots[j].path)
            continue;
        size_t i = (size_t)map->slots[j].hash & (cap - 1);
        while (slots[i].path)
            i = (i + 1) & (cap - 1);
        slots[i] = map->slots[j];
    }
    free(map->slots);
    map->slots = slots;
    map->cap = cap;
    return 0;
}

int ps_archive_tree_put(ps_archive_tree *map, const char *path,
                        pkgstore_archive_entry_type type, const char *target)
{
    size_t plen = strlen(path), tlen = target ? strlen(target) : 0;
    uint64_t hash = ps_archive_hash(PS_ARCHIVE_HASH_INIT, path, plen);
    ps_archive_node *slot = ps_archive_tree_find(map, path, plen, hash);
    char *copy = malloc(plen + 1 + tlen + 1);
    int error;

    if (!copy)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    memcpy(copy, path, plen + 1);
    if (target)
        memcpy(copy + plen + 1, target, tlen + 1);
    if (slot) {
        if (slot->type == PKGSTORE_ENTRY_SYMLINK)
            map->symlinks--;
        free(slot->path);
    } else {
        if ((map->count + 1) * 4 > map->cap * 3 && (error = tree_grow(map)) < 0) {
            free(copy);
            return error;
        }
        size_t i = (size_t)hash & (map->cap - 1);
        while (map->slots[i].path)
            i = (i + 1) & (map->cap - 1);
        slot = &map->slots[i];
        map->count++;
    }
    slot->path = copy;
    slot->hash = hash;
    slot->target = target ? copy + plen + 1 : NULL;
    slot->type = type;
    if (type == PKGSTORE_ENTRY_SYMLINK)
        map->symlinks++;
    return 0;
}

void ps_archive_tree_free(ps_archive_tree *map)
{
    for (size_t i = 0; i < map->cap; i++)
        free(map->slots[i].path);
    free(map->slots);
    memset(map, 0, sizeof(*map));
}

static int resolver_push(ps_archive_resolver *r, const char *comp, size_t len)
{
    size_t cur_len = r->len[r->depth];
    size_t new_len = cur_len + (cur_len ? 1 : 0) + len;
    if (new_len > PS_ARCHIVE_MAX_PATH_LEN || r->depth + 1 >= PS_ARCHIVE_RESOLVE_DEPTH)
        return -1;
    uint64_t h = r->hash[r->depth];
    if (cur_len) {
        r->cur[cur_len++] = '/';
        h = ps_archive_hash(h, "/", 1);
    }
    memcpy(r->cur + cur_len, comp, len);
    r->cur[new_len] = '\0';
    r->depth++;
    r->len[r->depth] = new_len;
    r->hash[r->depth] = ps_archive_hash(h, comp, len);
    return 0;
}

static void resolver_pop(ps_archive_resolver *r)
{
    r->depth--;
    r->cur[r->len[r->depth]] = '\0';
}

/* Resolve a symlink's target from its directory through the archive's
 * other symlinks, as the kernel would once it is on disk; refuse when the
 * walk climbs above the root, reaches an absolute path or loops. */
int ps_archive_resolve_symlink(ps_archive_resolver *r, const ps_archive_tree *map,
                               const char *link_path, const char *target)
{
    char *queue = NULL;
    size_t hops = 0, pos = 0;
    int error = 0;

    if (target[0] == '/')
        return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: symlink to absolute path %.512s",
                            link_path, target);
    /* Start in the link's directory. */
    r->depth = 0;
    r->len[0] = 0;
    r->hash[0] = PS_ARCHIVE_HASH_INIT;
    r->cur[0] = '\0';
    const char *slash = strrchr(link_path, '/');
    for (const char *p = link_path; slash && p < slash;) {
        size_t len = strcspn(p, "/");
        if (resolver_push(r, p, len) < 0)
            return ps_error_set(PKGSTORE_EUNSAFE, "%.512s: path too long", link_path);
        p += len + 1;
    }
    queue = strdup(target);
    if (!queue)
        return ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
    while (queue[pos]) {
        char *comp = queue + pos;
        size_t len = strcspn(comp, "/");
        pos += len + (comp[len] == '/');
        if (r->budget == 0) {
            error = ps_error_set(PKGSTORE_ELIMIT,
                                 "%.512s: symlinks too many or too intricate to check",
                                 link_path);
            goto out;
        }
        r->budget--;
        if (len == 0 || (len == 1 && comp[0] == '.'))
            continue;
        if (len == 2 && comp[0] == '.' && comp[1] == '.') {
            if (r->depth == 0) {
                error = ps_error_set(PKGSTORE_EUNSAFE,
                                     "%.512s: symlink to %.512s leaves the extraction directory",
                                     link_path, target);
                goto out;
            }
            resolver_pop(r);
            continue;
        }
        if (resolver_push(r, comp, len) < 0) {
            error = ps_error_set(PKGSTORE_EUNSAFE, "%.512s: symlink target path too long",
                                 link_path);
            goto out;
        }
        const ps_archive_node *hit = ps_archive_tree_find(map, r->cur, r->len[r->depth], r->hash[r->depth]);
        if (hit && hit->type == PKGSTORE_ENTRY_SYMLINK) {
            if (++hops > PS_ARCHIVE_MAX_SYMLINK_HOPS) {
                error = ps_error_set(PKGSTORE_EUNSAFE, "%.512s: too many levels of symlinks",
                                     link_path);
                goto out;
            }
            if (hit->target[0] == '/') {
                error = ps_error_set(PKGSTORE_EUNSAFE,
                                     "%.512s: symlink chain reaches absolute path %.512s",
                                     link_path, hit->target);
                goto out;
            }
            /* Continue with the link's target, then the rest of the queue. */
            resolver_pop(r);
            const char *rest = queue + pos;
            size_t tl = strlen(hit->target), rl = strlen(rest);
            char *next = malloc(tl + 1 + rl + 1);
            if (!next) {
                error = ps_error_set(PKGSTORE_ENOMEM, "archive: out of memory");
                goto out;
            }
            memcpy(next, hit->target, tl);
            next[tl] = '/';
            memcpy(next + tl + 1, rest, rl + 1);
            free(queue);
            queue = next;
            pos = 0;
        }
    }
out:
    free(queue);
    return error;
}
