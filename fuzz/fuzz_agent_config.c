/*
 * fuzz_agent_config: the agent's YAML configuration (agent/config.c),
 * read through fmemopen() exactly as from a file, with nothing looked up on
 * this machine (AGENT_CONFIG_NO_ENV). Checks:
 *   - a configuration is accepted or refused with a detail, never crashes;
 *   - an accepted one has what the agent relies on: a server URL starting
 *     with http:// or https:// and no trailing '/', a valid collector
 *     package name, an absolute executable, a state_dir, addons with valid
 *     and distinct names, and it dumps as JSON.
 */
#include "../agent/agent.h"

#include "fuzz.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0; /* fmemopen needs a buffer */
    FILE *f = fmemopen((void *)data, size, "r");
    if (!f)
        return 0;
    agent_config cfg;
    int rc = agent_config_parse(&cfg, f, "fuzz.yaml", AGENT_CONFIG_NO_ENV);
    fclose(f);
    if (rc < 0) {
        CHECK(rc == PKGSTORE_EINVALID || rc == PKGSTORE_ENOMEM);
        CHECK(rc == PKGSTORE_ENOMEM || agent_error()[0] != '\0');
    } else {
        size_t n = strlen(cfg.server_url);
        CHECK(!strncmp(cfg.server_url, "http://", 7) || !strncmp(cfg.server_url, "https://", 8));
        CHECK(n > 0 && cfg.server_url[n - 1] != '/');
        CHECK(agent_valid_name(cfg.package));
        CHECK(cfg.executable && cfg.executable[0] == '/');
        CHECK(cfg.state_dir && cfg.collector_config && cfg.validate_command);
        for (size_t i = 0; i < cfg.addon_count; i++) {
            CHECK(agent_valid_name(cfg.addons[i].name));
            for (size_t j = 0; j < i; j++)
                CHECK(strcmp(cfg.addons[i].name, cfg.addons[j].name) != 0);
        }
        char *text = agent_config_dump_json(&cfg);
        CHECK(text != NULL);
        free(text);
    }
    agent_config_free(&cfg);
    return 0;
}
