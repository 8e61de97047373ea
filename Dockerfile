# syntax=docker/dockerfile:1
# The iam-rotate container image: the binary alone on a distroless base, run
# as a non-root user, its entrypoint `iam-rotate`. The recipes in deploy/
# (GitHub Actions, ECS Fargate, Kubernetes) run it; see docs/deploy.md.
#
#   docker build -t iam-rotate .
#   docker run --rm iam-rotate --version

# Build with the toolchain Cargo.toml's rust-version names, against exactly
# the dependency versions of Cargo.lock.
ARG RUST_VERSION=1.94.1
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin iam-rotate \
 && install -D -m 0755 target/release/iam-rotate /out/iam-rotate

# Runtime: glibc, libgcc and CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/iam-rotate /usr/local/bin/iam-rotate
# nonroot is 65532:65532; the recipes pin the same ids.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/iam-rotate"]
CMD ["--help"]
