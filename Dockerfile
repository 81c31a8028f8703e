# syntax=docker/dockerfile:1
#
# tether in a container:
#
#   docker build -t tether .
#   docker run --rm -p 8443:8443 -p 9900:9900 -v /srv/tether:/etc/tether:ro \
#     -e TETHER_STICKY_KEY -e TETHER_ADMIN_TOKEN tether
#
# The default command runs /etc/tether/tether.toml: mount a directory holding it and
# its certificates (/srv/tether above: tether.toml and tls/, readable by uid 10001,
# the image's user), or build an image FROM this one that copies them there
# (deploy/ecs/README.md). Arguments after the image name replace the command:
# `docker run … tether check --config /etc/tether/tether.toml`.
#
# Ports: the image runs as an unprivileged user, which cannot bind ports below 1024.
# Listen on 8080/8443 (as deploy/replica.toml does) and map or balance onto them, or
# run with `--sysctl net.ipv4.ip_unprivileged_port_start=0` to listen on 80/443.

# === build ===
FROM rust:1-slim-bookworm AS build
# cmake (and make, a C compiler): pingora's zlib-ng; ring and mimalloc need the C compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake build-essential pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Cargo.toml names the tests and benches, so the manifest needs them to build at all.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
COPY benches ./benches
# The `dist` profile (fat LTO) and the default features: ECS discovery included.
# The registry and target directory are cache mounts (BuildKit): a rebuild after a
# source change does not download or recompile the dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked \
 && cp target/dist/tether /usr/local/bin/tether

# === runtime ===
FROM debian:bookworm-slim
# ca-certificates: the AWS API (ECS discovery), rediss:// and HTTPS targets verify
# against the system roots. Nothing else: no curl (see HEALTHCHECK).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tether \
 && useradd --system --uid 10001 --gid tether --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin tether \
 && install -d -o tether -g tether -m 0750 /etc/tether /etc/tether/tls
COPY --from=build /usr/local/bin/tether /usr/local/bin/tether

# The health check asks the admin API for `GET /healthz` (200 "ok" while the process
# serves) with bash's /dev/tcp: bash is already in the image, so no curl and nothing
# more to install or patch. The admin API must listen on loopback or 0.0.0.0 at
# TETHER_ADMIN_PORT (default 9900), as `admin = "0.0.0.0:9900"` does; reads need no
# token. (`tether targets --admin 127.0.0.1:9900` would work too, but asks for every
# target's health, not for /healthz.)
RUN printf '%s\n' \
      '#!/bin/bash' \
      '# GET /healthz on the admin API; exit 0 on a 200. Written by the Dockerfile.' \
      'exec 3<>"/dev/tcp/127.0.0.1/${TETHER_ADMIN_PORT:-9900}" || exit 1' \
      'printf "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3' \
      'read -r -t 2 _ status _ <&3 && [ "$status" = 200 ]' \
      > /usr/local/bin/tether-healthz \
 && chmod 0755 /usr/local/bin/tether-healthz

USER tether:tether
WORKDIR /etc/tether
# 80/443 with the sysctl above; 8080/8443 otherwise; 9900 the admin API (metrics,
# /healthz: the NLB's health check port).
EXPOSE 80 443 8080 8443 9900
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["tether-healthz"]
# SIGTERM stops gracefully (requests finish, websockets get Close 1001) within 8 s:
# inside `docker stop`'s default 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tether"]
CMD ["run", "--config", "/etc/tether/tether.toml"]
