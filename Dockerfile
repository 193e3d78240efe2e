# syntax=docker/dockerfile:1
#
# One image with every binary of the workspace but the benchmarks (item-ingest, adjustment-pusher,
# webhook-relay, wos-sync, shopify-sandbox, consumer-probe). A container runs one of them by name:
#
#   docker build -t wos-shopify-sync .
#   docker run --rm wos-shopify-sync item-ingest --help
#
# Stages: chef (toolchain + cargo-chef) -> planner (the dependency recipe: manifests and
# Cargo.lock only) -> builder (dependencies in their own layer, then the workspace) -> runtime
# (Debian slim, non-root, no toolchain). A change under crates/ or migrations/ leaves the
# recipe, and so the dependency layer, unchanged: only the workspace's own crates are rebuilt.
# Size and reasoning: deploy/README.md.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
# Dependencies only: cached until Cargo.toml or Cargo.lock change.
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
# Every [[bin]] of every workspace member but the benchmarks (wos-sync-bench: cargo-chef's
# dependency layer leaves a stub of it in target/, so it is excluded by name too). The release
# profile keeps line tables for backtraces; they are stripped here (function names stay), which
# divides the binaries' size by about four.
RUN cargo build --release --locked --workspace --exclude bench --bins \
 && mkdir /out \
 && find target/release -maxdepth 1 -type f -perm -u+x ! -name wos-sync-bench -exec cp {} /out/ \; \
 && strip --strip-debug /out/*

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN groupadd --system --gid 10001 wos-sync \
 && useradd --system --uid 10001 --gid wos-sync --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin wos-sync
# Shopify's TLS chain is verified against the system's roots (rustls-platform-verifier): the
# builder's CA bundle, without the ca-certificates package and the OpenSSL it pulls in (~9 MB).
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /out/ /usr/local/bin/
COPY deploy/docker/healthcheck.sh /usr/local/bin/wos-sync-healthcheck
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
ENV LOG_FORMAT=json
# relay webhooks, item-ingest, adjustment-pusher, relay ops (/metrics, /healthz, /readyz), sandbox
EXPOSE 8080 9464 9465 9466 9470
# GET /readyz on the container's ops port (LISTEN_ADDR, or the relay's OPS_LISTEN_ADDR).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["wos-sync-healthcheck"]
CMD ["wos-sync", "--help"]
