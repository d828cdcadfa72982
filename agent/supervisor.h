/*
 * The Supervisor's packages: the primary collector and the addon sidecars,
 * their persistent state (state_dir/state.json, the journal) and the
 * six-step upgrade of DESIGN.md.
 */
#ifndef PKGSTORE_AGENT_SUPERVISOR_H
#define PKGSTORE_AGENT_SUPERVISOR_H

#include "agent.h"

#include <jansson.h>

#define STATUS_LEN 24

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
    char bad_digest[PKGSTORE_DIGEST_STR_SIZE];   /* failed: not retried until the offer changes */
    unsigned attempts;                 /* transient failures of the current offer */
    double retry_at;                   /* monotonic; 0 = now */
    char *executable;                  /* live path */
    char *entrypoint;                  /* addons: the entrypoint of the installed artifact */
    agent_strv args;                   /* addons: from manifest annotations */
    agent_kvv env;
    int has_manifest_args;
    int offered;                       /* addons: present in the last offers */
    agent_proc proc;
} pkg_slot;

typedef struct supervisor {
    agent_config *cfg;
    pkg_slot primary;
    pkg_slot **addons;
    size_t addon_count;
    char *state_path;
    char *tmp_dir;
    /* the upgrade in progress, persisted in the journal */
    struct {
        int active;
        char step[STATUS_LEN];
        char *name;
        int is_addon;
        char *version;
        char digest[PKGSTORE_DIGEST_STR_SIZE];          /* the offer's */
        char exe_digest[PKGSTORE_DIGEST_STR_SIZE];      /* its executable's, once prepared */
        char *old_version;
        char old_digest[PKGSTORE_DIGEST_STR_SIZE];      /* the package running before */
        char old_exe_digest[PKGSTORE_DIGEST_STR_SIZE];  /* the live file before */
        int had_old;                                    /* a previous binary to go back to */
        /* addons whose entrypoint's name changed: the new version goes to a
         * new path and the old path stays untouched until Upgraded */
        char *old_executable;                           /* NULL: same path */
        char *old_entrypoint;
    } upgrade;
    double server_interval_s;          /* from the last response; 0 = none */
    int quiet;                         /* recovering at start: no immediate reports */
} supervisor;

int supervisor_init(supervisor *sup, agent_config *cfg);
void supervisor_free(supervisor *sup);
/* Roll back an interrupted upgrade (journal), then start every program. */
int supervisor_start(supervisor *sup);
/* One heartbeat; acts on its offers (which may run upgrades). 0 or <0. */
int supervisor_heartbeat(supervisor *sup, int *upgraded_out);
/* Forward sig to every child, wait stop_timeout, then SIGKILL. */
void supervisor_shutdown(supervisor *sup, int sig);

#define MESSAGE_MAX 480

/* An offer from a heartbeat response; strings borrowed from its JSON. */
typedef struct offer {
    const char *name, *type, *version, *digest, *format, *entrypoint, *url, *policy;
    uint64_t size;
} offer;

/* state.c: helpers, slots, leftovers, the journal */
char *dup_or_null(const char *s);
void set_str(char **dst, const char *src);
double jittered(const agent_config *cfg, double seconds);
double backoff(const agent_config *cfg, double initial_s, double max_s, unsigned attempts);
double retry_delay(const agent_config *cfg, unsigned attempts);
const char *proc_state(const pkg_slot *slot);
void slot_init(pkg_slot *slot, const char *name, int is_addon, const char *executable,
               const agent_config *cfg);
void slot_free(pkg_slot *slot);
char *addon_dir(const supervisor *sup, const char *name);
char *addon_executable(const supervisor *sup, const char *name, const char *entrypoint);
const agent_health_spec *slot_health(const supervisor *sup, const pkg_slot *slot,
                                     double *stop_timeout_s);
void slot_start(supervisor *sup, pkg_slot *slot, int supervised);
void slot_stop(supervisor *sup, pkg_slot *slot, int sig);
void stop_leftovers(const supervisor *sup);
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

/* upgrade.c: status reports, the six steps, recovery */
int heartbeat_post(supervisor *sup, json_t **response_out, double timeout_s);
int set_status(supervisor *sup, pkg_slot *slot, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void upgrade(supervisor *sup, pkg_slot *slot, const offer *o);
void recover(supervisor *sup);

#endif
