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

#endif
