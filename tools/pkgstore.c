/*
 * pkgstore: the front command. "pkgstore CMD ARGS..." runs pkgstore-CMD
 * with ARGS, git style: first the pkgstore-CMD beside this executable (so an
 * unpacked or uninstalled build runs its own tools), then one on PATH.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pkgstore.h>

static const char usage_text[] =
    "Usage: pkgstore COMMAND [ARGS...]\n"
    "       pkgstore help COMMAND\n"
    "Run pkgstore-COMMAND with ARGS: the one installed beside pkgstore first,\n"
    "then one found on PATH.\n"
    "\n"
    "Commands:\n"
    "  add        add a blob or an artifact of a package (pkgstore-add)\n"
    "  show       list packages and versions, show a manifest\n"
    "  resolve    the artifact a node of a platform would get\n"
    "  cat        a blob's bytes to standard output\n"
    "  rm         remove a version of a package\n"
    "  ls         list blobs and package records\n"
    "  verify     check blobs against their digests\n"
    "  gc         remove blobs nothing references\n"
    "  pack       make a .tar.zst archive\n"
    "  push       upload to a pkgstored server\n"
    "  policy     manage upgrade policies on a pkgstored server\n"
    "Each has --help and a man page, pkgstore-COMMAND(1).\n"
    "\n"
    "  --help      show this help\n"
    "  --version   show the program version\n"
    "\n"
    "Exit status: that of the command; 2 for a usage error or an unknown command.\n";

/* Commands are [a-z0-9][a-z0-9-]*: never a path, never an option. */
static int valid_command(const char *command)
{
    if (!command[0] || command[0] == '-' || strlen(command) > 64)
        return 0;
    for (const char *p = command; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
    return 1;
}

/* The directory of this executable into dir (empty when unknown). */
static void own_dir(char *dir, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", dir, size - 1);
    if (n <= 0 || (size_t)n >= size - 1) {
        dir[0] = '\0';
        return;
    }
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        dir[0] = '\0';
}

int main(int argc, char **argv)
{
    char program[96], dir[PATH_MAX], beside[PATH_MAX + 96];
    int help = 0;

    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    const char *command = argv[1];
    if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (strcmp(command, "--version") == 0) {
        printf("pkgstore (pkgstore) %s\n", pkgstore_library_version());
        return 0;
    }
    if (strcmp(command, "help") == 0) {
        if (argc < 3) {
            fputs(usage_text, stdout);
            return 0;
        }
        command = argv[2];
        help = 1;
    }
    if (!valid_command(command)) {
        fprintf(stderr, "pkgstore: %s: not a command (try pkgstore --help)\n", command);
        return 2;
    }
    snprintf(program, sizeof(program), "pkgstore-%s", command);

    /* argv for the command: program name, then the rest (or --help) */
    char *help_argv[] = {program, "--help", NULL};
    char **command_argv = help ? help_argv : argv + 1;
    if (!help)
        command_argv[0] = program;

    own_dir(dir, sizeof(dir));
    if (dir[0]) {
        snprintf(beside, sizeof(beside), "%s/%s", dir, program);
        if (access(beside, X_OK) == 0) {
            execv(beside, command_argv);
            fprintf(stderr, "pkgstore: %s: %s\n", beside, strerror(errno));
            return 126;
        }
    }
    execvp(program, command_argv);
    if (errno == ENOENT) {
        fprintf(stderr, "pkgstore: %s: not a pkgstore command (no %s beside %s or on PATH)\n",
                command, program, dir[0] ? dir : "pkgstore");
        return 2;
    }
    fprintf(stderr, "pkgstore: %s: %s\n", program, strerror(errno));
    return 126;
}
