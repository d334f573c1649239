# One image, every service: `guichet serve <service>` picks which.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin guichet

FROM debian:bookworm-slim
# poppler (PDF pages) and Tesseract with French (OCR): the postal service's tools.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
       poppler-utils tesseract-ocr tesseract-ocr-fra fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* && useradd --system guichet
COPY --from=build /src/target/release/guichet /usr/local/bin/guichet
RUN mkdir -p /var/lib/guichet && chown guichet /var/lib/guichet
ENV GUICHET_DATA_DIR=/var/lib/guichet
USER guichet
ENTRYPOINT ["guichet"]
