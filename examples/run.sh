#!/usr/bin/env bash
# examples/run.sh - what `make run` executes: pkgstored in the foreground.
#
# The store is $COLLECTORCTRL_PACKAGES_DIR, or build/run/packages in the
# source tree when it is not set. The listen address is $PKGSTORE_LISTEN
# (default 127.0.0.1:8080). On first start pkgstored creates an admin token
# beside the store (<store>.admin-token, mode 0600) and logs where it is;
# give each node its own credential with pkgstore-token issue (or pass
# --allow-shared-agent-token for the development-only <store>.agent-token).
# Stop it with Ctrl-C.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PKGSTORE_BIN:-$SRC/build/bin}
STORE=${COLLECTORCTRL_PACKAGES_DIR:-$SRC/build/run/packages}
LISTEN=${PKGSTORE_LISTEN:-127.0.0.1:8080}
mkdir -p "$(dirname "$STORE")"
echo "pkgstored: store $STORE, listening on http://$LISTEN (Ctrl-C to stop)" >&2
echo "  admin token: $STORE.admin-token   node credentials: pkgstore-token --server http://$LISTEN --token-file $STORE.admin-token issue --node NAME" >&2
echo "  try: curl -s -H \"Authorization: Bearer \$(cat $STORE.admin-token)\" http://$LISTEN/v1/packages" >&2
exec "$BIN/pkgstored" --store "$STORE" --listen "$LISTEN" "$@"
