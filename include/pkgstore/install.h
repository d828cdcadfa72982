/*
 * pkgstore/install.h - the agent's file operations: verify a download,
 * prepare its executable, install it at the live path keeping a ".bak",
 * restore the ".bak", and write small files atomically.
 *
 * Invariant: at every instant (a crash included) the live path is either
 * absent (before the very first install) or a complete executable, the old
 * one or the new one. Every change of the live path is a rename() of a
 * fully written and fsynced file in the same directory, followed by an
 * fsync of the directory. Temporary files are "<live>.bak.tmp",
 * "<live>.new.tmp" and "<live>.restore.tmp"; a crash may leave them
 * behind, and the next call replaces them.
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

/**
 * Install new_exe at live_path, keeping the previous live file as
 * "<live_path>.bak":
 *   1. if live_path exists: copy it to "<live>.bak.tmp", fsync, rename to
 *      "<live>.bak", fsync the directory;
 *   2. copy new_exe to "<live>.new.tmp" (mode 0755), fsync, rename over
 *      live_path, fsync the directory.
 * new_exe is left in place (it may be on another filesystem). If live_path
 * does not exist yet, no .bak is written and an older .bak is kept.
 * On failure live_path is unchanged (or already the complete new file, if
 * only the final directory fsync failed) and temporary files are removed.
 * Errors: PKGSTORE_ENOTFOUND (new_exe missing, or the directory of
 * live_path), PKGSTORE_EINVALID (new_exe is not a regular file, or a bad
 * argument), PKGSTORE_ENOSPC, PKGSTORE_EDENIED, PKGSTORE_EIO.
 */
PKGSTORE_API int pkgstore_install_swap(const char *live_path, const char *new_exe);

/**
 * Put "<live_path>.bak" back over live_path atomically: copy the .bak to
 * "<live>.restore.tmp", fsync, rename over live_path, fsync the directory.
 * The .bak is kept (a second restore gives the same result).
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

#ifdef __cplusplus
}
#endif

#endif
