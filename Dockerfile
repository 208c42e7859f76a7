# harden: one image for the Backend and the Proxy (`harden serve --only backend|proxy`).
#
# Build stage: the release binary. The dependency layer is cached separately from the sources, so a
# change to harden's own code does not rebuild the dependency graph.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY domain domain
COPY client client
COPY cli cli
COPY commands commands
COPY projections projections
COPY api api
COPY nats nats
COPY bench bench
COPY migrations migrations
COPY src src
RUN cargo build --release --locked -p harden && strip target/release/harden

# Runtime stage: the binary, CA roots for outside HTTPS (JWKS, Stripe, S3), and a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/harden --shell /usr/sbin/nologin harden \
    && mkdir -p /var/lib/harden \
    && chown harden:harden /var/lib/harden
COPY --from=build /src/target/release/harden /usr/local/bin/harden
USER harden
WORKDIR /var/lib/harden
ENV HARDEN_DATA_DIR=/var/lib/harden \
    HARDEN_BACKEND_ADDR=0.0.0.0:8080 \
    HARDEN_PROXY_ADDR=0.0.0.0:8081 \
    HARDEN_LOG_FORMAT=json
EXPOSE 8080 8081
ENTRYPOINT ["harden"]
CMD ["serve"]
