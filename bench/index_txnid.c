/*
 * bench/index_txnid.c - print the id of the last committed LMDB write
 * transaction of a store's index (any process's), for bench/registry_txn.sh
 * to count the commits a command makes: the id moves by one per commit.
 *
 *   index_txnid STORE_DIR
 */
#include <pkgstore.h>

#include <inttypes.h>
#include <stdio.h>

#include "index.h" /* private: ps_index_last_txnid (bench links the static library) */
#include "store.h"

int main(int argc, char **argv)
{
    pkgstore_store_options opts = PKGSTORE_STORE_OPTIONS_INIT;
    pkgstore_store *store = NULL;
    int error;

    if (argc != 2) {
        fprintf(stderr, "usage: index_txnid STORE_DIR\n");
        return 2;
    }
    opts.read_only = 1;
    if ((error = pkgstore_store_open(&store, argv[1], &opts)) < 0) {
        fprintf(stderr, "index_txnid: %s\n", pkgstore_error_detail());
        return 1;
    }
    printf("%" PRIu64 "\n", ps_index_last_txnid(ps_store_index(store)));
    pkgstore_store_free(store);
    return 0;
}
