/*
 * Private: what the archive files share (archive.c: formats, detection,
 * reading and listing; archive_tree.c: path rules and the virtual tree
 * that symlinks are resolved in; archive_extract.c: validation and safe
 * extraction).
 *
 * Not named archive.h: with -Ilibpkgstore that would shadow libarchive's
 * <archive.h>.
 */
#ifndef PS_ARCHIVE_PRIVATE_H
#define PS_ARCHIVE_PRIVATE_H

#include "pkgstore/archive.h"

#include <archive.h>
#include <archive_entry.h>

#define PS_ARCHIVE_MAX_PATH_LEN 4095
#define PS_ARCHIVE_MAX_NAME_LEN 255
#define PS_ARCHIVE_MAX_DEPTH 128         /* components in an entry path */
#define PS_ARCHIVE_MAX_SYMLINK_HOPS 40
#define PS_ARCHIVE_RESOLVE_DEPTH (PS_ARCHIVE_MAX_PATH_LEN / 2 + 2)
#define PS_ARCHIVE_RESOLVE_BUDGET 2000000u /* symlink resolution steps per archive */

/* ---- archive.c ---- */

/* The limits of an options struct, defaults filled in. */
typedef struct ps_archive_limits {
    uint64_t max_entries;
    uint64_t max_total_size;
    uint64_t max_ratio;
    uint64_t ratio_min_size;
} ps_archive_limits;

/* Errors: PKGSTORE_EINVALID (unknown options version). */
int ps_archive_limits_from(ps_archive_limits *out, const pkgstore_archive_options *opts);

/* libarchive reads an fd through pread() (the fd's offset never moves). */
typedef struct ps_archive_source {
    int fd;
    int64_t offset;
    int64_t size;
    unsigned char *buf;
    size_t buf_size;
    int read_errno;
} ps_archive_source;

/* A reader over fd with exactly our filters and formats; src must outlive
 * it. Errors: PKGSTORE_EFORMAT (libarchive cannot open it), PKGSTORE_EIO,
 * PKGSTORE_ENOMEM, PKGSTORE_EINVALID (not a regular file). */
int ps_archive_reader_open_fd(struct archive **out, ps_archive_source *src, int fd);
void ps_archive_reader_close(struct archive *a, ps_archive_source *src);

/* The error of a failed libarchive call: our read error, or EFORMAT
 * quoting libarchive, prefixed by what. */
int ps_archive_reader_error(struct archive *a, const ps_archive_source *src, const char *what);

/* open(path, O_RDONLY) with the library's errors. */
int ps_archive_open_input(int *fd_out, const char *path);

pkgstore_archive_entry_type ps_archive_entry_type(struct archive_entry *entry);

/* ---- archive_tree.c ---- */

/* Normalize an archive path: drop "." and empty components and a trailing
 * slash. Refuses (EUNSAFE) absolute paths, ".." and over-long names, and
 * (ELIMIT) more than PS_ARCHIVE_MAX_DEPTH components. An empty result
 * means the extraction directory itself. */
int ps_archive_normalize_path(char *out, size_t out_size, const char *in, const char *what);

/* FNV-1a, extendable: hash("a/b") == ps_archive_hash(ps_archive_hash(
 * PS_ARCHIVE_HASH_INIT, "a", 1), "/b", 2). */
#define PS_ARCHIVE_HASH_INIT 1469598103934665603ull
uint64_t ps_archive_hash(uint64_t h, const char *s, size_t len);

/* The final state of the tree as the archive builds it entry by entry
 * (later entries replace earlier ones): normalized path -> type and, for
 * symlinks, target. */
typedef struct ps_archive_node {
    char *path; /* owns the target too (path\0target\0) */
    const char *target;
    uint64_t hash;
    pkgstore_archive_entry_type type;
} ps_archive_node;

typedef struct ps_archive_tree {
    ps_archive_node *slots;
    size_t cap; /* power of two */
    size_t count;
    size_t symlinks;
} ps_archive_tree;

ps_archive_node *ps_archive_tree_find(const ps_archive_tree *tree, const char *path, size_t len,
                                      uint64_t hash);
int ps_archive_tree_put(ps_archive_tree *tree, const char *path,
                        pkgstore_archive_entry_type type, const char *target);
void ps_archive_tree_free(ps_archive_tree *tree);

/* Working memory of symlink resolution. */
typedef struct ps_archive_resolver {
    char cur[PS_ARCHIVE_MAX_PATH_LEN + 1];
    size_t len[PS_ARCHIVE_RESOLVE_DEPTH];
    uint64_t hash[PS_ARCHIVE_RESOLVE_DEPTH];
    size_t depth;
    uint64_t budget; /* steps left for the whole archive */
} ps_archive_resolver;

/* Resolve the symlink at link_path -> target from its own directory
 * through the symlinks of tree. Errors: PKGSTORE_EUNSAFE (leaves the
 * root, reaches an absolute path, loops), PKGSTORE_ELIMIT (budget spent),
 * PKGSTORE_ENOMEM. */
int ps_archive_resolve_symlink(ps_archive_resolver *r, const ps_archive_tree *tree,
                               const char *link_path, const char *target);

#endif
