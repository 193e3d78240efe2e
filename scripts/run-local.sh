#!/usr/bin/env bash
# Runs the whole integration on this machine: item-ingest, adjustment-pusher, webhook-relay and,
# when no store is configured, the built-in Shopify sandbox (config/local.toml), against the
# RabbitMQ and PostgreSQL on localhost. Stops everything on Ctrl-C.
#
#   scripts/run-local.sh                         # sandbox + config/local.toml
#   WOS_SYNC_CONFIG=my.toml scripts/run-local.sh # your stores (tokens and secrets in the env)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p item-ingest -p adjustment-pusher -p webhook-relay -p shopify-sandbox
bin=target/release

use_sandbox=false
if [ -z "${WOS_SYNC_CONFIG:-}" ]; then
  use_sandbox=true
  export WOS_SYNC_CONFIG=config/local.toml
  # Throw-away credentials shared by the sandbox and the services.
  export LOCAL_SHOPIFY_TOKEN=${LOCAL_SHOPIFY_TOKEN:-local-token}
  export LOCAL_WEBHOOK_SECRET=${LOCAL_WEBHOOK_SECRET:-local-webhook-secret}
fi
export LOG_FORMAT=${LOG_FORMAT:-text}

pids=()
stop() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; wait; }
trap stop EXIT INT TERM

wait_ready() { # wait_ready NAME URL
  for _ in $(seq 120); do
    if curl -fs "$2" >/dev/null 2>&1; then echo "[run-local] $1 ready"; return 0; fi
    sleep 0.5
  done
  echo "[run-local] $1 did not become ready at $2" >&2; return 1
}

# Consumers first, so their queues are bound before anything is published.
"$bin/item-ingest" & pids+=($!)
"$bin/adjustment-pusher" & pids+=($!)
wait_ready item-ingest http://127.0.0.1:9464/readyz
wait_ready adjustment-pusher http://127.0.0.1:9465/readyz
"$bin/webhook-relay" & pids+=($!)
wait_ready webhook-relay http://127.0.0.1:9466/readyz
if $use_sandbox; then
  # Seeds the shop and its products, and sends their products/create webhooks to the relay.
  "$bin/shopify-sandbox" & pids+=($!)
  wait_ready shopify-sandbox http://127.0.0.1:9470/sandbox/shops
fi
echo "[run-local] running: metrics on :9464 (item-ingest), :9465 (adjustment-pusher), :9466 (relay; webhooks on :8080); Ctrl-C stops"
wait -n "${pids[@]}"
