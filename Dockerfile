# syntax=docker/dockerfile:1
# provisio's image for a Docker/BuildKit host that reaches a registry:
#   docker build -t registry.collectverything.com/platform/provisio:$(cargo pkgid | cut -d# -f2) .
# CI reaches no registry and builds the same content with scripts/build-image.sh (Debian
# packages + umoci, no Docker). Both take the runtime file system from
# scripts/image-rootfs.sh: provisio's libraries, mariadb-dump (backups) and the CA bundle;
# no shell, no package manager; user 10001:10001.

ARG RUST_VERSION=1.89
ARG DEBIAN_RELEASE=bookworm

# --- build: the release binary from the locked dependencies ----------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the downloaded crates and the build directory between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release \
 && install -D -m 755 target/release/provisio /out/provisio \
 && strip --strip-debug /out/provisio

# --- rootfs: the runtime file system, from Debian packages -----------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS rootfs
RUN apt-get update
COPY scripts/image-rootfs.sh /usr/local/bin/image-rootfs.sh
COPY --from=build /out/provisio /tmp/provisio
RUN bash /usr/local/bin/image-rootfs.sh /rootfs /tmp/provisio

# --- runtime ---------------------------------------------------------------------------------
FROM scratch
COPY --from=rootfs /rootfs/ /
COPY --from=build /out/provisio /usr/local/bin/provisio
# The example registry: `provisio generate --registry /usr/share/provisio/registry --out /work/out`.
COPY registry /usr/share/provisio/registry
ENV PATH=/usr/local/bin:/usr/bin:/bin \
    HOME=/tmp \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 10001:10001
WORKDIR /work
LABEL org.opencontainers.image.title="provisio" \
      org.opencontainers.image.source="https://gitlab.collectverything.com/platform/provisio"
ENTRYPOINT ["/usr/local/bin/provisio"]
CMD ["--help"]
