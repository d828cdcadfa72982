/*
 * Private: what install.c and install_files.c share, and the fault
 * injection of the test build.
 *
 * In a library built with -DPKGSTORE_TEST_HOOKS (libpkgstore-test.a, which
 * the unit tests link; the release libraries have none of this), every
 * checkpoint of install_files.c (writing a temporary file, its fsync, a
 * link, a rename, the directory fsync) is a numbered crash point, counted
 * from 1 per thread since the last ps_install_set_fault(). Arming point n
 * makes the n-th point reached fail with PKGSTORE_EINTERNAL ("injected
 * fault at <point>"):
 *   PS_INSTALL_FAULT_FAIL   through the normal error path (cleanup runs);
 *   PS_INSTALL_FAULT_CRASH  at once, leaving every file exactly as a
 *                           killed process would (a partial temporary file
 *                           included), to prove the live path survives.
 * Tests loop n = 1, 2, ... until the operation completes without reaching
 * the armed point (ps_install_fault_hit() == 0). Programs use the public
 * step hook (pkgstore_install_options.step) instead.
 */
#ifndef PS_INSTALL_H
#define PS_INSTALL_H

#include "pkgstore/install.h"

#include <sys/stat.h>

/* Open name (relative to dirfd) read-only; refuse anything but a regular
 * file. display names it in errors. */
int ps_install_open_regular(int *fd_out, struct stat *st, int dirfd, const char *name,
                            const char *display);

#ifdef PKGSTORE_TEST_HOOKS
enum { PS_INSTALL_FAULT_FAIL = 1, PS_INSTALL_FAULT_CRASH = 2 };

/* Arm crash point n (0 disarms) in mode; resets the counter and the hit flag. */
void ps_install_set_fault(int n, int mode);

/* Arm the point named point ("new:dirsync", ...) instead of counting;
 * every time it is reached it fails in mode. NULL or "" disarms. */
void ps_install_set_fault_point(const char *point, int mode);

/* 1 if the armed point was reached since ps_install_set_fault(). */
int ps_install_fault_hit(void);

/* The name of the last crash point reached ("bak:link", "new:rename", ...). */
const char *ps_install_fault_point(void);

/* 1: behave as on a filesystem without hard links (the copy fallbacks). */
void ps_install_set_no_links(int on);
#endif

#endif
