/*
 * Test helpers: a small tmpfs to fill up, mounted in a mount namespace of
 * the calling process alone (call it in a forked child: the mount vanishes
 * with it and never reaches the rest of the machine).
 */
#ifndef TEST_SMALL_DISK_H
#define TEST_SMALL_DISK_H

#include <sys/types.h>

/* Mount a tmpfs of size (e.g. "2m") at dir: as root, or in a user
 * namespace of our own when unprivileged ones are allowed. 0, or -1 with
 * errno (the caller says why it cannot test). */
int small_disk_mount(const char *dir, const char *size);

/* Fill the filesystem through the file at path until it is full, then free
 * keep bytes of it again. 0, or -1. */
int small_disk_fill(const char *path, off_t keep);

/* The exit status of small_disk_run() when no tmpfs could be mounted. */
#define SMALL_DISK_UNAVAILABLE 77

/* In a forked child: mount a tmpfs of size at dir (which exists) and exit
 * with child(dir). Returns that exit status, SMALL_DISK_UNAVAILABLE (with
 * the reason on stderr), or 128 + the signal that killed the child. */
int small_disk_run(const char *dir, const char *size, int (*child)(const char *dir));

/* A cmocka test around small_disk_run() on a 2 MiB tmpfs at parent/small:
 * fails unless child returns 0, and skips (saying so) only when no tmpfs
 * can be mounted here (neither root nor user namespaces). */
void small_disk_test(const char *parent, int (*child)(const char *dir));

#endif
