# syntax=docker/dockerfile:1
#
# Multi-stage build for kube-impersonate-proxy.
#
#   docker build -t kube-impersonate-proxy:local .
#
# scripts/build-release runs the same build steps without Docker.

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
FROM swift:6.3-bookworm AS build

WORKDIR /src

# Resolve dependencies first so this layer stays cached while only sources change.
# Package.resolved is deliberately not copied (it is gitignored, see .dockerignore):
# versions are resolved from the ranges in Package.swift.
COPY Package.swift ./
RUN swift package resolve

# SwiftPM validates every target in the manifest (test targets included) even when
# building a single product, so Tests/ has to be present too.
COPY Sources ./Sources
COPY Tests ./Tests

# --static-swift-stdlib links the Swift runtime, Foundation and Dispatch statically;
# the binary still links glibc (libc, libm), libstdc++, libgcc_s and zlib dynamically.
# The binary is not stripped so that crash backtraces stay symbolicated.
RUN swift build -c release --product kube-impersonate-proxy --static-swift-stdlib \
    && install -D -m 0755 \
        "$(swift build -c release --show-bin-path)/kube-impersonate-proxy" \
        /out/kube-impersonate-proxy \
    && install -D -m 0755 \
        /usr/libexec/swift/linux/swift-backtrace-static \
        /out/swift-backtrace-static

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: system trust roots for the OIDC issuers (discovery + JWKS).
# libstdc++6, libgcc-s1, zlib1g: shared libraries the binary links dynamically
# (already part of bookworm-slim; listed so the dependency is explicit).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        libgcc-s1 \
        libstdc++6 \
        zlib1g \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 65532 nonroot \
    && useradd --system --uid 65532 --gid 65532 \
        --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin nonroot

COPY --from=build /out/kube-impersonate-proxy /usr/local/bin/kube-impersonate-proxy
COPY --from=build /out/swift-backtrace-static /usr/libexec/swift/linux/swift-backtrace-static

# Symbolicated, non-interactive crash backtraces on stderr.
ENV SWIFT_BACKTRACE=enable=yes,sanitize=yes,threads=all,images=all,interactive=no,swift-backtrace=/usr/libexec/swift/linux/swift-backtrace-static

LABEL org.opencontainers.image.title="kube-impersonate-proxy" \
      org.opencontainers.image.description="OIDC-authenticating impersonation proxy for the Kubernetes API" \
      org.opencontainers.image.source="https://github.com/vexxhost/kube-impersonate-proxy" \
      org.opencontainers.image.licenses="Apache-2.0"

USER 65532:65532

# 8080: proxy listener (--listen-addr).
EXPOSE 8080

ENTRYPOINT ["/usr/local/bin/kube-impersonate-proxy"]
