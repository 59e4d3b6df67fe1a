# TokenTrail service image. The first build compiles DuckDB from source (~25 minutes on 2 cores).
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends g++ make pkg-config libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tokentrail

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data tokentrail && mkdir -p /data && chown tokentrail /data
COPY --from=build /src/target/release/tokentrail /usr/local/bin/tokentrail
USER tokentrail
VOLUME /data
ENTRYPOINT ["tokentrail"]
CMD ["serve", "--config", "/etc/tokentrail/tokentrail.toml"]
