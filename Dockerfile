# TokenTrail service image. The first build compiles DuckDB from source (~25 minutes on 2
# cores); it happens in the dependencies' layer, which later builds reuse until
# Cargo.toml or Cargo.lock change.

# A statically linked BusyBox for the Event Hubs emulator's healthcheck in
# docker-compose.yml: the emulator image has no shell or HTTP client of its own, so
# compose copies this binary into a volume the emulator mounts.
FROM debian:bookworm-slim AS probe
RUN apt-get update && apt-get install -y --no-install-recommends busybox-static && rm -rf /var/lib/apt/lists/*
# Copied beside, then renamed: overwriting in place fails (text file busy) while a
# healthcheck is running the old copy.
CMD ["sh", "-c", "cp /bin/busybox /probe/busybox.new && mv -f /probe/busybox.new /probe/busybox"]

# The toolchain our tests run on.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends g++ make pkg-config libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, built against empty sources: Cargo needs every workspace member's
# manifest and a file for each target it declares (the [[bench]]es), not their code.
COPY Cargo.toml Cargo.lock ./
COPY tests/testhub/Cargo.toml tests/testhub/
RUN mkdir -p src benches tests/testhub/src \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs tests/testhub/src/lib.rs \
    && echo 'fn main() {}' > tests/testhub/src/main.rs \
    && for bench in $(awk '/^\[\[bench\]\]/ {b = 1; next} b && /^name *=/ {gsub(/^name *= *"|".*$/, ""); print; b = 0}' Cargo.toml); \
       do echo 'fn main() {}' > "benches/$bench.rs"; done \
    && cargo build --release --locked --bin tokentrail
# Then the code and what it includes (SQL, dashboards, UI assets). COPY keeps the files'
# times, which can be older than the stubs' build: touch them so Cargo rebuilds the crate.
COPY src src
COPY migrations migrations
COPY queries queries
COPY dashboards dashboards
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin tokentrail

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data tokentrail && mkdir -p /data && chown tokentrail /data
COPY --from=build /src/target/release/tokentrail /usr/local/bin/tokentrail
USER tokentrail
VOLUME /data
ENTRYPOINT ["tokentrail"]
CMD ["serve", "--config", "/etc/tokentrail/tokentrail.toml"]
