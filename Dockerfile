# realip in a container: one image for every role (whoami, lb, node).
#
#   docker build -t realip:0.1.0 .
#
# No Docker engine runs on the project's own machines, so this file is
# checked by reading and by deploy/'s manifests being accepted by a real
# apiserver, not by building it there.

# Build: the workspace's own toolchain version, dependencies fetched once.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p realip \
 && cp target/release/realip /realip

# Run: glibc and nothing else (no shell, no package manager). The binary
# programs nf_tables over netlink, so the node role needs no nft or
# iptables inside. Non-root by default; the node's DaemonSet asks for
# root with NET_ADMIN only.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /realip /usr/local/bin/realip
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/realip"]
CMD ["whoami", "--listen=0.0.0.0:8080"]
