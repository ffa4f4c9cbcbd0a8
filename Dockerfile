# Build stage: compile the release binary (cards and migrations are compiled in).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY cards ./cards
COPY schemas ./schemas
COPY migrations ./migrations
COPY docs ./docs
RUN cargo build --release --locked && strip target/release/kandji-connector

# Runtime stage: a small image, running as an unprivileged user.
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
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD ["/usr/local/bin/kandji-connector", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/kandji-connector"]
CMD ["serve"]
