# syntax=docker/dockerfile:1
# Raincast container: a release build, then a slim Debian runtime that runs as
# an unprivileged user. Configure it with RAINCAST_* and AWS_* variables (see
# docs/OPERATIONS.md); compose.yaml runs it beside an S3/DynamoDB-compatible
# server.
#
#   docker build -t raincast .
#   docker run --rm -p 8080:8080 raincast          # the embedded default
#
# The image carries the stripped binary; its debug file (for symbolising
# crash backtraces, scripts/split-debug.sh) is exported from the `debug` stage:
#   docker build --target debug --output type=local,dest=out .   # out/raincast.debug
#
# Secrets (RAINCAST_X_*, or [secrets] ssm_prefix for SSM) are given at run
# time, never built into the image.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p raincast \
    && bash scripts/split-debug.sh target/release/raincast /out

# `docker build --target debug --output type=local,dest=DIR .` writes the
# debug file that matches the image's binary into DIR.
FROM scratch AS debug
COPY --from=build /out/raincast.debug /raincast.debug

FROM debian:bookworm-slim AS runtime
# TLS roots for S3, DynamoDB and X, taken from the build image so that the
# runtime needs no package manager run.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/raincast /usr/local/bin/raincast
RUN groupadd --system --gid 10001 raincast \
    && useradd --system --uid 10001 --gid raincast --home-dir /var/lib/raincast --shell /usr/sbin/nologin raincast \
    && install -d -o raincast -g raincast -m 0750 /var/lib/raincast

# Inside a container the API must listen on every interface; the rest of the
# configuration comes from the environment (RAINCAST_SOURCE, RAINCAST_STORE,
# AWS_REGION, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_DYNAMODB, and the secrets:
# RAINCAST_SECRETS__SSM_PREFIX or RAINCAST_X_*, given at run time).
ENV RAINCAST_LISTEN=0.0.0.0:8080 \
    RAINCAST_LOG=info \
    RAINCAST_LOG_JSON=true \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

USER 10001:10001
WORKDIR /var/lib/raincast
VOLUME ["/var/lib/raincast"]
EXPOSE 8080

# bash's /dev/tcp speaks enough HTTP/1.0 for a liveness probe without curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["/usr/local/bin/raincast"]
CMD ["run"]
