# syntax=docker/dockerfile:1
# Build: the droplet binary and the example droplets, with the pinned toolchain.
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip2
COPY . .
RUN cargo build --release --locked --package droplet-host --bin droplet \
 && cargo xtask examples --out /src/dist/droplets

# Run: a slim Debian image, as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /srv droplet \
 && mkdir -p /srv/droplets /srv/data \
 && chown -R droplet:droplet /srv
COPY --from=build /src/target/release/droplet /usr/local/bin/droplet
COPY --from=build --chown=droplet:droplet /src/dist/droplets /srv/droplets
USER droplet
WORKDIR /srv
ENV DROPLET_LISTEN=0.0.0.0:8080 \
    DROPLET_DIR=/srv/droplets \
    DROPLET_DATA=/srv/data
EXPOSE 8080
VOLUME ["/srv/droplets", "/srv/data"]
ENTRYPOINT ["droplet"]
CMD ["serve"]
