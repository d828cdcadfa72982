/*
 * pkgstore/install.h - the agent's file operations: verify a download,
 * prepare its executable, install it at the live path keeping a ".bak",
 * restore the ".bak", and write small files atomically.
 *
 * Invariant: at every instant (a crash included) the live path is either
 * absent (before the very first install) or a complete executable, the old
 * one or the new one, and "<live>.bak", when present, is a complete
 * previous executable. Every change of those paths is a rename() of a name
 * whose content is complete and durable (a fsynced copy, a second hard link
 * of a durable file, or the fsynced new file itself), followed by an fsync
 * of the directory. Temporary names are "<live>.bak.tmp", "<live>.new.tmp"
 * and "<live>.restore.tmp"; a crash may leave them behind, and the next
 * call replaces them.
 *
 * The .bak and a restored live file are hard links where the filesystem
 * has them (a copy elsewhere): the old binary is never copied. Replace a
 * live binary by hand with a rename (install(1), mv), never by writing into
 * it (cp without --remove-destination), or the .bak changes with it.
 */
#ifndef PKGSTORE_INSTALL_H
#define PKGSTORE_INSTALL_H

#include "common.h"
#include "digest.h"
#include "archive.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Check a downloaded file: its size must not exceed max_size (0: no limit)
 * and its SHA-256 must equal *expected.
 * *actual_out (may be NULL) receives the digest computed (zeroed when the
 * file was not hashed).
 * Errors: PKGSTORE_ESIZE_MISMATCH (larger than max_size; checked before
 * hashing), PKGSTORE_EDIGEST_MISMATCH (detail: expected and actual),
 * PKGSTORE_ENOTFOUND, PKGSTORE_EDENIED, PKGSTORE_EIO, PKGSTORE_EINVALID.
 */
PKGSTORE_API int pkgstore_install_verify(pkgstore_digest *actual_out, const char *path,
                                         const pkgstore_digest *expected, uint64_t max_size);

/**
 * Turn a verified download into an executable file.
 * - format PKGSTORE_ARCHIVE_BINARY: the download itself is the executable;
 *   it is made executable (mode 0755) and *exe_out is a copy of
 *   download_path; *dir_out is NULL.
 * - an archive format: the entrypoint is extracted safely (see
 *   pkgstore_archive_extract_file(), with opts, NULL: defaults) below a
 *   fresh directory inside work_dir; *exe_out is the extracted file (mode
 *   forced to include 0755's executable bits) and *dir_out the fresh
 *   directory, which the caller removes with pkgstore_archive_remove_tree()
 *   once the executable is installed.
 * - PKGSTORE_ARCHIVE_UNKNOWN: the format is detected from the content.
 * A declared format that differs from the detected one is refused.
 * Free *exe_out and *dir_out with pkgstore_free(). On failure both are NULL
 * and nothing is left in work_dir.
 * Errors: PKGSTORE_EFORMAT (format mismatch or not an archive),
 * PKGSTORE_EINVALID (an archive format without entrypoint),
 * the errors of pkgstore_archive_extract_file(), PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_install_prepare(char **exe_out, char **dir_out,
                                          const char *download_path,
                                          pkgstore_archive_format format,
                                          const char *entrypoint, const char *work_dir,
                                          const pkgstore_archive_options *opts);

/** new_exe may be moved onto the live path instead of copied (see
 * pkgstore_install_swap_ext()). */
#define PKGSTORE_INSTALL_MOVE 0x1u

/**
 * Options of pkgstore_install_swap_ext() and pkgstore_install_check().
 * A zeroed struct, or NULL, means the defaults.
 */
typedef struct pkgstore_install_options {
    unsigned int version; /* PKGSTORE_INSTALL_OPTIONS_VERSION (0 is taken as 1) */
    unsigned int flags;   /* 0 or PKGSTORE_INSTALL_MOVE */
    /*
     * Called before each durable step with its name: "bak:link",
     * "bak:rename", "bak:dirsync" (the .bak), "bak:write", "bak:fsync"
     * (the .bak where hard links are not supported), "new:fsync",
     * "new:rename", "new:dirsync" (a moved new file), "new:write" (a copied
     * one, then "new:fsync", "new:rename", "new:dirsync"). A negative
     * return stops the operation at that step with that code, through its
     * normal error path (the detail names the step). For timing, tracing
     * and fault injection in a program's own tests. NULL: none.
     */
    int (*step)(const char *step, void *payload);
    void *payload;
} pkgstore_install_options;

#define PKGSTORE_INSTALL_OPTIONS_VERSION 1
#define PKGSTORE_INSTALL_OPTIONS_INIT { PKGSTORE_INSTALL_OPTIONS_VERSION, 0, NULL, NULL }

/** Set *opts to the defaults (PKGSTORE_INSTALL_OPTIONS_INIT). */
PKGSTORE_API void pkgstore_install_options_init(pkgstore_install_options *opts);

/**
 * Install new_exe at live_path, keeping the previous live file as
 * "<live_path>.bak":
 *   1. if live_path exists: link it to "<live>.bak.tmp" (where hard links
 *      are not supported: copy it there and fsync), rename that to
 *      "<live>.bak", fsync the directory;
 *   2. with PKGSTORE_INSTALL_MOVE and new_exe on live_path's filesystem:
 *      chmod new_exe 0755, fsync it and rename it over live_path (new_exe
 *      is gone: it is the live file now); otherwise copy new_exe to
 *      "<live>.new.tmp" (mode 0755), fsync, rename over live_path, and
 *      leave new_exe in place. Then fsync the directory.
 * If live_path does not exist yet, no .bak is written and an older .bak is
 * kept. On failure live_path is unchanged (or already the complete new
 * file, if only the final directory fsync failed) and temporary files are
 * removed. opts may be NULL.
 * Errors: PKGSTORE_ENOTFOUND (new_exe missing, or the directory of
 * live_path), PKGSTORE_EINVALID (new_exe is not a regular file, or a bad
 * argument), PKGSTORE_ENOSPC, PKGSTORE_EDENIED, PKGSTORE_EIO, and the code
 * of a step hook that refused a step.
 */
PKGSTORE_API int pkgstore_install_swap_ext(const char *live_path, const char *new_exe,
                                           const pkgstore_install_options *opts);

/** pkgstore_install_swap_ext() with the defaults: new_exe is copied. */
PKGSTORE_API int pkgstore_install_swap(const char *live_path, const char *new_exe);

/**
 * Check, without changing anything visible, what pkgstore_install_swap_ext()
 * with the same arguments needs, so that a caller can find out before it
 * stops the program it is about to replace:
 * - new_exe is a regular file; live_path is absent or a regular file;
 * - "<live>.bak", "<live>.bak.tmp" and "<live>.new.tmp" are not directories;
 * - the directory takes a new file (a probe file is created, hard-linked
 *   and removed);
 * - it has room for what the swap would copy (new_exe unless it can be
 *   moved, the old file where hard links are not supported) plus 1 MiB.
 * Errors: PKGSTORE_ENOTFOUND, PKGSTORE_EINVALID (detail names the path),
 * PKGSTORE_EDENIED (detail: "directory not writable: Read-only file
 * system", ...), PKGSTORE_ENOSPC (detail: bytes needed and available),
 * PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_install_check(const char *live_path, const char *new_exe,
                                        const pkgstore_install_options *opts);

/**
 * Put "<live_path>.bak" back over live_path atomically: link the .bak to
 * "<live>.restore.tmp" (a fsynced copy where hard links are not supported),
 * rename over live_path, fsync the directory. The .bak is kept (a second
 * restore gives the same result).
 * Errors: PKGSTORE_ENOTFOUND (no .bak), PKGSTORE_ENOSPC, PKGSTORE_EDENIED,
 * PKGSTORE_EIO, PKGSTORE_EINVALID.
 */
PKGSTORE_API int pkgstore_install_restore(const char *live_path);

/**
 * 1 if "<live_path>.bak" exists as a regular file, 0 if not, or a negative
 * error (PKGSTORE_EIO, PKGSTORE_EINVALID).
 */
PKGSTORE_API int pkgstore_install_has_backup(const char *live_path);

/**
 * Replace path with len bytes of data atomically and durably: write
 * "<path>.tmp" with mode (e.g. 0600), fsync, rename over path, fsync the
 * directory. Readers see the old content or the new, never a mix (the
 * agent's journal).
 * Errors: PKGSTORE_ENOSPC, PKGSTORE_EDENIED, PKGSTORE_ENOTFOUND (the
 * directory is missing), PKGSTORE_EIO, PKGSTORE_EINVALID.
 */
PKGSTORE_API int pkgstore_install_write_atomic(const char *path, const void *data, size_t len,
                                               unsigned int mode);

/**
 * Copy the file at src to dst atomically and durably (same steps as
 * pkgstore_install_write_atomic(), through "<dst>.tmp"), with mode.
 * Errors: as pkgstore_install_write_atomic(), plus PKGSTORE_ENOTFOUND for a
 * missing src.
 */
PKGSTORE_API int pkgstore_install_copy_atomic(const char *dst, const char *src, unsigned int mode);

/**
 * Make dst name the content of src atomically and durably without copying
 * it: src is fsynced, hard-linked to "<dst>.tmp" and renamed over dst, then
 * the directory is fsynced. Where hard links are not supported (another
 * filesystem, vfat, ...) it is copied instead, as
 * pkgstore_install_copy_atomic() with src's mode. dst and src are then two
 * names of one file: write neither in place.
 * Errors: as pkgstore_install_copy_atomic().
 */
PKGSTORE_API int pkgstore_install_link_atomic(const char *dst, const char *src);

#ifdef __cplusplus
}
#endif

#endif
