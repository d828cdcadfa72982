/*
 * The Supervisor's packages: the primary collector and the addon sidecars,
 * their persistent state (state_dir/state.json, the journal) and the
 * six-step upgrade of DESIGN.md.
 */
#ifndef PKGSTORE_AGENT_SUPERVISOR_H
#define PKGSTORE_AGENT_SUPERVISOR_H

#include "agent.h"

#define STATUS_LEN 24

typedef struct pkg_slot {
    char *name;
    int is_addon;
    char *version;                     /* running version, NULL if unknown */
    char digest[PKGSTORE_DIGEST_STR_SIZE];       /* running digest, "" if none */
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
        char digest[PKGSTORE_DIGEST_STR_SIZE];
        char *old_version;
        char old_digest[PKGSTORE_DIGEST_STR_SIZE];
        int had_old;
    } upgrade;
    double server_interval_s;          /* from the last response; 0 = none */
} supervisor;

int supervisor_init(supervisor *sup, agent_config *cfg);
void supervisor_free(supervisor *sup);
/* Roll back an interrupted upgrade (journal), then start every program. */
int supervisor_start(supervisor *sup);
/* One heartbeat; acts on its offers (which may run upgrades). 0 or <0. */
int supervisor_heartbeat(supervisor *sup, int *upgraded_out);
/* Forward sig to every child, wait stop_timeout, then SIGKILL. */
void supervisor_shutdown(supervisor *sup, int sig);

#endif
