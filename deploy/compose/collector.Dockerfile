# The collector image for compose and Kubernetes: built from this repository (context: the
# repository root). Debian like the build machines, so the binary links against the same glibc.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p vantage-collector -p vantage-probe

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/vantage-collector /src/target/release/vantage-probe /usr/local/bin/
# The published target list: the probe's built-in one, so the dashboards show real names
# instead of `other`. Replace /etc/vantage/targets.toml (a mount) to publish your own list.
RUN mkdir -p /etc/vantage && vantage-probe targets > /etc/vantage/targets.toml
# An unprivileged user that owns only the data directory.
RUN useradd --system --home-dir /var/lib/vantage --create-home vantage
USER vantage
ENV VANTAGE_LISTEN=0.0.0.0:8080 VANTAGE_DATA_DIR=/var/lib/vantage VANTAGE_TARGETS=/etc/vantage/targets.toml
EXPOSE 8080
ENTRYPOINT ["vantage-collector"]
CMD ["serve"]
