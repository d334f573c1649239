# One image, every service: `guichet serve <service>` picks which.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin guichet

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system guichet
COPY --from=build /src/target/release/guichet /usr/local/bin/guichet
USER guichet
ENTRYPOINT ["guichet"]
