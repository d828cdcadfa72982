/*
 * Test helpers: a small filesystem of the test's own, to run out of space
 * on (see small_disk.h).
 */
#include "small_disk.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int small_disk_mount(const char *dir, const char *size)
{
    char options[64], map[64];
    uid_t uid = geteuid();
    gid_t gid = getegid();
    int fd;
    if (uid != 0) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
            return -1;
        if ((fd = open("/proc/self/setgroups", O_WRONLY)) >= 0) {
            (void)!write(fd, "deny", 4);
            close(fd);
        }
        snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
        if ((fd = open("/proc/self/uid_map", O_WRONLY)) < 0 || write(fd, map, strlen(map)) < 0)
            return -1;
        close(fd);
        snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
        if ((fd = open("/proc/self/gid_map", O_WRONLY)) < 0 || write(fd, map, strlen(map)) < 0)
            return -1;
        close(fd);
    } else if (unshare(CLONE_NEWNS) != 0) {
        return -1;
    }
    /* nothing mounted here reaches the parent's namespace */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return -1;
    snprintf(options, sizeof(options), "size=%s", size);
    return mount("tmpfs", dir, "tmpfs", 0, options);
}

int small_disk_fill(const char *path, off_t keep)
{
    static char chunk[65536];
    off_t size = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    for (size_t step = sizeof(chunk); step >= 512; step /= 2) {
        ssize_t n;
        while ((n = write(fd, chunk, step)) > 0)
            size += n;
    }
    int ok = errno == ENOSPC && ftruncate(fd, size > keep ? size - keep : 0) == 0;
    close(fd);
    return ok ? 0 : -1;
}

int small_disk_run(const char *dir, const char *size, int (*child)(const char *dir))
{
    int status = 0;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (small_disk_mount(dir, size) != 0) {
            fprintf(stderr, "cannot mount a private tmpfs: %s\n", strerror(errno));
            _exit(SMALL_DISK_UNAVAILABLE);
        }
        _exit(child(dir));
    }
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void small_disk_test(const char *parent, int (*child)(const char *dir))
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/small", parent);
    assert_int_equal(mkdir(dir, 0755), 0);
    int status = small_disk_run(dir, "2m", child);
    if (status == SMALL_DISK_UNAVAILABLE) {
        print_message("SKIP: no private tmpfs here (neither root nor user namespaces)\n");
        skip();
    }
    assert_int_equal(status, 0);
}
