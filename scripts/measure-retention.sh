#!/usr/bin/env bash
# Table sizes with the retention job on, after a run of TRANSACTIONS (default 1,000,000) WOS
# transactions received evenly over DAYS (default 30) days, with the default windows.
#
#   scripts/measure-retention.sh              # needs the local RabbitMQ and PostgreSQL
#
# The rows a month of traffic leaves are generated with SQL at their real ages
# (scripts/retention-measure.sql); then the release binaries of item-ingest and
# adjustment-pusher start on them and their retention jobs make their first pass, as they do at
# every start. Printed: each table's rows and size (table, indexes and TOAST) before, right
# after the pass (the space freed is reused by new rows, not returned), and compacted (VACUUM
# FULL: what the table holds in a steady state with the job on); and how long the pass took.
# Uses a scratch database and name prefix, removed at the end (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."

transactions=${TRANSACTIONS:-1000000}
days=${DAYS:-30}
pg=${PG_BASE_URL:-postgres://postgres@127.0.0.1:5432}
amqp=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
run=$$
database=wos_retention_measure_$run
prefix=retention-measure-$run.
work=$(mktemp -d)
target=${CARGO_TARGET_DIR:-target}
pids=()

log() { printf '[measure] %s\n' "$*" >&2; }

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
  for queue in $(rabbitmqctl list_queues name -q --no-table-headers 2>/dev/null | grep "^$prefix" || true); do
    rabbitmqctl delete_queue "$queue" >/dev/null 2>&1 || true
  done
  for exchange in $(rabbitmqctl list_exchanges name -q --no-table-headers 2>/dev/null | grep "^$prefix" || true); do
    rabbitmqctl eval "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"$exchange\">>), false, <<\"measure\">>)." >/dev/null 2>&1 ||
      log "could not delete exchange $exchange"
  done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cat >"$work/wos-sync.toml" <<EOF
[amqp]
name_prefix = "$prefix"
[database]
max_connections = 8
[http]
pre_stop_delay_ms = 0
[retention]
# One pass at start; the next would be an hour later.
interval_secs = 3600
[[shops]]
domain = "acme.myshopify.com"
api_version = "2026-04"
admin_base_url = "http://127.0.0.1:9"
access_token_env = "MEASURE_TOKEN"
[shops.locations]
MAIN = 68845568042
EAST = 68845600810
EOF

log "building the release binaries"
cargo build --release --locked -q -p item-ingest -p adjustment-pusher
psql -q "$pg/postgres" -c "CREATE DATABASE $database" >/dev/null

ports=()
start_services() {
  pids=()
  ports=()
  local binary port
  for binary in adjustment-pusher item-ingest; do
    port=$(free_port)
    WOS_SYNC_CONFIG="$work/wos-sync.toml" DATABASE_URL="$pg/$database" AMQP_URL="$amqp" \
      LISTEN_ADDR="127.0.0.1:$port" MEASURE_TOKEN=unused LOG_FORMAT=text RUST_LOG=warn \
      "$target/release/$binary" >>"$work/$binary.log" 2>&1 &
    pids+=($!)
    ports+=("$port")
  done
}

stop_services() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" || true; done
  pids=()
}

# Waits until every service's metrics show its first retention pass.
wait_first_pass() {
  local port deadline=$((SECONDS + 1800))
  for port in "${ports[@]}"; do
    until curl -sf "http://127.0.0.1:$port/metrics" | grep -q '^wos_sync_retention_pruned_rows_total'; do
      if [ $SECONDS -ge $deadline ]; then
        log "no retention pass within 30 minutes"
        tail -n 20 "$work"/*.log >&2
        exit 1
      fi
      sleep 0.2
    done
  done
}

sizes() { # sizes LABEL
  psql -q -A -F $'\t' -t "$pg/$database" -c "
    SELECT '$1', c.relname,
           (xpath('/row/n/text()',
                  query_to_xml(format('SELECT count(*) AS n FROM %I', c.relname), false, true, '')))[1]::text::bigint,
           pg_total_relation_size(c.oid)
    FROM pg_class c
    WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
      AND c.relname IN ('wos_transactions', 'adjustments', 'push_batches', 'dead_letter_replays',
                        'inbox', 'outbox', 'shopify_variants', 'shopify_products', 'items')
    ORDER BY c.relname"
}

log "migrating (the services' own start)"
start_services
wait_first_pass
stop_services

log "generating $transactions transactions over $days days"
started=$SECONDS
psql -q "$pg/$database" -v transactions="$transactions" -v days="$days" \
  -f scripts/retention-measure.sql >/dev/null
log "generated in $((SECONDS - started)) s"
psql -q "$pg/$database" -c "VACUUM ANALYZE" >/dev/null
sizes before >"$work/before"

log "starting item-ingest and adjustment-pusher: their first retention pass"
pass_started=$(date +%s.%N)
start_services
wait_first_pass
pass_seconds=$(echo "$(date +%s.%N) - $pass_started" | bc)
pruned=$(curl -sf "http://127.0.0.1:${ports[0]}/metrics" "http://127.0.0.1:${ports[1]}/metrics" |
  grep '^wos_sync_retention_pruned_rows_total' | awk '{sum += $2} END {print sum}')
stop_services
psql -q "$pg/$database" -c "VACUUM ANALYZE" >/dev/null
sizes pruned >"$work/pruned"
psql -q "$pg/$database" -c "VACUUM FULL" -c "ANALYZE" >/dev/null
sizes compacted >"$work/compacted"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
printf '%-20s %12s %12s %12s %12s %12s %12s\n' table rows_before MiB_before rows_after MiB_after MiB_compact bytes/row
total_before=0 total_after=0 total_compact=0
while IFS=$'\t' read -r _ table rows bytes; do
  IFS=$'\t' read -r _ _ rows_after bytes_after < <(grep -P "\t$table\t" "$work/pruned")
  IFS=$'\t' read -r _ _ _ bytes_compact < <(grep -P "\t$table\t" "$work/compacted")
  per_row=$(awk -v b="$bytes_compact" -v r="$rows_after" 'BEGIN { printf "%d", (r > 0 ? b / r : 0) }')
  printf '%-20s %12s %12s %12s %12s %12s %12s\n' "$table" "$rows" "$(mib "$bytes")" "$rows_after" \
    "$(mib "$bytes_after")" "$(mib "$bytes_compact")" "$per_row"
  total_before=$((total_before + bytes))
  total_after=$((total_after + bytes_after))
  total_compact=$((total_compact + bytes_compact))
done <"$work/before"
printf '%-20s %12s %12s %12s %12s %12s\n' total "" "$(mib $total_before)" "" "$(mib $total_after)" "$(mib $total_compact)"
echo "RESULT transactions=$transactions days=$days pruned_rows=$pruned pass_seconds=$pass_seconds" \
  "mib_before=$(mib $total_before) mib_after=$(mib $total_after) mib_compacted=$(mib $total_compact)"
