/*
 * pkgstore-agent private header: the configuration, the supervised
 * processes, the persistent state and the upgrade machinery shared by the
 * agent's source files. Nothing here is part of libpkgstore's API.
 */
#ifndef PKGSTORE_AGENT_H
#define PKGSTORE_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>
/* The resident agent links only libpkgstore's POSIX-only parts: the digest
 * text form, the install module's file operations and the error detail.
 * Everything that needs OpenSSL, libarchive or libcurl goes through
 * agent_helper_call(). */
#include <pkgstore.h>
#include <pkgstore/install.h>

#define AGENT_NAME "pkgstore-agent"

/* ------------------------------------------------------------------ config */

typedef struct agent_kv {
    char *key;
    char *value;
} agent_kv;

typedef struct agent_strv {
    char **items;
    size_t count;
} agent_strv;

typedef struct agent_kvv {
    agent_kv *items;
    size_t count;
} agent_kvv;

/* What "healthy" means for one supervised program. */
typedef struct agent_health_spec {
    char *health_url;        /* NULL: no URL check */
    int ports[32];
    size_t port_count;
    double monitor_window_s;
} agent_health_spec;

typedef struct agent_addon_config {
    char *name;
    agent_strv args;         /* may hold {executable} {state_dir} {addon_dir} */
    int has_args;
    agent_kvv env;
    agent_health_spec health;
    double stop_timeout_s;
} agent_addon_config;

typedef struct agent_config {
    char *path;              /* the file it was read from */
    char *server_url;        /* without trailing '/' */
    char *token_file;        /* NULL: no token */
    char *ca_file;           /* PEM CA for an https:// url; NULL: the system's */
    char *client_cert;       /* PEM client certificate (mutual TLS); NULL: none */
    char *client_key;        /* its PEM private key (private to the agent's user) */
    int opamp;               /* server.protocol: 0 pkgstore (JSON heartbeat), 1 opamp */
    char *opamp_path;        /* server.opamp_path: "/v1/opamp" by default */
    double heartbeat_interval_s;
    double heartbeat_jitter;     /* fraction, 0.1 = +-10 % */
    double heartbeat_retry_max_s;
    int obey_server_interval;
    double http_timeout_s;
    char *node_id;
    char *platform;
    agent_kvv labels;
    char *state_dir;

    char *package;           /* collector package name */
    char *initial_version;   /* informational: version installed at first start */
    char *executable;
    char *collector_config;
    agent_strv args;         /* {executable} {config} substituted */
    char *validate_command;  /* template split on blanks */
    double validate_timeout_s;
    double stop_timeout_s;
    agent_health_spec health;

    double backoff_initial_s;
    double backoff_max_s;
    double backoff_reset_s;  /* a run this long resets the backoff */
    double retry_initial_s;  /* failed upgrade attempts back off from here */
    double retry_max_s;
    unsigned limit_attempts; /* upgrade_limit: at most this many upgrade attempts ... */
    double limit_window_s;   /* ... within this many seconds; 0 attempts: no limit */
    double watchdog_window_s;    /* upgrade_watchdog: after Upgraded, for this long ... */
    unsigned watchdog_crashes;   /* ... this many crashes roll back; 0 s: off */

    agent_addon_config *addons;
    size_t addon_count;
    char *log_level;         /* debug, info (default), warn, error */
    char *trust_root;        /* trust.root: the pinned root.json; NULL: offers are not
                                checked for signatures */
} agent_config;

/* Read path into *out (0) or set the error detail and return <0. */
int agent_config_load(agent_config *out, const char *path);
/* Parse a configuration from f (name is used in messages) into *out, with
 * the defaults. AGENT_CONFIG_NO_ENV: look nothing up on this machine (node
 * id, host platform, token file), so that a fuzz harness can call it. */
#define AGENT_CONFIG_NO_ENV 1u
int agent_config_parse(agent_config *out, FILE *f, const char *name, unsigned flags);
void agent_config_free(agent_config *cfg);
/* The resolved configuration as a JSON text (free with free()). */
char *agent_config_dump_json(const agent_config *cfg);
const agent_addon_config *agent_config_addon(const agent_config *cfg, const char *name);

void agent_strv_free(agent_strv *v);
void agent_kvv_free(agent_kvv *v);
/* Expand {name} placeholders from vars into a new string (free()). */
char *agent_expand(const char *template_text, const agent_kvv *vars);

/* ------------------------------------------------------------------ util */

/* The agent's own error detail (the library's setter is private to it):
 * agent_error_set() stores "fmt" and returns code; agent_error() reads it. */
int agent_error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *agent_error(void);

double agent_now(void);                         /* CLOCK_MONOTONIC seconds */
void agent_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Lines below level ("debug", "info", "warn", "error") are not written. */
int agent_log_set_level(const char *level);
int agent_mkdirs(const char *path, int mode);
char *agent_read_small_file(const char *path, size_t max);   /* NUL-terminated, or NULL */
/* Strip leading and trailing blanks in place; NULL stays NULL. */
char *agent_trimmed(char *text);
char *agent_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A package or addon name: [A-Za-z0-9._-], 1..128, not starting with '.'. */
int agent_valid_name(const char *name);

/* ------------------------------------------------------------------ processes */

typedef struct agent_proc agent_proc;
struct agent_proc {
    char *name;              /* "collector", "addon:<name>", "validate" */
    pid_t pid;               /* 0 when not running */
    int supervised;          /* restart it when it exits */
    int exited;              /* set by the reaper */
    int wait_status;
    double started_at;
    double restart_at;       /* 0: no restart scheduled */
    unsigned failures;       /* consecutive short runs, for the backoff */
    double backoff_initial_s, backoff_max_s, backoff_reset_s;
    char **argv;             /* owned */
    char **envp;             /* owned; NULL = inherit */
    int output_fd;           /* -1: inherit; else dup'ed to stdout (+stderr) */
    int stdout_only;         /* output_fd is stdout only; stderr is inherited */
    int input_fd;            /* > 0: dup'ed to stdin; else /dev/null */
    int quiet;               /* no "child started" log line */
    int die_with_agent;      /* PR_SET_PDEATHSIG: killed when the agent dies */
    int spawn_errno;         /* the last spawn's errno, 0 when it started */
    double last_run_s;       /* how long the last run lasted */
    char *pid_file;          /* owned; NULL = none; rewritten at every spawn */
    /* Called by the pump (never from a signal handler): after a supervised
     * child exited, and after a scheduled restart failed to spawn. */
    void (*on_event)(struct agent_proc *proc, int spawn_failed, void *payload);
    void *payload;
};

/* Every child carries PKGSTORE_AGENT_CHILD=<state_dir>/<what> in its
 * environment, so that a restarted agent finds and stops what a killed one
 * left running (stop_leftovers). Set the state_dir once at start. */
#define AGENT_CHILD_MARKER "PKGSTORE_AGENT_CHILD="
void agent_proc_set_marker_dir(const char *state_dir);

/* The event pump: signals (via signalfd) and child reaping. */
int agent_signals_init(void);
/* Wait up to timeout_s for a signal; reap children, handle restarts that
 * are due. Returns 1 if the agent was asked to stop. */
int agent_pump(double timeout_s);
int agent_stop_requested(void);
int agent_stop_signal(void);

void agent_proc_register(agent_proc *proc);
void agent_proc_unregister(agent_proc *proc);
/* Spawn in a new process group with a clean signal mask. */
int agent_proc_spawn(agent_proc *proc);
/* SIGTERM (or sig) to the group, SIGKILL after timeout_s; waits. */
void agent_proc_stop(agent_proc *proc, int sig, double timeout_s);
/* Human text for a wait status, e.g. "exit 1", "killed by signal 9". */
void agent_describe_status(char *buf, size_t len, int wait_status);
void agent_proc_set_argv(agent_proc *proc, char **argv);   /* takes ownership */
void agent_argv_free(char **argv);
double agent_proc_next_restart(void);   /* earliest restart_at, or 0 */

/* Run a program to completion (not supervised) while the pump keeps
 * turning: input (NULL: /dev/null) goes to its stdin, its stdout (and
 * stderr with merge_stderr) is collected up to max_output bytes (0: 64 KiB;
 * the rest is read and dropped). A timeout (0: none) or, when
 * interruptible, a stop request kills its process group. Returns 0 with
 * result->outcome (free result->output) or <0 if it could not start. */
enum { AGENT_RUN_EXITED = 0, AGENT_RUN_TIMEOUT = 1, AGENT_RUN_STOPPED = 2 };
typedef struct agent_run_opts {
    const char *name;
    char **argv;
    char **envp;             /* NULL: inherit */
    const char *input;
    size_t input_len;
    int merge_stderr;
    double timeout_s;
    int interruptible;
    size_t max_output;
} agent_run_opts;
typedef struct agent_run_result {
    int outcome;
    int wait_status;
    char *output;            /* NUL-terminated; may be NULL (out of memory) */
    size_t len;
} agent_run_result;
int agent_run(const agent_run_opts *opts, agent_run_result *result);

/* ------------------------------------------------------------------ helper */

/* The resident agent maps neither libcurl nor OpenSSL nor libarchive:
 * requests, hashing, verification and extraction run in
 * pkgstore-agent-helper (agent/helper/), one process per call. agent_helper_init() finds it beside the agent's own
 * executable or in ../libexec/pkgstore/. */
int agent_helper_init(const agent_config *cfg);
void agent_helper_cleanup(void);
const char *agent_helper_path(void);
/* Run "helper CMD ARGS..." (args NULL-terminated) with input on stdin.
 * timeout_s (0: the configured http timeout) bounds network commands; a
 * download only when it stalls that long; file operations are not bounded.
 * The token goes with network commands unless flags has NO_TOKEN.
 * 0: *reply_out (may be NULL: not wanted) is its JSON reply (json_decref).
 * <0: the PKGSTORE_E* code it reported, with its detail in agent_error(). */
#define AGENT_HELPER_NO_TOKEN 1u
int agent_helper_call(json_t **reply_out, const char *input, double timeout_s, unsigned flags,
                      const char *cmd, ...) __attribute__((sentinel));
/* The helper's common operations. */
int agent_file_digest(char out[PKGSTORE_DIGEST_STR_SIZE], const char *path);
int agent_remove_tree(const char *path);

/* ------------------------------------------------------------------ health */

/* 0 if every port is in LISTEN state per /proc/net/tcp{,6}; else the first
 * missing port is stored in *missing_out and PKGSTORE_ENOTFOUND returned. */
int agent_ports_bound(const int *ports, size_t count, int *missing_out);

#endif
