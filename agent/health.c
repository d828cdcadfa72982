/*
 * Port checks for the monitor window: a port counts as bound when
 * /proc/net/tcp or /proc/net/tcp6 lists a socket in LISTEN state on it.
 */
#include "agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TCP_LISTEN 0x0A

static void scan(const char *path, const int *ports, size_t count, int *found)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    char line[512];
    if (!fgets(line, sizeof line, f)) { /* header */
        fclose(f);
        return;
    }
    while (fgets(line, sizeof line, f)) {
        /* "  0: 0100007F:0CEA 00000000:0000 0A ..." */
        char local[128];
        unsigned state;
        if (sscanf(line, " %*d: %127s %*s %x", local, &state) != 2 || state != TCP_LISTEN)
            continue;
        char *colon = strrchr(local, ':');
        if (!colon)
            continue;
        unsigned long port = strtoul(colon + 1, NULL, 16);
        for (size_t i = 0; i < count; i++)
            if ((unsigned long)ports[i] == port)
                found[i] = 1;
    }
    fclose(f);
}

int agent_ports_bound(const int *ports, size_t count, int *missing_out)
{
    int found[64] = {0};
    if (count > 64)
        count = 64;
    scan("/proc/net/tcp", ports, count, found);
    scan("/proc/net/tcp6", ports, count, found);
    for (size_t i = 0; i < count; i++)
        if (!found[i]) {
            if (missing_out)
                *missing_out = ports[i];
            return PKGSTORE_ENOTFOUND;
        }
    return 0;
}
