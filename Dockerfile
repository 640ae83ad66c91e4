# syntax=docker/dockerfile:1
# One image, one binary: `gatehouse server`, `gatehouse operator` (and the other subcommands).
#   docker build -t gatehouse/gatehouse:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin gatehouse \
 && install -D -m 0755 target/release/gatehouse /out/gatehouse

# glibc and libgcc, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/gatehouse /usr/local/bin/gatehouse
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["server"]
