/*
 * Test helpers for the policy and fleet tests (test_policy.c, test_fleet.c):
 * package versions with chosen bytes and dependencies, and policies, written
 * through the public API. Include after <cmocka.h> for CHECK().
 */
#ifndef TEST_POLICY_FIXTURE_H
#define TEST_POLICY_FIXTURE_H

#include <stddef.h>

#include "pkgstore.h"

/* Fail the test, with the library's detail, unless expr is 0. */
#define CHECK(expr)                                                                                \
    do {                                                                                           \
        int check_rc_ = (expr);                                                                    \
        if (check_rc_ != 0)                                                                        \
            print_error("%s: %d %s\n", #expr, check_rc_, pkgstore_error_detail());                 \
        assert_int_equal(check_rc_, 0);                                                            \
    } while (0)

/* Add a binary artifact of the given bytes as name@version (forced past the
 * dependency check), with deps (may be NULL) as the manifest's
 * dependencies; its digest into *digest_out (may be NULL). */
int fixture_add_artifact(pkgstore_digest *digest_out, pkgstore_store *store, pkgstore_registry *reg,
                         const char *name, const char *version, pkgstore_package_type type,
                         const char *platform, const char *bytes, const pkgstore_dependency *deps,
                         size_t ndeps);

/* Put a new policy; selector NULL means every node. */
int fixture_put_policy(pkgstore_registry *reg, const char *name, const char *package,
                       const char *version, const char *selector, int priority);

#endif
