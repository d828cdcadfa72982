/*
 * replay: a main() for the libFuzzer harnesses without libFuzzer, so that
 * `make test` (and `make asan`) replays every committed corpus with any C
 * compiler. Each argument is a file or a directory (walked recursively);
 * every regular file is fed once to LLVMFuzzerTestOneInput. A finding aborts
 * the process (the harness's __builtin_trap() or a sanitizer), which makes
 * the exit status non-zero; the file being replayed is printed first.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static size_t files_run;
static size_t bytes_run;
static int failures;
static const char *current_path;

/* A harness assertion (__builtin_trap: SIGILL) or a sanitizer report
 * (SIGABRT) ends the process: name the input first, then die as before.
 * SIGSEGV is left to the sanitizers' own handlers. */
static void on_crash(int sig)
{
    static const char prefix[] = "replay: crashed on input ";
    if (current_path != NULL) {
        ssize_t ignored = write(2, prefix, sizeof(prefix) - 1);
        ignored = write(2, current_path, strlen(current_path));
        ignored = write(2, "\n", 1);
        (void)ignored;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    size_t size = 0, cap = 0;
    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (;;) {
        size_t n;
        if (size == cap) {
            uint8_t *bigger;
            cap = cap ? cap * 2 : 4096;
            bigger = realloc(data, cap);
            if (bigger == NULL) {
                fprintf(stderr, "replay: %s: out of memory\n", path);
                free(data);
                fclose(f);
                return -1;
            }
            data = bigger;
        }
        n = fread(data + size, 1, cap - size, f);
        size += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        fprintf(stderr, "replay: %s: read error\n", path);
        free(data);
        fclose(f);
        return -1;
    }
    fclose(f);
    /* Say which input is running so a crash can be traced to its file. */
    if (getenv("REPLAY_VERBOSE") != NULL)
        fprintf(stderr, "replay: %s (%zu bytes)\n", path, size);
    /* Copy to an exact-size buffer so ASan catches reads past the input. */
    {
        uint8_t *exact = malloc(size ? size : 1);
        if (exact == NULL) {
            free(data);
            return -1;
        }
        if (size > 0)
            memcpy(exact, data, size);
        free(data);
        current_path = path;
        LLVMFuzzerTestOneInput(exact, size);
        current_path = NULL;
        free(exact);
    }
    files_run++;
    bytes_run += size;
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path)
{
    struct stat st;
    DIR *dir;
    struct dirent *entry;
    char **names = NULL;
    size_t count = 0, cap = 0;
    int result = 0;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return S_ISREG(st.st_mode) ? run_file(path) : 0;
    dir = opendir(path);
    if (dir == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while ((entry = readdir(dir)) != NULL) {
        char *full;
        size_t len;
        if (entry->d_name[0] == '.')
            continue; /* ".", ".." and hidden files such as .gitkeep */
        if (count == cap) {
            char **bigger;
            cap = cap ? cap * 2 : 64;
            bigger = realloc(names, cap * sizeof(*names));
            if (bigger == NULL) {
                fprintf(stderr, "replay: out of memory\n");
                result = -1;
                break;
            }
            names = bigger;
        }
        len = strlen(path) + strlen(entry->d_name) + 2;
        full = malloc(len);
        if (full == NULL) {
            fprintf(stderr, "replay: out of memory\n");
            result = -1;
            break;
        }
        snprintf(full, len, "%s/%s", path, entry->d_name);
        names[count++] = full;
    }
    closedir(dir);
    /* A fixed order makes failures reproducible. */
    qsort(names, count, sizeof(*names), compare_names);
    for (size_t i = 0; i < count; i++) {
        if (run_path(names[i]) < 0)
            result = -1;
        free(names[i]);
    }
    free(names);
    return result;
}

int main(int argc, char **argv)
{
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", name);
        return 2;
    }
    signal(SIGILL, on_crash);
    signal(SIGABRT, on_crash);
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++)
        if (run_path(argv[i]) < 0)
            failures++;
    printf("%s: replayed %zu input%s (%zu bytes)%s\n", name, files_run, files_run == 1 ? "" : "s",
           bytes_run, failures ? ", with unreadable paths" : "");
    if (files_run == 0) {
        fprintf(stderr, "%s: no corpus input found\n", name);
        return 1;
    }
    return failures ? 1 : 0;
}
