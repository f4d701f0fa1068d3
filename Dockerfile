# syntax=docker/dockerfile:1
#
# Images for nsqd, nsqlookupd and nsq-operator from one build stage:
#
#   docker build --target nsqd         -t nsq-rs/nsqd:0.1.0 .
#   docker build --target nsqlookupd   -t nsq-rs/nsqlookupd:0.1.0 .
#   docker build --target nsq-operator -t nsq-rs/nsq-operator:0.1.0 .
#   docker build --target bench        -t nsq-rs/bench:0.1.0 .   (helm test)
#
# (BuildKit, the default builder since Docker 23, is needed for the cache
# mounts; the three builds share the compiled workspace.) The runtime images
# are distroless: glibc, CA certificates and the binary, running as the
# non-root user 65532, which the Helm chart also sets.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN} AS build
WORKDIR /src
COPY . .
# Line-table debug info (profile.release debug = 1) is stripped; symbol names
# stay, so panics still print readable backtraces.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin nsqd --bin nsqlookupd --bin nsq-operator --bin bench \
 && mkdir -p /out \
 && cp target/release/nsqd target/release/nsqlookupd target/release/nsq-operator target/release/bench /out/
# nsqd's default data path, created here because the runtime has no shell.
RUN mkdir /data

# A static busybox for nsqd's preStop hook (sh, nc, sleep): it leaves every
# nsqlookupd and waits before Kubernetes sends SIGTERM. See
# charts/templates/nsqd-statefulset.yaml.
FROM busybox:1.36.1-musl AS busybox

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER 65532:65532

FROM runtime AS nsqlookupd
COPY --from=build /out/nsqlookupd /usr/local/bin/nsqlookupd
EXPOSE 4160 4161
ENTRYPOINT ["/usr/local/bin/nsqlookupd"]

FROM runtime AS nsq-operator
COPY --from=build /out/nsq-operator /usr/local/bin/nsq-operator
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/nsq-operator"]

# The chart's `helm test` client (bench check); busybox for a shell.
FROM runtime AS bench
COPY --from=busybox /bin/busybox /usr/local/bin/busybox
COPY --from=build /out/bench /usr/local/bin/bench
ENTRYPOINT ["/usr/local/bin/bench"]

# Last, so a plain `docker build .` gives the broker.
FROM runtime AS nsqd
COPY --from=busybox /bin/busybox /usr/local/bin/busybox
COPY --from=build /out/nsqd /usr/local/bin/nsqd
# Writable by the runtime user even without a volume (the chart mounts a
# PersistentVolumeClaim here; `docker run -v nsq-data:/data` works too).
COPY --from=build --chown=65532:65532 /data /data
WORKDIR /data
EXPOSE 4150 4151
ENTRYPOINT ["/usr/local/bin/nsqd"]
CMD ["--data-path=/data"]
