# syntax=docker/dockerfile:1
# pcsync's image. Built with cargo in the Rust image, run from slim Debian as a
# non-root user; the state lives on a volume, the config comes from the environment
# (deploy/entrypoint.sh writes it; mount one at /etc/pcsync/pcsync.yaml instead if
# you prefer), and `pcsync healthcheck` answers the health check. CI lints this file
# with hadolint; tests/deploy.rs runs the entrypoint as the image does.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin pcsync

FROM debian:bookworm-slim
# ca-certificates, and tzdata for `hubspot.time_zone` (HubSpot's daily limit resets at
# the account's midnight), from the release the base image pins.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pcsync \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/pcsync \
      --shell /usr/sbin/nologin pcsync \
 && mkdir -p /var/lib/pcsync /etc/pcsync \
 && chown pcsync:pcsync /var/lib/pcsync
COPY --from=build /src/target/release/pcsync /usr/local/bin/pcsync
COPY rules /etc/pcsync/rules
COPY deploy/entrypoint.sh /usr/local/bin/pcsync-entrypoint
ENV PCSYNC_LISTEN=0.0.0.0:8080 \
    PCSYNC_STATE=/var/lib/pcsync/pcsync.db \
    PCSYNC_RULES=/etc/pcsync/rules
USER 10001:10001
VOLUME ["/var/lib/pcsync"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["pcsync", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/pcsync-entrypoint"]
