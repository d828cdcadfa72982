/*
 * pkgstore/archive.h - detect, list, validate, safely extract and create
 * artifact archives (through libarchive).
 *
 * Formats (the manifest's "format" names): "binary" (not an archive),
 * "tar", "tar+gzip", "tar+zstd", "tar+xz" and "zip". Detection looks at the
 * content, never at a file name.
 *
 * Safety rules, applied by validate and by both extract functions alike
 * (docs/archive.md): every entry path is relative and has no ".."
 * component; symbolic links and hard links stay below the extraction
 * directory (a symlink is resolved from its own location, through the other
 * symlinks of the archive); no device nodes, FIFOs or sockets; the entry
 * count, the total expanded size and the expansion ratio are capped. A
 * refusal is PKGSTORE_EUNSAFE or PKGSTORE_ELIMIT with a detail naming the
 * entry, e.g. "../etc/passwd: path leaves the extraction directory".
 *
 * Functions taking an fd read it with pread() from offset 0 and never move
 * its file offset; the caller keeps ownership of the fd.
 */
#ifndef PKGSTORE_ARCHIVE_H
#define PKGSTORE_ARCHIVE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pkgstore_archive_format {
    PKGSTORE_ARCHIVE_UNKNOWN = 0,  /* "unknown": not detected yet / detect it */
    PKGSTORE_ARCHIVE_BINARY = 1,   /* "binary": a plain file, not an archive */
    PKGSTORE_ARCHIVE_TAR = 2,      /* "tar" */
    PKGSTORE_ARCHIVE_TAR_GZIP = 3, /* "tar+gzip" */
    PKGSTORE_ARCHIVE_TAR_ZSTD = 4, /* "tar+zstd" */
    PKGSTORE_ARCHIVE_TAR_XZ = 5,   /* "tar+xz" */
    PKGSTORE_ARCHIVE_ZIP = 6       /* "zip" */
} pkgstore_archive_format;

/** The manifest name of a format ("tar+zstd", ...); "unknown" for anything
 * else. Never NULL; static storage. */
PKGSTORE_API const char *pkgstore_archive_format_name(pkgstore_archive_format format);

/**
 * Parse a manifest format name ("binary", "tar", "tar+gzip", "tar+zstd",
 * "tar+xz", "zip") into *out. Errors: PKGSTORE_EINVALID (unknown name,
 * listed in the detail); *out is then PKGSTORE_ARCHIVE_UNKNOWN.
 */
PKGSTORE_API int pkgstore_archive_format_parse(pkgstore_archive_format *out, const char *name);

/** 1 if format is one of the archive formats (not binary, not unknown). */
PKGSTORE_API int pkgstore_archive_format_is_archive(pkgstore_archive_format format);

/* ---- limits ---- */

typedef struct pkgstore_archive_options {
    unsigned int version;    /* PKGSTORE_ARCHIVE_OPTIONS_VERSION */
    uint64_t max_entries;    /* entries in the archive; 0 = default (10000) */
    uint64_t max_total_size; /* sum of expanded sizes in bytes; 0 = default (4 GiB) */
    uint64_t max_ratio;      /* expanded size / archive size; 0 = default (200) */
    uint64_t ratio_min_size; /* the ratio is enforced once the expanded size passes
                                this many bytes; 0 = default (1 MiB) */
} pkgstore_archive_options;

#define PKGSTORE_ARCHIVE_OPTIONS_VERSION 1
#define PKGSTORE_ARCHIVE_DEFAULT_MAX_ENTRIES 10000u
#define PKGSTORE_ARCHIVE_DEFAULT_MAX_TOTAL_SIZE (UINT64_C(4) << 30)
#define PKGSTORE_ARCHIVE_DEFAULT_MAX_RATIO 200u
#define PKGSTORE_ARCHIVE_DEFAULT_RATIO_MIN_SIZE (UINT64_C(1) << 20)
#define PKGSTORE_ARCHIVE_OPTIONS_INIT                                               \
    { PKGSTORE_ARCHIVE_OPTIONS_VERSION, PKGSTORE_ARCHIVE_DEFAULT_MAX_ENTRIES,       \
      PKGSTORE_ARCHIVE_DEFAULT_MAX_TOTAL_SIZE, PKGSTORE_ARCHIVE_DEFAULT_MAX_RATIO, \
      PKGSTORE_ARCHIVE_DEFAULT_RATIO_MIN_SIZE }

/**
 * Fill *opts with the defaults of options version (1 to
 * PKGSTORE_ARCHIVE_OPTIONS_VERSION), the same as
 * PKGSTORE_ARCHIVE_OPTIONS_INIT. A zero limit also means its default.
 * Errors: PKGSTORE_EINVALID (NULL opts, a version this library does not
 * know).
 */
PKGSTORE_API int pkgstore_archive_options_init(pkgstore_archive_options *opts,
                                               unsigned int version);

/* ---- detection ---- */

/**
 * Detect the format of the content of fd (magic bytes, then libarchive
 * reads the first header). A file that is no archive at all is
 * PKGSTORE_ARCHIVE_BINARY.
 * Errors: PKGSTORE_EFORMAT (empty file; compressed data that is not a tar;
 * a truncated or corrupt archive header; another archive format such as
 * cpio or 7z), PKGSTORE_EIO, PKGSTORE_EINVALID. On failure *out is
 * PKGSTORE_ARCHIVE_UNKNOWN.
 */
PKGSTORE_API int pkgstore_archive_detect_fd(pkgstore_archive_format *out, int fd);

/** As pkgstore_archive_detect_fd() for a path; adds PKGSTORE_ENOTFOUND and
 * PKGSTORE_EDENIED. */
PKGSTORE_API int pkgstore_archive_detect_file(pkgstore_archive_format *out, const char *path);

/** As pkgstore_archive_detect_fd() for bytes in memory. */
PKGSTORE_API int pkgstore_archive_detect_buffer(pkgstore_archive_format *out, const void *data,
                                                size_t len);

/* ---- listing ---- */

typedef enum pkgstore_archive_entry_type {
    PKGSTORE_ENTRY_FILE = 1,     /* regular file */
    PKGSTORE_ENTRY_DIR = 2,      /* directory */
    PKGSTORE_ENTRY_SYMLINK = 3,  /* symbolic link; link_target holds its target */
    PKGSTORE_ENTRY_HARDLINK = 4, /* hard link; link_target is the archive path it links to */
    PKGSTORE_ENTRY_OTHER = 5     /* device node, FIFO or socket (always refused on extract) */
} pkgstore_archive_entry_type;

/** One entry, as stored in the archive. */
typedef struct pkgstore_archive_entry {
    const char *path;        /* the path as stored (not normalized) */
    pkgstore_archive_entry_type type;
    uint64_t size;           /* expanded size in bytes (0 for non-files) */
    unsigned int mode;       /* permission bits, e.g. 0755 */
    const char *link_target; /* for links, else NULL */
} pkgstore_archive_entry;

/** A listing (opaque). */
typedef struct pkgstore_archive_list pkgstore_archive_list;

/**
 * List every entry of the archive in fd into *out, in archive order. Only
 * the headers are read (the data is skipped, but a compressed stream is
 * still decompressed). The entry-count cap of opts applies (NULL: defaults);
 * no other safety rule does: listing shows unsafe entries too.
 * Errors: PKGSTORE_EFORMAT (binary or malformed; the detail quotes
 * libarchive), PKGSTORE_ELIMIT, PKGSTORE_EIO, PKGSTORE_ENOMEM.
 * Free with pkgstore_archive_list_free(). On failure *out is NULL.
 */
PKGSTORE_API int pkgstore_archive_list_fd(pkgstore_archive_list **out, int fd,
                                          const pkgstore_archive_options *opts);

/** As pkgstore_archive_list_fd() for a path; adds PKGSTORE_ENOTFOUND. */
PKGSTORE_API int pkgstore_archive_list_file(pkgstore_archive_list **out, const char *path,
                                            const pkgstore_archive_options *opts);

/** The detected format of a listed archive. */
PKGSTORE_API pkgstore_archive_format pkgstore_archive_list_format(const pkgstore_archive_list *list);

/** Number of entries. */
PKGSTORE_API size_t pkgstore_archive_list_count(const pkgstore_archive_list *list);

/** Entry i (0-based), or NULL when out of range. Valid until the list is freed. */
PKGSTORE_API const pkgstore_archive_entry *
pkgstore_archive_list_get(const pkgstore_archive_list *list, size_t i);

/** Free a listing. Accepts NULL. */
PKGSTORE_API void pkgstore_archive_list_free(pkgstore_archive_list *list);

/* ---- validation (upload-time checks) ---- */

/** What validation learnt about an archive (opaque). */
typedef struct pkgstore_archive_info pkgstore_archive_info;

/** The archive's format. */
PKGSTORE_API pkgstore_archive_format pkgstore_archive_info_format(const pkgstore_archive_info *info);
/** The number of entries. */
PKGSTORE_API uint64_t pkgstore_archive_info_entries(const pkgstore_archive_info *info);
/** The sum of the expanded sizes of its regular files, in bytes. */
PKGSTORE_API uint64_t pkgstore_archive_info_total_size(const pkgstore_archive_info *info);
/** The size of the archive itself, in bytes. */
PKGSTORE_API uint64_t pkgstore_archive_info_archive_size(const pkgstore_archive_info *info);
/** The number of regular files with an executable bit. */
PKGSTORE_API uint64_t pkgstore_archive_info_executables(const pkgstore_archive_info *info);
/** The normalized path of the only executable regular file when
 * executables is 1, else "". Owned by info, valid as long as it. */
PKGSTORE_API const char *pkgstore_archive_info_sole_executable(const pkgstore_archive_info *info);
/** Free what validation returned. Accepts NULL. */
PKGSTORE_API void pkgstore_archive_info_free(pkgstore_archive_info *info);

/**
 * Check every entry of the archive in fd against the safety rules and the
 * limits of opts (NULL: defaults), reading the whole archive (data
 * included, so the expanded size and ratio are measured, not trusted).
 * When entrypoint is not NULL it must name a regular file of the archive
 * ("./" prefixes and duplicate slashes are ignored).
 * On success *info_out (info_out may be NULL) receives what was learnt;
 * free it with pkgstore_archive_info_free(). On failure it is NULL. Writes
 * nothing to disk.
 * Errors: PKGSTORE_EUNSAFE and PKGSTORE_ELIMIT (detail names the entry),
 * PKGSTORE_ENOTFOUND (no such entrypoint), PKGSTORE_EINVALID (entrypoint is
 * not a regular file, or a bad argument), PKGSTORE_EFORMAT (not an archive,
 * or malformed), PKGSTORE_EIO, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_archive_validate_fd(pkgstore_archive_info **info_out, int fd,
                                              const char *entrypoint,
                                              const pkgstore_archive_options *opts);

/** As pkgstore_archive_validate_fd() for a path. */
PKGSTORE_API int pkgstore_archive_validate_file(pkgstore_archive_info **info_out,
                                                const char *path, const char *entrypoint,
                                                const pkgstore_archive_options *opts);

/* ---- safe extraction ---- */

/**
 * Extract the archive at archive_path below a fresh directory that this
 * call creates inside parent_dir (named "extract.XXXXXX", mode 0700).
 * When entrypoint is NULL every entry is extracted; otherwise only the
 * regular file entrypoint (and the directories above it) is written, but
 * every header is still checked. File modes keep their permission bits
 * (the executable bit included; setuid, setgid and sticky bits are
 * dropped); ownership and timestamps are not restored. Nothing is ever
 * written outside the fresh directory: no path component is followed
 * through a symlink while writing.
 *
 * On success *dir_out receives the fresh directory's path and, when
 * file_out is not NULL and entrypoint is not NULL, *file_out the
 * entrypoint's extracted path; free both with pkgstore_free() and remove
 * the directory with pkgstore_archive_remove_tree() when done. On failure
 * the fresh directory and everything in it are removed and the outputs are
 * NULL.
 * Errors: as pkgstore_archive_validate_fd(), plus PKGSTORE_ENOSPC,
 * PKGSTORE_EDENIED (parent_dir not writable), PKGSTORE_ENOTFOUND
 * (archive_path or parent_dir missing, or no such entrypoint).
 */
PKGSTORE_API int pkgstore_archive_extract_file(char **dir_out, char **file_out,
                                               const char *archive_path,
                                               const char *parent_dir, const char *entrypoint,
                                               const pkgstore_archive_options *opts);

/** As pkgstore_archive_extract_file() reading the archive from fd. */
PKGSTORE_API int pkgstore_archive_extract_fd(char **dir_out, char **file_out, int fd,
                                             const char *parent_dir, const char *entrypoint,
                                             const pkgstore_archive_options *opts);

/**
 * Remove dir and everything below it without following symlinks (rm -rf
 * for extraction directories). A missing dir is a success.
 * Errors: PKGSTORE_EIO, PKGSTORE_EDENIED, PKGSTORE_EINVALID.
 */
PKGSTORE_API int pkgstore_archive_remove_tree(const char *dir);

/* ---- creation ---- */

typedef struct pkgstore_archive_create_options {
    unsigned int version; /* PKGSTORE_ARCHIVE_CREATE_OPTIONS_VERSION */
    int zstd_level;       /* 1..19; 0 = default (9) */
    int keep_metadata;    /* 1: keep mtimes and owners; 0 (default): deterministic
                             output: entries sorted by path, mtime 0, uid/gid 0,
                             no owner names */
} pkgstore_archive_create_options;

#define PKGSTORE_ARCHIVE_CREATE_OPTIONS_VERSION 1
#define PKGSTORE_ARCHIVE_CREATE_OPTIONS_INIT { PKGSTORE_ARCHIVE_CREATE_OPTIONS_VERSION, 0, 0 }

/**
 * Fill *opts with the defaults of options version (1 to
 * PKGSTORE_ARCHIVE_CREATE_OPTIONS_VERSION), the same as
 * PKGSTORE_ARCHIVE_CREATE_OPTIONS_INIT. Errors: PKGSTORE_EINVALID (NULL
 * opts, a version this library does not know).
 */
PKGSTORE_API int pkgstore_archive_create_options_init(pkgstore_archive_create_options *opts,
                                                      unsigned int version);

/**
 * Write a tar+zstd archive (pax format) at out_path holding paths (n of
 * them). Each path is relative to base_dir (NULL: the current directory)
 * and is stored under that same name; a directory is stored with
 * everything below it. Regular files, directories and symlinks are stored;
 * anything else is refused. The archive is written to a temporary file
 * beside out_path, fsynced and renamed into place, so out_path is never
 * partial; an existing out_path is replaced.
 * Errors: PKGSTORE_EINVALID (no paths, an absolute path or a ".."
 * component, a path listed twice), PKGSTORE_ENOTFOUND (a missing input),
 * PKGSTORE_EUNSAFE (a device node, FIFO or socket, or a symlink leaving the
 * archive), PKGSTORE_ENOSPC, PKGSTORE_EIO, PKGSTORE_EDENIED, PKGSTORE_ENOMEM.
 */
PKGSTORE_API int pkgstore_archive_create_tar_zstd(const char *out_path, const char *base_dir,
                                                  const char *const *paths, size_t n,
                                                  const pkgstore_archive_create_options *opts);

#ifdef __cplusplus
}
#endif

#endif
