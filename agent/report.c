/*
 * Status reports: the heartbeat request the agent sends (its packages,
 * their state, offer and last status), and set_status(), which journals a
 * step and tells the server at once.
 */
#include "supervisor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define REPORT_TIMEOUT_S 3.0

/* ------------------------------------------------------------------ heartbeat */

static json_t *heartbeat_request(const supervisor *sup)
{
    const agent_config *cfg = sup->cfg;
    json_t *labels = json_object();
    for (size_t i = 0; i < cfg->labels.count; i++)
        json_object_set_new(labels, cfg->labels.items[i].key, json_string(cfg->labels.items[i].value));
    json_t *packages = json_array();
    for (size_t i = 0; i <= sup->addon_count; i++) {
        const pkg_slot *slot = i == 0 ? &sup->primary : sup->addons[i - 1];
        json_t *pkg = json_pack("{s:s, s:s, s:s?, s:s?, s:s}", "name", slot->name, "type",
                                slot->is_addon ? "addon" : "primary", "version", slot->version,
                                "digest", slot->digest[0] ? slot->digest : NULL, "state",
                                proc_state(slot));
        if (slot->config.digest[0]) /* the policy's configuration it runs with */
            json_object_set_new(pkg, "config_digest", json_string(slot->config.digest));
        const bad_entry *refused = slot->is_addon ? config_refused(sup, slot) : NULL;
        if (refused && refused->retry_known) /* ... and the one it rolled back */
            json_object_set_new(pkg, "config_refused",
                                json_pack("{s:s, s:I}", "digest", refused->digest, "retry",
                                          (json_int_t)refused->retry));
        if (slot->offer_digest[0])
            json_object_set_new(pkg, "offer", json_pack("{s:s?, s:s}", "version",
                                                        slot->offer_version, "digest",
                                                        slot->offer_digest));
        if (slot->status[0]) {
            json_object_set_new(pkg, "status", json_string(slot->status));
            if (slot->message)
                json_object_set_new(pkg, "message", json_string(slot->message));
        }
        json_array_append_new(packages, pkg);
    }
    /* with trust.root: what this node verified, so that the fleet view
     * shows a node kept on old signed data (docs/trust.md) */
    return json_pack("{s:s, s:o, s:s, s:s, s:o, s:o*}", "node_id", cfg->node_id, "labels", labels,
                     "platform", cfg->platform, "agent_version", PKGSTORE_VERSION_STRING,
                     "packages", packages, "trust", agent_trust_report(&sup->trust));
}

/* One small request through the helper: a JSON POST when body is not
 * NULL, else a GET. *response_out (free()) gets the body. */
static int http_small(char **response_out, long *status_out, const char *url, const char *body,
                      double timeout_s)
{
    *response_out = NULL;
    *status_out = 0;
    json_t *reply = NULL;
    const char *cmd = body ? "http-post" : "http-get";
    int rc = agent_helper_call(&reply, body, timeout_s, 0, cmd, url, NULL);
    if (rc < 0)
        return rc;
    rc = agent_helper_reply_http(status_out, response_out, reply, cmd);
    json_decref(reply);
    return rc;
}

/* POST a heartbeat; on success *response_out (free()) is the reply's body
 * (a 200: agent_reply_parse() reads it). With server.protocol opamp the
 * helper sends it as an OpAMP AgentToServer and hands back the
 * ServerToAgent translated into the same reply (docs/opamp.md). A pause
 * the server asked for (Retry-After, OpAMP's RetryInfo) goes to
 * sup->retry_after_s. */
int heartbeat_post(supervisor *sup, char **response_out, double timeout_s)
{
    *response_out = NULL;
    const agent_config *cfg = sup->cfg;
    json_t *request = heartbeat_request(sup);
    char *body = request ? json_dumps(request, JSON_COMPACT) : NULL;
    json_decref(request);
    if (!body)
        return agent_error_set(PKGSTORE_ENOMEM, "heartbeat: cannot build the request");
    char *url = cfg->opamp ? agent_strdup_printf("%s%s", cfg->server_url, cfg->opamp_path)
                           : agent_strdup_printf("%s/v1/agents/heartbeat", cfg->server_url);
    char *reply = NULL;
    long status = 0;
    int rc;
    if (!url) {
        rc = agent_error_set(PKGSTORE_ENOMEM, "out of memory");
    } else if (cfg->opamp) {
        json_t *answer = NULL;
        rc = agent_helper_call(&answer, body, timeout_s, 0, "opamp-exchange", cfg->server_url,
                               cfg->opamp_path, cfg->state_dir, NULL);
        if (rc == 0)
            rc = agent_helper_reply_http(&status, &reply, answer, "opamp-exchange");
        json_t *pause = json_object_get(answer, "retry_after_s");
        sup->retry_after_s = json_is_number(pause) ? json_number_value(pause) : 0;
        json_decref(answer);
    } else {
        sup->retry_after_s = 0;
        rc = http_small(&reply, &status, url, body, timeout_s);
    }
    free(body);
    if (rc == 0 && status != 200) {
        json_t *err = reply ? json_loads(reply, 0, NULL) : NULL;
        const char *msg = err ? jstr(json_object_get(err, "error"), "message") : NULL;
        rc = agent_error_set(status == 401 || status == 403 ? PKGSTORE_EDENIED : PKGSTORE_ENET,
                             "%s: HTTP %ld%s%s", url, status, msg ? ": " : "", msg ? msg : "");
        json_decref(err);
    } else if (rc == 0) {
        *response_out = reply;
        reply = NULL; /* now owned by the caller */
    }
    free(reply);
    free(url);
    return rc;
}

/* Tell the server about a step now (best effort; the next heartbeat
 * carries the latest status anyway). */
static void report(supervisor *sup)
{
    char *reply = NULL;
    if (heartbeat_post(sup, &reply, REPORT_TIMEOUT_S) < 0)
        agent_log("warn", "msg=\"status report failed\" error=\"%s\"", agent_error());
    free(reply);
}

int set_status(supervisor *sup, pkg_slot *slot, const char *status, const char *fmt, ...)
{
    copy_status(slot->status, status);
    free(slot->message);
    slot->message = NULL;
    if (fmt) {
        char msg[MESSAGE_MAX + 1];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        slot->message = strdup(msg);
    }
    if (sup->upgrade.active && !strcmp(sup->upgrade.name, slot->name))
        copy_status(sup->upgrade.step, status);
    if (sup->config_apply.active && !strcmp(sup->config_apply.name, slot->name))
        copy_status(sup->config_apply.step, status);
    const char *shown_version = sup->upgrade.version ? sup->upgrade.version : slot->version;
    agent_log(strcmp(status, "UpgradeFailed") && strcmp(status, "RolledBack") &&
                      strcmp(status, "RollbackFailed")
                  ? "info"
                  : "warn",
              "msg=\"upgrade status\" package=%s status=%s version=%s message=\"%s\"", slot->name,
              status, shown_version ? shown_version : "-",
              slot->message ? slot->message : "");
    int saved = state_save(sup);
    if (!sup->quiet) /* the first heartbeat carries it otherwise */
        report(sup);
    return saved;
}

