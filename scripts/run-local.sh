#!/usr/bin/env bash
# The quick start, kept for old habits: `wos-sync up` runs item-ingest, adjustment-pusher,
# webhook-relay and (when no store is configured) the Shopify sandbox in one process.
#
#   scripts/run-local.sh                          # the demo shop of config/local.toml
#   WOS_SYNC_CONFIG=my.toml scripts/run-local.sh  # your stores (tokens and secrets in the env)
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -p wos-sync -- up "$@"
