/*
 * Process supervision: the agent's signals arrive on a signalfd (no work in
 * signal handlers), children run in their own process groups, exits are
 * reaped in one place and supervised children restart with a capped
 * exponential backoff. Every child carries the agent's child marker; the
 * short-lived ones (validation, the helper) also die with the agent.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define MAX_PROCS 64

static int signal_fd = -1;
static int stop_signal;
static agent_proc *procs[MAX_PROCS];
static char *marker_dir;

void agent_proc_set_marker_dir(const char *state_dir)
{
    free(marker_dir);
    marker_dir = state_dir ? strdup(state_dir) : NULL;
}

/* envp (NULL: the agent's own environment) with the child marker added
 * unless it has one: "<state_dir>/<name>" with the name's ':' and '/'
 * turned into '-'. NULL when there is nothing to add or no memory. */
static char **with_marker(char **envp, const char *name)
{
    char **base = envp ? envp : environ;
    size_t n = 0;
    if (!marker_dir)
        return NULL;
    for (; base[n]; n++)
        if (!strncmp(base[n], AGENT_CHILD_MARKER, sizeof AGENT_CHILD_MARKER - 1))
            return NULL;
    char **out = calloc(n + 2, sizeof *out);
    char *marker = agent_strdup_printf(AGENT_CHILD_MARKER "%s/%s", marker_dir, name ? name : "child");
    if (!out || !marker) {
        free(out);
        free(marker);
        return NULL;
    }
    for (char *p = marker + strlen(AGENT_CHILD_MARKER) + strlen(marker_dir) + 1; *p; p++)
        if (*p == ':' || *p == '/')
            *p = '-';
    memcpy(out, base, n * sizeof *out);
    out[n] = marker;
    return out;
}

int agent_signals_init(void)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGHUP);
    /* An ignored signal never reaches a signalfd, and an ignored SIGCHLD
     * makes the kernel reap children behind our back: a disposition
     * inherited as SIG_IGN (a shell's background job ignores SIGINT and
     * SIGQUIT) is reset first. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        return agent_error_set(PKGSTORE_EIO, "sigprocmask: %s", strerror(errno));
    signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd < 0)
        return agent_error_set(PKGSTORE_EIO, "signalfd: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int agent_stop_requested(void)
{
    return stop_signal != 0;
}

int agent_stop_signal(void)
{
    return stop_signal;
}

void agent_proc_register(agent_proc *proc)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i] == proc)
            return;
    for (int i = 0; i < MAX_PROCS; i++)
        if (!procs[i]) {
            procs[i] = proc;
            return;
        }
}

void agent_proc_unregister(agent_proc *proc)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i] == proc)
            procs[i] = NULL;
}

void agent_describe_status(char *buf, size_t len, int status)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "status 0x%x", (unsigned)status);
}

static double backoff_delay(const agent_proc *proc)
{
    double delay = proc->backoff_initial_s;
    for (unsigned i = 1; i < proc->failures && delay < proc->backoff_max_s; i++)
        delay *= 2;
    return delay > proc->backoff_max_s ? proc->backoff_max_s : delay;
}

static void reap(void)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (int i = 0; i < MAX_PROCS; i++) {
            agent_proc *proc = procs[i];
            if (!proc || proc->pid != pid)
                continue;
            /* Children with their own group may have left grandchildren
             * behind; take the whole group down with the leader. */
            kill(-pid, SIGKILL);
            proc->pid = 0;
            proc->exited = 1;
            proc->wait_status = status;
            double ran = agent_now() - proc->started_at;
            proc->last_run_s = ran;
            if (proc->supervised) {
                char how[96];
                agent_describe_status(how, sizeof how, status);
                if (ran >= proc->backoff_reset_s)
                    proc->failures = 0;
                proc->failures++;
                double delay = backoff_delay(proc);
                proc->restart_at = agent_now() + delay;
                agent_log("warn", "msg=\"child exited, restarting with backoff\" name=%s pid=%ld "
                                  "status=\"%s\" ran_s=%.1f restart_in_s=%.2f failures=%u",
                          proc->name, (long)pid, how, ran, delay, proc->failures);
                if (proc->on_event)
                    proc->on_event(proc, 0, proc->payload);
            }
        }
    }
}

static void restart_due(void)
{
    double now = agent_now();
    for (int i = 0; i < MAX_PROCS; i++) {
        agent_proc *proc = procs[i];
        if (!proc || !proc->supervised || proc->pid || !proc->restart_at || proc->restart_at > now)
            continue;
        proc->restart_at = 0;
        if (agent_proc_spawn(proc) < 0) {
            proc->failures++;
            double delay = backoff_delay(proc);
            proc->restart_at = now + delay;
            agent_log("error", "msg=\"cannot start child\" name=%s error=\"%s\" retry_in_s=%.2f",
                      proc->name, agent_error(), delay);
            if (proc->on_event)
                proc->on_event(proc, 1, proc->payload);
        }
    }
}

double agent_proc_next_restart(void)
{
    double next = 0;
    for (int i = 0; i < MAX_PROCS; i++) {
        agent_proc *proc = procs[i];
        if (proc && proc->supervised && !proc->pid && proc->restart_at &&
            (!next || proc->restart_at < next))
            next = proc->restart_at;
    }
    return next;
}

int agent_pump(double timeout_s)
{
    double next = agent_proc_next_restart();
    if (next) {
        double until = next - agent_now();
        if (until < timeout_s)
            timeout_s = until;
    }
    if (timeout_s < 0)
        timeout_s = 0;
    if (timeout_s > 3600) /* poll() takes an int of ms; callers loop anyway */
        timeout_s = 3600;
    struct pollfd pfd = {.fd = signal_fd, .events = POLLIN};
    int n = poll(&pfd, 1, (int)(timeout_s * 1000 + 0.999));
    if (n > 0) {
        struct signalfd_siginfo info;
        while (read(signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
            if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
                if (!stop_signal)
                    agent_log("info", "msg=\"stop requested\" signal=%u", info.ssi_signo);
                stop_signal = (int)info.ssi_signo;
            }
        }
    }
    reap();
    if (!stop_signal)
        restart_due();
    return stop_signal != 0;
}

/* Free what with_marker() returned: the array and the marker it added. */
static void free_marked(char **marked)
{
    if (!marked)
        return;
    size_t n = 0;
    while (marked[n])
        n++;
    if (n)
        free(marked[n - 1]);
    free(marked);
}

static int spawned(agent_proc *proc, pid_t pid);

/* fork + exec for a child that must die with the agent: posix_spawn
 * cannot set PR_SET_PDEATHSIG. An exec failure comes back through a
 * close-on-exec pipe, as posix_spawn reports it. 0, or an errno value. */
static int spawn_tied(pid_t *pid_out, const agent_proc *proc, char **envp)
{
    int report[2];
    pid_t parent = getpid();
    if (pipe2(report, O_CLOEXEC) < 0)
        return errno;
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(report[0]);
        close(report[1]);
        return err;
    }
    if (pid == 0) {
        sigset_t empty;
        sigemptyset(&empty);
        int err = 0;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(127); /* the agent is gone already */
        setpgid(0, 0);
        for (int sig = 1; sig < NSIG; sig++)
            signal(sig, SIG_DFL);
        sigprocmask(SIG_SETMASK, &empty, NULL);
        if (proc->input_fd > 0)
            err = dup2(proc->input_fd, 0) < 0 ? errno : 0;
        else {
            int null_fd = open("/dev/null", O_RDONLY);
            if (null_fd < 0 || dup2(null_fd, 0) < 0)
                err = errno;
        }
        if (!err && proc->output_fd >= 0 &&
            (dup2(proc->output_fd, 1) < 0 || (!proc->stdout_only && dup2(proc->output_fd, 2) < 0)))
            err = errno;
        if (!err) {
            execve(proc->argv[0], proc->argv, envp);
            err = errno;
        }
        ssize_t ignored = write(report[1], &err, sizeof err);
        (void)ignored;
        _exit(127);
    }
    close(report[1]);
    int err = 0;
    ssize_t n;
    do
        n = read(report[0], &err, sizeof err);
    while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof err) {
        /* exec failed: the child exits at once; reap it here */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return err ? err : ENOEXEC;
    }
    *pid_out = pid; /* it set its own process group before exec */
    return 0;
}

int agent_proc_spawn(agent_proc *proc)
{
    if (proc->pid)
        return 0;
    char **marked = with_marker(proc->envp, proc->name);
    char **envp = marked ? marked : proc->envp ? proc->envp : environ;
    pid_t pid;
    if (proc->die_with_agent) {
        int err = spawn_tied(&pid, proc, envp);
        free_marked(marked);
        if (err) {
            proc->spawn_errno = err;
            return agent_error_set(PKGSTORE_EIO, "%s: spawn: %s", proc->argv[0], strerror(err));
        }
        return spawned(proc, pid);
    }
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t actions;
    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                         POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &all);
    if (proc->input_fd > 0)
        posix_spawn_file_actions_adddup2(&actions, proc->input_fd, 0);
    else
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (proc->output_fd >= 0) {
        posix_spawn_file_actions_adddup2(&actions, proc->output_fd, 1);
        if (!proc->stdout_only)
            posix_spawn_file_actions_adddup2(&actions, proc->output_fd, 2);
    }
    int err = posix_spawn(&pid, proc->argv[0], &actions, &attr, proc->argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    free_marked(marked);
    if (err) {
        proc->spawn_errno = err;
        return agent_error_set(PKGSTORE_EIO, "%s: spawn: %s", proc->argv[0], strerror(err));
    }
    return spawned(proc, pid);
}

/* Book-keeping of a started child. */
static int spawned(agent_proc *proc, pid_t pid)
{
    proc->spawn_errno = 0;
    proc->pid = pid;
    proc->exited = 0;
    proc->wait_status = 0;
    proc->started_at = agent_now();
    proc->restart_at = 0;
    agent_proc_register(proc);
    if (proc->pid_file) {
        char text[32];
        int n = snprintf(text, sizeof text, "%ld\n", (long)pid);
        if (pkgstore_install_write_atomic(proc->pid_file, text, (size_t)n, 0644) < 0)
            agent_log("warn", "msg=\"cannot write pid file\" path=%s error=\"%s\"",
                      proc->pid_file, pkgstore_error_detail());
    }
    if (!proc->quiet)
        agent_log("info", "msg=\"child started\" name=%s pid=%ld exe=%s", proc->name, (long)pid,
                  proc->argv[0]);
    return 0;
}

void agent_proc_stop(agent_proc *proc, int sig, double timeout_s)
{
    proc->supervised = 0;
    proc->restart_at = 0;
    if (!proc->pid)
        return;
    pid_t pid = proc->pid;
    kill(-pid, sig);
    double deadline = agent_now() + timeout_s;
    while (proc->pid && agent_now() < deadline)
        agent_pump(0.05 < deadline - agent_now() ? 0.05 : deadline - agent_now());
    if (proc->pid) {
        agent_log("warn", "msg=\"child ignored the stop signal, killing\" name=%s pid=%ld "
                          "stop_timeout_s=%.1f", proc->name, (long)pid, timeout_s);
        kill(-pid, SIGKILL);
        while (proc->pid)
            agent_pump(0.05);
    }
    char how[96];
    agent_describe_status(how, sizeof how, proc->wait_status);
    agent_log("info", "msg=\"child stopped\" name=%s pid=%ld status=\"%s\"", proc->name, (long)pid,
              how);
}

void agent_argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}

void agent_proc_set_argv(agent_proc *proc, char **argv)
{
    agent_argv_free(proc->argv);
    proc->argv = argv;
}

/* ------------------------------------------------------------------ run to completion */

static void run_kill(agent_proc *proc)
{
    if (!proc->pid)
        return;
    kill(-proc->pid, SIGKILL);
    while (proc->pid)
        agent_pump(0.05);
}

int agent_run(const agent_run_opts *opts, agent_run_result *result)
{
    memset(result, 0, sizeof *result);
    int out[2] = {-1, -1}, in[2] = {-1, -1};
    if (pipe2(out, O_CLOEXEC) < 0 || (opts->input && pipe2(in, O_CLOEXEC) < 0)) {
        int err = errno;
        if (out[0] >= 0) {
            close(out[0]);
            close(out[1]);
        }
        return agent_error_set(PKGSTORE_EIO, "%s: pipe: %s", opts->name, strerror(err));
    }
    /* A program run to completion (a validation, the helper) must not
     * outlive the agent: a restarted agent would meet it still executing
     * what it is about to replace. */
    agent_proc proc = {.name = (char *)opts->name, .argv = opts->argv, .envp = opts->envp,
                       .output_fd = out[1], .stdout_only = !opts->merge_stderr,
                       .input_fd = in[0], .quiet = 1, .die_with_agent = 1};
    int rc = agent_proc_spawn(&proc);
    close(out[1]);
    if (in[0] >= 0)
        close(in[0]);
    if (rc < 0) {
        close(out[0]);
        if (in[1] >= 0)
            close(in[1]);
        return rc;
    }
    if (in[1] >= 0)
        fcntl(in[1], F_SETFL, O_NONBLOCK);
    size_t max = opts->max_output ? opts->max_output : 65536, cap = 4096, sent = 0;
    result->output = malloc(cap + 1);
    if (result->output)
        result->output[0] = '\0';
    double deadline = opts->timeout_s > 0 ? agent_now() + opts->timeout_s : 0;
    while (out[0] >= 0 || proc.pid) {
        struct pollfd pfd[3] = {{.fd = signal_fd, .events = POLLIN},
                                {.fd = out[0], .events = POLLIN},
                                {.fd = in[1], .events = POLLOUT}};
        double wait = 0.25;
        if (deadline && deadline - agent_now() < wait)
            wait = deadline - agent_now();
        if (wait < 0)
            wait = 0;
        poll(pfd, 3, (int)(wait * 1000 + 0.999));
        if (out[0] >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            char chunk[16384];
            ssize_t n = read(out[0], chunk, sizeof chunk);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
                close(out[0]);
                out[0] = -1;
            } else if (n > 0 && result->output && result->len < max) {
                size_t take = (size_t)n < max - result->len ? (size_t)n : max - result->len;
                if (result->len + take > cap) {
                    size_t grown_cap = cap;
                    while (grown_cap < result->len + take)
                        grown_cap *= 2;
                    if (grown_cap > max)
                        grown_cap = max;
                    char *grown = realloc(result->output, grown_cap + 1);
                    if (!grown)
                        free(result->output); /* the caller sees no output */
                    result->output = grown;
                    cap = grown_cap;
                }
                if (result->output) {
                    memcpy(result->output + result->len, chunk, take);
                    result->len += take;
                    result->output[result->len] = '\0';
                } else {
                    result->len = 0;
                }
            }
        }
        if (in[1] >= 0 && (pfd[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = write(in[1], opts->input + sent, opts->input_len - sent);
            if (n > 0)
                sent += (size_t)n;
            if ((n < 0 && errno != EINTR && errno != EAGAIN) || sent == opts->input_len) {
                close(in[1]);
                in[1] = -1;
            }
        }
        agent_pump(0);
        if (opts->interruptible && agent_stop_requested()) {
            result->outcome = AGENT_RUN_STOPPED;
            break;
        }
        if (deadline && agent_now() >= deadline) {
            result->outcome = AGENT_RUN_TIMEOUT;
            break;
        }
    }
    if (out[0] >= 0)
        close(out[0]);
    if (in[1] >= 0)
        close(in[1]);
    run_kill(&proc);
    agent_proc_unregister(&proc);
    result->wait_status = proc.wait_status;
    return 0;
}
