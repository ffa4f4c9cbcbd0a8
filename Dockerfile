# kandji-connector container image. Build: `docker build -t kandji-connector .`
# The build context is the whole repository minus what .dockerignore leaves out, so the build stage
# compiles from exactly what Cargo.toml names (benches included) and cannot drift from it.
# `scripts/image-check.sh` (run by .ci/run) rebuilds this file's build stages from the same context
# without a Docker daemon and starts the result the way the runtime stage does.

# Dependencies are cooked by cargo-chef from Cargo.toml/Cargo.lock alone (the `recipe`), so a code
# change rebuilds only this crate, not every dependency.
FROM rust:1.95-slim-bookworm AS chef
RUN cargo install --locked cargo-chef --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin kandji-connector \
    && strip target/release/kandji-connector

# Runtime stage: a small image, running as an unprivileged user. Cards, the meta-schema, migrations
# and the OpenAPI document are compiled into the binary; /data holds the SQLite file by default.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home connector
COPY --from=build /src/target/release/kandji-connector /usr/local/bin/kandji-connector
USER 10001
WORKDIR /data
ENV KANDJI_CONNECTOR_LISTEN=0.0.0.0:8080 \
    KANDJI_CONNECTOR_DATABASE_URL=sqlite:///data/kandji-connector.db?mode=rwc
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD ["/usr/local/bin/kandji-connector", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/kandji-connector"]
CMD ["serve"]
