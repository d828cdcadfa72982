/*
 * The Supervisor's packages: the primary collector and the addon sidecars,
 * their persistent state (state_dir/state.json and its copy, the journal),
 * the six-step upgrade of DESIGN.md, and what keeps a node healthy after
 * it: the bad digests, the upgrade rate limit, the watchdog after an
 * upgrade, the kept copy that heals a deleted binary.
 */
#ifndef PKGSTORE_AGENT_SUPERVISOR_H
#define PKGSTORE_AGENT_SUPERVISOR_H

#include "agent.h"
#include "reply.h"
#include "trust.h"

#include <jansson.h>

#define STATUS_LEN 24
#define BAD_MAX 32        /* bad digests remembered; the oldest goes first */
#define GOOD_MAX 8        /* known-good executables per slot */
#define ATTEMPTS_MAX 10000

/* A digest that failed on this node and is not tried again until an offer
 * carries a larger retry generation (or, for a failed validation, until
 * the collector's configuration changes). */
typedef struct bad_entry {
    char digest[PKGSTORE_DIGEST_STR_SIZE];
    char *package;
    char *reason;
    uint32_t retry;                                /* the offer's generation when it failed */
    int retry_known;                               /* 0: failed outside an offer (a running
                                                      binary): the next offer's counts */
    char config_digest[PKGSTORE_DIGEST_STR_SIZE];  /* validation failures: the config then */
    int is_config;                                 /* digest is a policy's addon configuration
                                                      (addon_config.c), not a package's */
    int64_t time;                                  /* Unix seconds */
} bad_entry;

typedef struct pkg_slot {
    char *name;
    int is_addon;
    char *version;                     /* running version, NULL if unknown */
    char digest[PKGSTORE_DIGEST_STR_SIZE];       /* running package's digest (the offer's), "" if none */
    char exe_digest[PKGSTORE_DIGEST_STR_SIZE];   /* the live executable file's own digest */
    char status[STATUS_LEN];           /* last upgrade status, "" if none */
    char *message;
    char *offer_version;               /* the offer last seen */
    char offer_digest[PKGSTORE_DIGEST_STR_SIZE];
    uint32_t offer_retry;
    unsigned attempts;                 /* transient failures of the current offer */
    double retry_at;                   /* monotonic; 0 = now */
    char *executable;                  /* live path */
    char *entrypoint;                  /* addons: the entrypoint of the installed artifact */
    agent_strv args;                   /* addons: from the offer's annotations */
    agent_kvv env;
    int has_manifest_args;
    agent_proc proc;
    /* what <executable>.bak holds since the last upgrade ("" / NULL: unknown) */
    char *prev_version;
    /* the highest version that passed its monitor window here (or ran at
     * the first start): the anti-rollback floor with trust.root */
    char *highest_version;
    char prev_digest[PKGSTORE_DIGEST_STR_SIZE];
    char prev_exe_digest[PKGSTORE_DIGEST_STR_SIZE];
    /* state_dir/keep/<type>-<name>: a second name of the live executable */
    char kept_digest[PKGSTORE_DIGEST_STR_SIZE];
    char good[GOOD_MAX][PKGSTORE_DIGEST_STR_SIZE];   /* executables known good */
    size_t ngood;
    /* the watchdog after an upgrade: until (Unix seconds, 0: off), the
     * crashes seen so far, and an addon's old entrypoint kept until then */
    int64_t watch_until;
    unsigned watch_crashes;
    char *watch_old_entrypoint;
    int watch_moved;
    /* set by the process events, handled by supervisor_tick() */
    int crashed, spawn_failed;
    /* the offer whose refusal (rate limit, dependencies) was last reported */
    char deferred[PKGSTORE_DIGEST_STR_SIZE];
    /* addons: the configuration from its policy that it runs with
     * (addon_config.c); config.digest "" when none */
    agent_policy_config config;
} pkg_slot;

typedef struct supervisor {
    agent_config *cfg;
    pkg_slot primary;
    pkg_slot **addons;
    size_t addon_count;
    char *state_path;
    char *copy_path;                   /* the journal's second copy */
    char *tmp_dir;
    int lock_fd;
    int first_start;                   /* no journal at all: a fresh state_dir */
    int journal_lost;                  /* a journal existed, and neither copy could be read */
    bad_entry bad[BAD_MAX];
    size_t nbad;
    int64_t *attempt_times;            /* Unix seconds of recent upgrade attempts */
    size_t nattempts;
    /* the upgrade in progress, persisted in the journal */
    struct {
        int active;
        char step[STATUS_LEN];
        char *name;
        int is_addon;
        char *version;
        char digest[PKGSTORE_DIGEST_STR_SIZE];          /* the offer's */
        char exe_digest[PKGSTORE_DIGEST_STR_SIZE];      /* its executable's, once prepared */
        uint32_t retry;                                 /* the offer's retry generation */
        char *old_version;
        char old_digest[PKGSTORE_DIGEST_STR_SIZE];      /* the package running before */
        char old_exe_digest[PKGSTORE_DIGEST_STR_SIZE];  /* the live file before */
        int had_old;                                    /* a previous binary to go back to */
        /* addons whose entrypoint's name changed: the new version goes to a
         * new path and the old path stays untouched until Upgraded */
        char *old_executable;                           /* NULL: same path */
        char *old_entrypoint;
    } upgrade;
    /* a policy's addon configuration being applied, persisted in the
     * journal: the slot runs the new one, old is the way back */
    struct {
        int active;
        char step[STATUS_LEN];
        char *name;
        uint32_t retry;                                 /* the policy's retry generation */
        agent_policy_config old;
    } config_apply;
    const agent_reply *reply;          /* the reply being acted on, NULL outside */
    double server_interval_s;          /* from the last response; 0 = none */
    double retry_after_s;              /* the pause the last failed one asked for; 0 = none */
    int quiet;                         /* recovering at start: no immediate reports */
    agent_trust trust;                 /* trust.root: the root offers are verified against */
} supervisor;

int supervisor_init(supervisor *sup, agent_config *cfg);
void supervisor_free(supervisor *sup);
/* Roll back an interrupted upgrade (journal), heal and start every program. */
int supervisor_start(supervisor *sup);
/* One heartbeat; acts on its offers (which may run upgrades). 0 or <0. */
int supervisor_heartbeat(supervisor *sup, int *upgraded_out);
/* After the pump: crashes (watchdog, crash loops), spawn failures
 * (healing), watchdogs that ended. 1 if it changed something the server
 * should hear about at once. */
int supervisor_tick(supervisor *sup);
/* Forward sig to every child, wait stop_timeout, then SIGKILL. */
void supervisor_shutdown(supervisor *sup, int sig);

#define MESSAGE_MAX 480

/* state.c: helpers, slots, leftovers, the journal, bad digests */
char *dup_or_null(const char *s);
void set_str(char **dst, const char *src);
double jittered(const agent_config *cfg, double seconds);
double backoff(const agent_config *cfg, double initial_s, double max_s, unsigned attempts);
double retry_delay(const agent_config *cfg, unsigned attempts);
int64_t wall_now(void);
const char *proc_state(const pkg_slot *slot);
void slot_init(pkg_slot *slot, const char *name, int is_addon, const char *executable,
               const agent_config *cfg);
void slot_free(pkg_slot *slot);
char *addon_dir(const supervisor *sup, const char *name);
char *addon_executable(const supervisor *sup, const char *name, const char *entrypoint);
char *kept_path(const supervisor *sup, const pkg_slot *slot);
const agent_health_spec *slot_health(const supervisor *sup, const pkg_slot *slot,
                                     double *stop_timeout_s);
void slot_start(supervisor *sup, pkg_slot *slot, int supervised);
void slot_stop(supervisor *sup, pkg_slot *slot, int sig);
void stop_leftovers(const supervisor *sup);
int state_lock(supervisor *sup);
int state_save(supervisor *sup);
int state_load(supervisor *sup);
const char *jstr(json_t *obj, const char *key);
void copy_digest(char dst[PKGSTORE_DIGEST_STR_SIZE], const char *src);
void copy_status(char dst[STATUS_LEN], const char *src);
/* A JSON array of strings / object of strings into out (replaced). */
void strv_from_json(agent_strv *out, json_t *array);
void kvv_from_json(agent_kvv *out, json_t *object);
pkg_slot *find_addon(supervisor *sup, const char *name);
pkg_slot *add_addon(supervisor *sup, const char *name, const char *entrypoint);
void remove_addon(supervisor *sup, pkg_slot *slot);
void upgrade_clear(supervisor *sup);
void slot_mark_good(pkg_slot *slot, const char *exe_digest);
int slot_is_good(const pkg_slot *slot, const char *exe_digest);
/* The bad digest entry for digest, or NULL. */
bad_entry *bad_find(supervisor *sup, const char *digest);
/* retry BAD_RETRY_UNKNOWN: the generation is not known (a binary that
 * failed while running, after its offer was gone). */
#define BAD_RETRY_UNKNOWN UINT32_MAX
/* The entry added (NULL when digest is empty). */
bad_entry *bad_add(supervisor *sup, const char *digest, const char *package, const char *reason,
                   uint32_t retry, const char *config_digest);
void bad_remove(supervisor *sup, bad_entry *entry);
/* Rate limit: 1 if another upgrade attempt may start now (and it is
 * counted), 0 if the limit is reached. */
int attempt_allowed(supervisor *sup);

/* addon_config.c: an addon's configuration from its policy */
/* The identity of "no configuration from a policy" in the bad set: the
 * SHA-256 of the empty string (a removal that fails is remembered too). */
#define CONFIG_NONE_DIGEST "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* The configuration of slot most recently rolled back (its bad entry), or
 * NULL: the heartbeat reports it so that the server stops sending it. */
const bad_entry *config_refused(const supervisor *sup, const pkg_slot *slot);
/* addons/NAME/policy.conf: the file {config_file} names in its arguments. */
char *config_file_path(const supervisor *sup, const char *name);
/* Apply what the reply's targets say about each addon's configuration
 * (a slot on the target's version whose configuration differs), each
 * watched like an upgrade and rolled back when it fails. *changed_out is
 * set when something was applied. */
void process_configs(supervisor *sup, const agent_reply *reply, int *changed_out);
/* Roll back a configuration whose application the agent's death
 * interrupted (the journal's config_apply). */
void recover_config(supervisor *sup);
void config_apply_clear(supervisor *sup);
/* The identity ("sha256:..." or CONFIG_NONE_DIGEST) of the configuration
 * the current reply's target wants for slot at the package digest, or NULL
 * when the reply says nothing about it. */
const char *config_wanted(const supervisor *sup, const pkg_slot *slot, const char *digest);
/* With an addon upgrade: stage the configuration the reply's target wants
 * for the offer's digest (journaled in config_apply, the file written)
 * so that the new version starts with it. 1 when one was staged, 0 when
 * none is due (or it is bad, or it could not be written). */
int config_stage(supervisor *sup, pkg_slot *slot, const char *digest);
/* The staged configuration goes (the upgrade failed): the previous one is
 * back in the slot and the file, without a restart. */
void config_unstage(supervisor *sup, pkg_slot *slot);
/* The staged configuration stays (the upgrade passed, or its binary could
 * not be put back). */
void config_commit(supervisor *sup, pkg_slot *slot);
/* The configuration's JSON form in the journal, and back. */
json_t *policy_config_json(const agent_policy_config *config);
void policy_config_from_json(agent_policy_config *out, json_t *obj);

/* upgrade.c: status reports, the six steps, recovery, rollback and healing */
/* Watch a freshly started program for its window (its health spec): 0 if
 * it stayed alive and is healthy at the end; else -1 with why. */
int monitor_slot(supervisor *sup, pkg_slot *slot, char *why, size_t why_len);
int heartbeat_post(supervisor *sup, char **response_out, double timeout_s);
int set_status(supervisor *sup, pkg_slot *slot, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void upgrade(supervisor *sup, pkg_slot *slot, const agent_offer *o);
/* The slot's running version becomes its highest_version when higher. */
void slot_note_highest(pkg_slot *slot);
void recover(supervisor *sup);
/* The collector configuration's digest, "" if it cannot be read. */
void config_digest(supervisor *sup, char out[PKGSTORE_DIGEST_STR_SIZE]);
/* Roll a running slot back to its .bak (the watchdog, a crash loop). */
void rollback_running(supervisor *sup, pkg_slot *slot, const char *why);
/* The live executable cannot be started: restore it from the kept copy,
 * else from the .bak, else forget it so that the server offers it again. */
void heal(supervisor *sup, pkg_slot *slot);
/* Keep a second name of the live executable in state_dir/keep/. */
void keep_live(supervisor *sup, pkg_slot *slot);
/* Remove path and path.bak. */
void unlink_with_bak(const char *path);
/* Remove what a kill during a swap or a restore leaves beside a live
 * executable ("<exe>.bak.tmp", "<exe>.new.tmp", ...). */
void clean_install_leftovers(const char *executable);

#endif
